// A two-phase load: each rank reads one contiguous part of the data file in
// large requests, and MPI hands every rank the bytes its regions need.
//
// An hdf5 checkpoint keeps each tensor's global shape, so a rank loading
// 1/N of every tensor asks for N-strided pieces of the file, the ranks
// moving through it side by side; on a disk that rewards long sequential
// reads that costs a third of the read's speed (BENCHMARKS.md, "Where
// hdf5's load gap at 2-4 ranks is"). ROMIO's collective buffering does
// this for one MPI-IO call; HDF5 1.10 makes one such call a dataset, so
// Floe does it once for all tensors of a load. Off by default
// (CheckpointConfig::load_exchange): on one node of the CI machine it was
// slower than each rank's own reads (BENCHMARKS.md, "A two-phase load").
#pragma once

#include <cstdint>
#include <vector>

#include "core/comm.hpp"
#include "floe/engine.hpp"
#include "floe/state.hpp"

namespace floe {

// Each rank's read a round: long enough for the disk's best sequential
// speed, small enough that two buffers of it are little beside a state.
inline constexpr std::uint64_t kExchangeRoundBytes = 16u << 20;

// What exchange_read() did on this rank (for tests).
struct ExchangeStats {
  bool used = false;             // the same on every rank
  std::uint64_t rounds = 0;      // MPI_Alltoallw calls
  std::uint64_t read_bytes = 0;  // read from this rank's part of the file
  std::uint64_t reads = 0;       // read_exact calls for them
  std::uint64_t sent_bytes = 0;  // to other ranks (not to itself)
};

// Collective. Reads the bytes of every shard (for each t with shards[t],
// the region of tensors[t] that shards[t] holds, into its data) when
// `reader` allows it on every rank: a RunPlanner with one data file,
// reading independently, every request planned as runs of that file.
// Otherwise it reads nothing and returns stats with used == false on every
// rank: the caller reads the shards itself, and its reads report what kept
// the exchange from planning them (a storage offset beyond the file, a box
// outside its tensor).
//
// The span of the file that the ranks ask for is split into one
// contiguous part per rank; each rank reads its part in rounds of
// `round_bytes` (the next round's reads on a thread of their own while
// this round's bytes move), skipping what no rank asked for, and one
// MPI_Alltoallw a round moves every byte straight into the shards of the
// ranks that asked for it (a replicated region's bytes to each of them).
// A failed read throws the same Error on every rank once the rounds are
// over (no rank leaves the others in a round); the shards' bytes are then
// undefined. `round_bytes` (the same on every rank; held to 1 B-1 GiB,
// as MPI block lengths are ints): tests pass small ones to run many
// rounds on a small state.
ExchangeStats exchange_read(CheckpointReader& reader,
                            const std::vector<TensorRecord>& tensors,
                            const std::vector<TensorShard*>& shards,
                            const Comm& comm,
                            std::uint64_t round_bytes = kExchangeRoundBytes);

}  // namespace floe
