// A small model for the hf suites with every kind of partition: dim-0
// shards, flat ranges, column blocks, replicated tensors, a tensor only rank
// 0 holds, a rank-0 (scalar) tensor and an empty one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <mpi.h>

#include "floe/state.hpp"
#include "test_util.hpp"

namespace floe::test {

enum class Split { kDim0, kFlat, kColumns, kReplicated, kRankZero };

struct TensorDef {
  std::string name;
  DType dtype;
  Shape shape;
  Split split;
};

// The sample model: F32, BF16, F16, I64, F64, BOOL, U8 tensors.
std::vector<TensorDef> sample_model();

// Float tensors of megabytes whose runs average >= 1 MiB at 1-4 ranks, so
// the export writes each rank's runs independently: dim-0 and flat shards
// (straight from the buffers unless cast), column blocks of 256 KiB rows and
// a replicated scalar (packed).
std::vector<TensorDef> large_model();

// Only F32 tensors (for casts), split in the same ways.
std::vector<TensorDef> float_model();

// `rank`'s region of `def` among `size` ranks; nullopt when it holds none
// (kRankZero on other ranks).
std::optional<Region> region_for(const TensorDef& def, Split split, int rank,
                                 int size);

// Another way to cut each tensor, for resharded loads: each split traded for
// a different one, ranks in reverse order.
Split other_split(Split split);

// Adds `rank`'s regions of `defs` (cut with `split_of`) to `state`, filled
// with the expected values keyed by "model/<name>"; also one optimizer
// tensor (never exported). `fill` false leaves the buffers zero.
void add_model(State& state, const std::vector<TensorDef>& defs, int rank,
               int size, bool reshard = false, bool fill = true);

// The expected bytes of the whole of `def` (row-major), keyed "model/<name>".
std::string expected_bytes(const TensorDef& def);

// A communicator of rank 0 alone (MPI_COMM_NULL on other ranks); freed by
// the caller with MPI_Comm_free when not null.
MPI_Comm rank_zero_comm();

}  // namespace floe::test
