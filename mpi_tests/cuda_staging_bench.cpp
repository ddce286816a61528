// scripts/gpu_check.sh's throughput figures, on a GPU: device-to-host
// staging through Floe's copier (pinned pool, its own stream) in GB/s, and
// how long save() blocks for a state on the GPU (async mpiio and hdf5), side
// by side with a bare cudaMemcpy of the same bytes to pinned memory,
// interleaved over repetitions. One rank per GPU.
//   mpirun -np 1 cuda_staging_bench DIR [BYTES=4GiB] [TENSORS=64] [REPEAT=5]
#include <cuda_runtime_api.h>
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>

#include "cuda/device_copy.hpp"
#include "floe/floe.hpp"

namespace {

void check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(rc));
    std::exit(1);
  }
}

struct GpuTrainer : floe::SimpleTrainer {
  std::string name;
  std::string device() const override { return name; }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

template <typename Fn>
double slowest(Fn&& fn) {
  MPI_Barrier(MPI_COMM_WORLD);
  const double start = MPI_Wtime();
  fn();
  double mine = MPI_Wtime() - start, out = 0;
  MPI_Allreduce(&mine, &out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  if (argc < 2) {
    std::fprintf(stderr, "usage: cuda_staging_bench DIR [BYTES] [TENSORS] [REPEAT]\n");
    return 2;
  }
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const std::string dir = argv[1];
  const std::uint64_t bytes =
      argc > 2 ? floe::parse_count(argv[2], "BYTES", true) : (4ull << 30);
  const std::uint64_t count = argc > 3 ? std::stoull(argv[3]) : 64;
  const int repeat = argc > 4 ? std::stoi(argv[4]) : 5;
  int gpus = 0;
  check(cudaGetDeviceCount(&gpus), "cudaGetDeviceCount");
  check(cudaSetDevice(rank % gpus), "cudaSetDevice");

  GpuTrainer trainer;
  trainer.name = "cuda:" + std::to_string(rank % gpus);
  const std::uint64_t per = bytes / count / 4 / 256 * 256;  // F32 elements
  std::vector<void*> buffers;
  for (std::uint64_t t = 0; t < count; ++t) {
    void* p = nullptr;
    check(cudaMalloc(&p, per * 4), "cudaMalloc");
    check(cudaMemset(p, static_cast<int>(t), per * 4), "cudaMemset");
    buffers.push_back(p);
    const std::uint64_t rows = per / 256 * size;
    trainer.state().add_model("layer." + std::to_string(t), floe::DType::kF32, {rows, 256},
                              floe::Region::box(floe::Box{{per / 256 * rank, 0}, {per / 256, 256}}),
                              p);
  }
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  const double total = static_cast<double>(per * 4 * count) * size;

  // Floe's copier alone: pinned destination, its stream.
  auto copier = floe::make_device_copier(trainer.name);
  auto* pinned = static_cast<std::byte*>(copier->allocate_pinned(per * 4 * count));
  auto staged_d2h = [&] {
    for (std::uint64_t t = 0; t < count; ++t) {
      copier->copy_to_host_async(pinned + t * per * 4, buffers[t], per * 4);
    }
    copier->synchronize();
  };
  auto bare_d2h = [&] {
    for (std::uint64_t t = 0; t < count; ++t) {
      check(cudaMemcpy(pinned + t * per * 4, buffers[t], per * 4, cudaMemcpyDeviceToHost),
            "cudaMemcpy");
    }
  };
  std::map<std::string, std::unique_ptr<floe::CheckpointEngine>> engines;
  for (const char* e : {"mpiio", "hdf5"}) {
    engines[e] = floe::make_engine(
        trainer, floe::parse_config({{"type", e},
                                     {"output_dir", dir + "/" + e},
                                     {"keep_last_n", 1},
                                     {"async", true}}));
    engines[e]->save();  // warm-up: allocates the pinned pool
    engines[e]->wait();
  }
  std::map<std::string, std::vector<double>> s;
  for (int r = 0; r < repeat; ++r) {
    trainer.progress_now.global_step = r + 2;
    s["cudaMemcpy D2H (pinned)"].push_back(slowest(bare_d2h));
    s["floe copier D2H"].push_back(slowest(staged_d2h));
    for (auto& [name, engine] : engines) {
      s[name + " async save() blocks"].push_back(slowest([&] { engine->save(); }));
      s[name + " background write"].push_back(slowest([&] { engine->wait(); }));
    }
  }
  if (rank == 0) {
    std::printf("\n%d rank(s), %.3f GB of F32 on the GPU in %llu tensors per rank, %d reps\n",
                size, total / 1e9, static_cast<unsigned long long>(count), repeat);
    std::printf("%-28s %10s %9s %12s\n", "what", "median s", "GB/s", "vs cudaMemcpy");
    const double base = median(s["cudaMemcpy D2H (pinned)"]);
    for (const auto& [name, times] : s) {
      const double m = median(times);
      std::printf("%-28s %10.4f %9.2f %12.3f\n", name.c_str(), m, total / m / 1e9, m / base);
    }
  }
  copier->free_pinned(pinned);
  engines.clear();
  for (void* p : buffers) cudaFree(p);
  MPI_Finalize();
  return 0;
}
