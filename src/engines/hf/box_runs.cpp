#include "engines/hf/box_runs.hpp"

#include <vector>

namespace floe::hf {
namespace {

// The outermost dimension a run spans part of: every dimension after it is
// spanned whole.
std::size_t run_dimension(const Shape& shape, const Box& box) {
  std::size_t k = shape.size() - 1;
  while (k > 0 && box.offset[k] == 0 && box.extent[k] == shape[k]) --k;
  return k;
}

}  // namespace

std::uint64_t count_runs(const Shape& shape, const Box& box) {
  if (shape.empty()) return 1;
  if (box.empty()) return 0;
  const std::size_t k = run_dimension(shape, box);
  std::uint64_t runs = 1;
  for (std::size_t d = 0; d < k; ++d) runs *= box.extent[d];
  return runs;
}

void for_each_run(const Shape& shape, const Box& box,
                  const std::function<void(const Run&)>& fn) {
  // The runs of `box` in its tensor are the overlap runs of the whole
  // tensor with the box (region.hpp does the walking, merging trailing
  // dimensions the box spans whole).
  for_each_overlap_run(full_box(shape), box,
                       [&](std::uint64_t tensor_at, std::uint64_t box_at,
                           std::uint64_t n) { fn(Run{tensor_at, box_at, n}); });
}

}  // namespace floe::hf
