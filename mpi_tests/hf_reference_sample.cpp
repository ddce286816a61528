// Writes sample exports for hf_reference_check.py, which loads them with
// safetensors' own (Rust) reader and recomputes every value. Usage, at any
// rank count:  mpirun -n N hf_reference_sample <dir>
// or, to save the same model as a checkpoint of a resumable engine (which
// `floe export-hf` then exports):
//   mpirun -n N hf_reference_sample --checkpoint <engine> <output dir>
// Values follow formulas Python can repeat: element i of the k-th tensor is
// ((i * 37 + k * 11) % 1024) / 8 - 64 for floats (computed in F32, rounded
// to the state's dtype, then to the exported one), (i * 37 + k * 11) % 251
// for integers and (i * 37 + k) % 3 == 0 for BOOL.
#include <cstdio>
#include <cstring>
#include <fstream>

#include <mpi.h>

#include "engines/hf/float_cast.hpp"
#include "floe/error.hpp"
#include "floe/hf.hpp"
#include "floe/registry.hpp"
#include "hf_test_model.hpp"

namespace floe::test {
namespace {

std::vector<TensorDef> reference_model() {
  return {
      {"embed.weight", DType::kF32, {37, 11}, Split::kDim0},
      {"layers.0.mlp.w", DType::kF16, {64, 48}, Split::kColumns},
      {"layers.0.attn.qkv", DType::kBF16, {5, 6, 7}, Split::kFlat},
      {"position_ids", DType::kI64, {3, 4}, Split::kReplicated},
      {"scale", DType::kF64, {}, Split::kReplicated},
      {"empty", DType::kF32, {0, 5}, Split::kReplicated},
      {"mask", DType::kBool, {9}, Split::kDim0},
      {"tokens", DType::kU8, {13, 3}, Split::kColumns},
      {"counts", DType::kI32, {10}, Split::kFlat},
      {"lm_head.weight", DType::kF32, {23, 16}, Split::kRankZero},
  };
}

void fill(TensorShard& shard, std::uint64_t k) {
  const DType dtype = shard.spec().dtype;
  const std::size_t size = dtype_size(dtype);
  for_each_element(
      shard.spec().shape, shard.region(),
      [&](std::uint64_t i, std::uint64_t local) {
        unsigned char* out =
            reinterpret_cast<unsigned char*>(shard.data()) + local * size;
        const std::uint64_t v = (i * 37 + k * 11);
        if (dtype_is_float(dtype)) {
          const float f = static_cast<float>(v % 1024) / 8.0f - 64.0f;
          hf::cast_elements(&f, DType::kF32, out, dtype, 1);
        } else if (dtype == DType::kBool) {
          *out = (i * 37 + k) % 3 == 0 ? 1 : 0;
        } else {
          const std::uint64_t n = v % 251;
          std::memcpy(out, &n, size);  // little-endian: the low bytes
        }
      });
}

void build_sample(State& state, const std::vector<TensorDef>& defs) {
  const int rank = world_rank(), size = world_size();
  for (std::size_t k = 0; k < defs.size(); ++k) {
    const auto region = region_for(defs[k], defs[k].split, rank, size);
    if (!region) continue;
    fill(state.add_model(defs[k].name, defs[k].dtype, defs[k].shape, *region),
         k);
  }
}

// The model as step 1 of a checkpoint in `output_dir`, with optimizer state
// beside it (which an export leaves out).
void save_checkpoint(const std::string& engine,
                     const std::filesystem::path& output_dir,
                     const std::vector<TensorDef>& defs) {
  SimpleTrainer trainer;
  build_sample(trainer.state_now, defs);
  const int rank = world_rank(), size = world_size();
  const auto& w = defs.front();  // an F32 matrix, dim-0 split
  if (const auto region = region_for(w, Split::kFlat, rank, size)) {
    trainer.state_now.add_optimizer(w.name, "exp_avg", DType::kF32, w.shape,
                                    *region);
  }
  trainer.progress_now.global_step = 1;
  make_engine(trainer, parse_config({{"type", engine},
                                     {"output_dir", output_dir.string()}}))
      ->save();
}

void write_sample(const std::filesystem::path& dir, std::vector<TensorDef> defs,
                  const HfExportOptions& options) {
  const int rank = world_rank();
  State state;
  build_sample(state, defs);
  export_hf(state, dir, MPI_COMM_WORLD, options);
  if (rank != 0) return;
  nlohmann::json spec = nlohmann::json::array();
  for (std::size_t k = 0; k < defs.size(); ++k) {
    const auto& d = defs[k];
    const DType stored =
        options.dtype && dtype_is_float(d.dtype) ? *options.dtype : d.dtype;
    spec.push_back({{"name", d.name},
                    {"k", k},
                    {"dtype", dtype_name(stored)},
                    {"source", dtype_name(d.dtype)},
                    {"shape", d.shape}});
  }
  std::ofstream(dir.string() + ".expected.json") << spec.dump(1) << "\n";
}

}  // namespace
}  // namespace floe::test

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int status = 0;
  try {
    if (argc == 4 && std::string(argv[1]) == "--checkpoint") {
      floe::test::save_checkpoint(argv[2], argv[3],
                                  floe::test::reference_model());
      MPI_Finalize();
      return 0;
    }
    if (argc != 2) {
      throw std::runtime_error(
          "usage: hf_reference_sample <dir> | --checkpoint <engine> <output dir>");
    }
    const std::filesystem::path root = argv[1];
    using floe::test::write_sample;
    floe::HfExportOptions plain, sharded, bf16, f16;
    sharded.max_shard_size = 2000;
    sharded.round_bytes = 64;
    bf16.dtype = floe::DType::kBF16;
    f16.dtype = floe::DType::kF16;
    f16.max_shard_size = 1500;
    const auto model = floe::test::reference_model();
    write_sample(root / "mixed", model, plain);
    write_sample(root / "sharded", model, sharded);
    write_sample(root / "bf16", model, bf16);
    write_sample(root / "f16", model, f16);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hf_reference_sample: %s\n", e.what());
    status = 1;
  }
  MPI_Finalize();
  return status;
}
