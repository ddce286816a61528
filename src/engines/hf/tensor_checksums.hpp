// The XXH3 of each exported tensor's bytes as its file holds them, for the
// hf engine's manifest, computed where it costs least.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "core/comm.hpp"
#include "engines/hf/shard_plan.hpp"
#include "floe/layout.hpp"
#include "floe/state.hpp"

namespace floe::hf {

// Collective over `comm`, once every file of `plan` is written into `dir`
// from `layout` and the ranks' `state` (write_export). Returns, on every
// rank, the XXH3-64 of each planned tensor's bytes in its file.
//
// A tensor whose writer pieces are each one contiguous stretch of it (dim-0
// boxes, flat ranges, whole tensors: the usual shardings) is hashed from
// the writers' own buffers, converted as the export converts them: the
// rank of the first stretch starts an XXH3 stream, and each rank passes it
// (its state, a few hundred bytes) to the rank of the next stretch, tensor
// after tensor, so nothing is read back. Any other tensor (a box split
// across rows, overlapping replicated regions) is read back from its file,
// those tensors spread over the ranks; a file read back must have its
// planned size. Throws the same Error on every rank.
std::vector<std::uint64_t> tensor_checksums(const ExportPlan& plan,
                                            const GlobalLayout& layout,
                                            const State& state,
                                            const std::filesystem::path& dir,
                                            const Comm& comm);

}  // namespace floe::hf
