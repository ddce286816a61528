// The XXH3 of each exported tensor's bytes as its file holds them, for the
// hf engine's manifest, computed where it costs least.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include "core/comm.hpp"
#include "core/wire.hpp"
#include "engines/hf/shard_plan.hpp"
#include "floe/layout.hpp"
#include "floe/state.hpp"

namespace floe::hf {

// Elements [begin, end) of a tensor, written by `rank` from the start of
// its buffer.
struct Stretch {
  std::uint64_t begin = 0, end = 0;
  int rank = 0;
};

// The XXH3-64 of each planned tensor's bytes in its file, for `plan`
// written into a directory from `layout` and the ranks' `state`
// (write_export), in two collective steps over `comm`.
//
// A tensor whose writer pieces are each one contiguous stretch of it (dim-0
// boxes, flat ranges, whole tensors: the usual shardings) is hashed from
// the writers' own buffers, converted as the export converts them: the
// rank of the first stretch starts an XXH3 stream, and each rank passes it
// (its state, a few hundred bytes) to the rank of the next stretch, tensor
// after tensor, so nothing is read back. This needs only the buffers, so
// write_export runs it while the first file is being written. Any other
// tensor (a box split across rows, overlapping replicated regions) is read
// back from its file once every file is written, those tensors spread over
// the ranks; a file read back must have its planned size. Each step throws
// the same Error on every rank.
class TensorChecksums {
 public:
  // Plans which tensors are hashed from buffers (no communication). The
  // arguments must outlive the object.
  TensorChecksums(const ExportPlan& plan, const GlobalLayout& layout,
                  const State& state, const Comm& comm);

  // Collective: hashes the tensors hashed from buffers.
  void hash_buffers();
  // Collective, after hash_buffers() and once every file is in `dir`:
  // reads back the other tensors and returns every tensor's digest, in
  // plan order, on every rank.
  std::vector<std::uint64_t> finish(const std::filesystem::path& dir);

 private:
  const ExportPlan& plan_;
  const GlobalLayout& layout_;
  const State& state_;
  const Comm& comm_;
  std::vector<std::optional<std::vector<Stretch>>> chains_;
  WireWriter mine_;  // (tensor, digest) pairs this rank computed
};

}  // namespace floe::hf
