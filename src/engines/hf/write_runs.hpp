// What one rank writes into one export file: contiguous runs of file bytes,
// each taken from the rank's own buffers (converted on the way), and the
// packing of those runs into bounded staging rounds.
#pragma once

#include <cstdint>
#include <vector>

#include "engines/hf/shard_plan.hpp"
#include "floe/layout.hpp"
#include "floe/state.hpp"

namespace floe::hf {

// `count` elements of dtype `from` at `src`, written as dtype `to` at
// `file_offset`.
struct WriteRun {
  std::uint64_t file_offset = 0;
  std::uint64_t count = 0;
  const unsigned char* src = nullptr;
  DType from = DType::kU8;
  DType to = DType::kU8;

  std::uint64_t bytes() const { return count * dtype_size(to); }
};

// The runs `rank` writes into file `file` of `plan`, sorted by file offset:
// the file's header when rank is 0, then the rank's writer pieces of the
// file's tensors (Piece::writer: a replicated region is written once). A
// box becomes one run per row it covers (fewer when it spans whole trailing
// dimensions); a flat range is one run. `layout` and `state` are the save's;
// the runs point into the state's buffers, which must outlive them.
std::vector<WriteRun> runs_for_file(const ExportPlan& plan, std::size_t file,
                                    const GlobalLayout& layout,
                                    const State& state, int rank);

// Sum of bytes() over `runs`.
std::uint64_t run_bytes(const std::vector<WriteRun>& runs);

// Packs runs into a staging buffer one round at a time, whole elements only,
// converting dtypes as it copies.
class RunPacker {
 public:
  explicit RunPacker(const std::vector<WriteRun>& runs) : runs_(runs) {}

  // Fills `out` with up to `capacity` bytes (never splitting an element)
  // and returns how many. A round stops at most 7 bytes short of
  // `capacity` unless the runs end; returns 0 when they have.
  std::uint64_t pack(unsigned char* out, std::uint64_t capacity);
  bool done() const { return run_ == runs_.size(); }

 private:
  const std::vector<WriteRun>& runs_;
  std::size_t run_ = 0;
  std::uint64_t element_ = 0;  // elements of runs_[run_] already packed
};

// The most rounds `bytes` of runs can need with RunPacker at `capacity`
// (>= 16) per round.
std::uint64_t rounds_needed(std::uint64_t bytes, std::uint64_t capacity);

}  // namespace floe::hf
