// Checking pieces by reading them again: floe verify, and load()'s checks
// of pieces no rank loads as they are (Assignment's dedicated checkers).
// A rank reads the pieces it checks in reads of bounded size, whatever the
// size of a piece or the reader, and hashes each piece as its bytes arrive.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "commit/load_match.hpp"
#include "core/comm.hpp"
#include "core/page_memory.hpp"
#include "floe/engine.hpp"
#include "floe/manifest.hpp"

namespace floe {

// "checksum mismatch in <file> for tensor "<key>" (piece <region> written by
// rank <r>)".
std::string describe_piece(const TensorRecord& t, const PieceRecord& p);

// The most bytes one read of check_pieces asks for: larger boxes are split
// (split_box), smaller ones joined up to it. The buffer stays this small
// whatever the tensor, each read is hashed while in cache, and an
// independent reader's kernel reads the next one ahead meanwhile.
constexpr std::uint64_t kCheckReadBytes = 2u << 20;

// For a reader whose reads are collective: how many reads check_pieces
// makes of each tensor `t` for which `checked(t)`, the same on every rank
// (the most any rank's pieces need, at least one, so every dataset is
// opened); 0 for the others. Collective then (one allreduce, none when no
// tensor is checked: `checked` must give the same on every rank); empty,
// and no communication, for a reader whose reads are independent.
std::vector<std::uint32_t> collective_check_reads(
    const CheckpointReader& reader, const std::vector<TensorRecord>& tensors,
    const Assignment& who, const Comm& comm, const std::function<bool(std::size_t)>& checked);

// Reads the pieces of `t` that `rank` checks (who[k] == rank) again, into
// `buffer` (kept from tensor to tensor), and appends a problem for each bad
// checksum. Makes `calls` reads in all when `calls` is not 0 (a collective
// reader: collective_check_reads' count, the rest with nothing to read),
// else as many as its pieces need. `reads` counts them as each starts: a
// rank that throws must still join the others' remaining collective reads
// (idle_read).
void check_pieces(CheckpointReader& reader, const TensorRecord& t, Assignment::Pieces who,
                  int rank, std::uint32_t calls, PageBytes& buffer,
                  std::vector<std::string>& problems, std::uint64_t& pieces,
                  std::uint64_t& bytes, std::uint32_t& reads);

// Joins `calls` collective reads of `t` with nothing to read, after this
// rank failed: other ranks may be inside HDF5's collective transfer.
void idle_read(CheckpointReader& reader, const TensorRecord& t, std::uint32_t calls);

}  // namespace floe
