#include "hf_test_model.hpp"

#include <optional>

namespace floe::test {

std::vector<TensorDef> sample_model() {
  return {
      {"embed.weight", DType::kF32, {37, 11}, Split::kDim0},
      {"layers.0.attn.qkv", DType::kBF16, {5, 6, 7}, Split::kFlat},
      {"layers.0.mlp.w", DType::kF16, {64, 48}, Split::kColumns},
      {"layers.0.norm", DType::kF32, {1000}, Split::kFlat},
      {"position_ids", DType::kI64, {3, 4}, Split::kReplicated},
      {"scale", DType::kF64, {}, Split::kReplicated},
      {"empty", DType::kF32, {0, 5}, Split::kReplicated},
      {"mask", DType::kBool, {9}, Split::kDim0},
      {"tokens", DType::kU8, {13, 3}, Split::kColumns},
      {"lm_head.weight", DType::kF32, {23, 16}, Split::kRankZero},
  };
}

std::vector<TensorDef> large_model() {
  return {
      {"big.dim0", DType::kF32, {8192, 512}, Split::kDim0},
      {"big.flat", DType::kBF16, {2048, 1024}, Split::kFlat},
      {"big.columns", DType::kF16, {2, 524288}, Split::kColumns},
      {"scale", DType::kF32, {}, Split::kReplicated},
  };
}

std::vector<TensorDef> float_model() {
  return {
      {"a", DType::kF32, {41, 7}, Split::kDim0},
      {"b", DType::kF32, {3, 5, 9}, Split::kFlat},
      {"c", DType::kF32, {10, 30}, Split::kColumns},
      {"d", DType::kF64, {17}, Split::kReplicated},
      {"ids", DType::kI64, {6}, Split::kDim0},
  };
}

Split other_split(Split split) {
  switch (split) {
    case Split::kDim0:
      return Split::kFlat;
    case Split::kFlat:
      return Split::kColumns;
    case Split::kColumns:
      return Split::kDim0;
    case Split::kReplicated:
      return Split::kFlat;
    case Split::kRankZero:
      return Split::kReplicated;
  }
  return split;
}

std::optional<Region> region_for(const TensorDef& def, Split split, int rank,
                                 int size) {
  const Shape& shape = def.shape;
  // Splits that need dimensions fall back to flat ranges on smaller tensors.
  if ((split == Split::kDim0 && shape.empty()) ||
      (split == Split::kColumns && shape.size() < 2)) {
    split = Split::kFlat;
  }
  switch (split) {
    case Split::kDim0:
      return dim0_shard(shape, rank, size);
    case Split::kFlat:
      return zero_flat_shard(shape, rank, size);
    case Split::kColumns: {
      const auto [begin, end] = even_split(shape[1], rank, size);
      Box box = full_box(shape);
      box.offset[1] = begin;
      box.extent[1] = end - begin;
      return Region::box(std::move(box));
    }
    case Split::kReplicated:
      return replicated_whole(shape);
    case Split::kRankZero:
      if (rank != 0) return std::nullopt;
      return Region::whole(shape);
  }
  return std::nullopt;
}

void add_model(State& state, const std::vector<TensorDef>& defs, int rank,
               int size, bool reshard, bool fill) {
  for (const auto& def : defs) {
    const Split split = reshard ? other_split(def.split) : def.split;
    const int who = reshard ? size - 1 - rank : rank;
    const auto region = region_for(def, split, who, size);
    if (!region) continue;
    TensorShard& shard =
        state.add_model(def.name, def.dtype, def.shape, *region);
    if (fill) fill_expected(shard);
  }
  const auto [begin, end] = even_split(8, rank, size);
  fill_expected(state.add_optimizer("embed.weight", "exp_avg", DType::kF32, {8},
                                    Region::flat(FlatRange{begin, end})));
}

std::string expected_bytes(const TensorDef& def) {
  const std::size_t size = dtype_size(def.dtype);
  std::string out(num_elements(def.shape) * size, '\0');
  for (std::uint64_t i = 0; i < num_elements(def.shape); ++i) {
    expected_element(def.dtype, "model/" + def.name, i, &out[i * size]);
  }
  return out;
}

MPI_Comm rank_zero_comm() {
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank() == 0 ? 0 : MPI_UNDEFINED, 0,
                 &comm);
  return comm;
}

}  // namespace floe::test
