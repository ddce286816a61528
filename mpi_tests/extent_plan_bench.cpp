// How plan_extents (the mpiio engine's file layout, computed on every rank
// at every save) scales with the ranks and tensors of a job, without
// running that many ranks: a ZeRO-like layout of P ranks, each holding a
// flat slice of the concatenated tensors (so most of a tensor's pieces are
// empty), planned in-process. Prints the median of REPEAT plans, without
// and with the manifest's records (rank 0 builds those). BENCHMARKS.md,
// "mpiio's file plan at many ranks".
//   extent_plan_bench [RANKS=1024] [TENSORS=1000] [REPEAT=5]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engines/mpiio/extent_plan.hpp"

namespace {

floe::GlobalLayout zero_like_layout(int ranks, std::uint64_t tensors) {
  constexpr std::uint64_t kElements = 4096;  // per tensor
  const std::uint64_t total = kElements * tensors;
  floe::GlobalLayout layout;
  layout.world_size = ranks;
  layout.tensors.reserve(tensors);
  for (std::uint64_t t = 0; t < tensors; ++t) {
    floe::TensorLayout tensor;
    tensor.spec = floe::TensorSpec{floe::TensorGroup::kOptimizer, "p" + std::to_string(t),
                                   "exp_avg", floe::DType::kF32, {kElements}};
    for (int r = 0; r < ranks; ++r) {
      const std::uint64_t lo = std::max(total * r / ranks, t * kElements);
      const std::uint64_t hi = std::min(total * (r + 1) / ranks, (t + 1) * kElements);
      const bool holds = lo < hi;
      const floe::FlatRange range{holds ? lo - t * kElements : 0, holds ? hi - t * kElements : 0};
      tensor.pieces.push_back(floe::Piece{r, floe::Region::flat(range), holds});
    }
    layout.tensors.push_back(std::move(tensor));
  }
  return layout;
}

double median_seconds(int repeat, const floe::GlobalLayout& layout, bool records) {
  const std::vector<floe::RankContribution> ranks(static_cast<std::size_t>(layout.world_size));
  std::vector<double> seconds;
  for (int i = 0; i < repeat; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const floe::ExtentPlan plan = floe::plan_extents(layout, ranks, "data.bin", 4096, 0, records);
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (plan.file_size == 0) std::abort();  // keeps the plan
  }
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int ranks = argc > 1 ? std::atoi(argv[1]) : 1024;
  const std::uint64_t tensors = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1000;
  const int repeat = argc > 3 ? std::atoi(argv[3]) : 5;
  if (ranks < 1 || tensors < 1 || repeat < 1) {
    std::fprintf(stderr, "usage: extent_plan_bench [RANKS>=1] [TENSORS>=1] [REPEAT>=1]\n");
    return 2;
  }
  const floe::GlobalLayout layout = zero_like_layout(ranks, tensors);
  std::printf("ranks %d, tensors %llu: plan %.4f s, with records %.4f s (median of %d)\n", ranks,
              static_cast<unsigned long long>(tensors), median_seconds(repeat, layout, false),
              median_seconds(repeat, layout, true), repeat);
  return 0;
}
