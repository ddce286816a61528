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
  if (shape.empty()) {
    fn(Run{0, 0, 1});
    return;
  }
  if (box.empty()) return;
  const std::size_t rank = shape.size();
  std::vector<std::uint64_t> stride(rank, 1);
  for (std::size_t d = rank - 1; d > 0; --d)
    stride[d - 1] = stride[d] * shape[d];
  const std::size_t k = run_dimension(shape, box);
  const std::uint64_t length = box.extent[k] * stride[k];

  std::vector<std::uint64_t> index(k, 0);  // odometer over dimensions < k
  std::uint64_t box_element = 0;
  while (true) {
    std::uint64_t start = box.offset[k] * stride[k];
    for (std::size_t d = 0; d < k; ++d)
      start += (box.offset[d] + index[d]) * stride[d];
    fn(Run{start, box_element, length});
    box_element += length;
    std::size_t d = k;
    while (d > 0) {
      --d;
      if (++index[d] < box.extent[d]) break;
      index[d] = 0;
      if (d == 0) return;
    }
    if (k == 0) return;
  }
}

}  // namespace floe::hf
