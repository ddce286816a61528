#include "cli/chunk_plan.hpp"

#include <algorithm>

#include "core/shape_text.hpp"

namespace floe::cli {

std::vector<Box> chunk_boxes(const Shape& shape, std::size_t element_size,
                             std::uint64_t max_bytes) {
  if (shape.empty()) return {Box{}};
  if (num_elements(shape) == 0) return {};
  // The first dimension `d` whose inner block (dimensions after it) fits.
  std::size_t d = shape.size() - 1;
  std::uint64_t inner = element_size;  // bytes of one step along dimension d
  for (std::size_t k = shape.size() - 1; k > 0; --k) {
    if (inner * shape[k] > max_bytes) break;
    inner *= shape[k];
    d = k - 1;
  }
  const std::uint64_t step =
      std::clamp<std::uint64_t>(max_bytes / inner, 1, shape[d]);

  std::vector<Box> boxes;
  Shape lead(d, 0);  // the fixed index of dimensions before d
  while (true) {
    for (std::uint64_t at = 0; at < shape[d]; at += step) {
      Box box{Shape(shape.size(), 0), shape};
      for (std::size_t k = 0; k < d; ++k) {
        box.offset[k] = lead[k];
        box.extent[k] = 1;
      }
      box.offset[d] = at;
      box.extent[d] = std::min(step, shape[d] - at);
      boxes.push_back(std::move(box));
    }
    // Next leading index, row-major; done after the last.
    std::size_t k = d;
    while (k > 0 && ++lead[k - 1] == shape[k - 1]) lead[--k] = 0;
    if (k == 0) break;
  }
  return boxes;
}

std::uint64_t global_index(const Shape& shape, const Box& box,
                           std::uint64_t i) {
  std::uint64_t flat = 0;
  std::uint64_t rest = i;
  std::uint64_t below = 1;  // elements of the box's dimensions after k
  Shape coord(shape.size());
  for (std::size_t k = shape.size(); k-- > 0;) {
    coord[k] = box.offset[k] + rest % box.extent[k];
    rest /= box.extent[k];
  }
  for (std::size_t k = shape.size(); k-- > 0;) {
    flat += coord[k] * below;
    below *= shape[k];
  }
  return flat;
}

std::string index_text(const Shape& shape, std::uint64_t flat) {
  Shape coord(shape.size());
  for (std::size_t k = shape.size(); k-- > 0;) {
    coord[k] = flat % shape[k];
    flat /= shape[k];
  }
  return shape_text(coord);  // an index reads like a shape: "[2,0,7]"
}

}  // namespace floe::cli
