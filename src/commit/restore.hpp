// Filling a state from an opened checkpoint: the reads each rank makes, and
// the checksum checks spread across the ranks.
#pragma once

#include "core/comm.hpp"
#include "floe/checkpoint.hpp"
#include "floe/engine.hpp"

namespace floe {

// Collective. Checks the state against the manifest (missing or extra
// tensors, dtype and shape: kMismatch naming the tensor), reads every
// rank's regions, restores scalars, metadata and this rank's blobs, and with
// `verify` checks every piece's checksum once across the ranks (kCorrupt
// naming the file and tensor). Throws the same Error on every rank.
// With `exchange` the ranks read through a two-phase exchange
// (exchange_read) where the reader allows it, else each its own bytes
// (CheckpointConfig::load_exchange).
void restore_state(const OpenCheckpoint& checkpoint, State& state,
                   const Comm& comm, bool verify, const LoadOptions& options,
                   bool exchange = false);

}  // namespace floe
