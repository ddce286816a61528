#include "cli/chunk_plan.hpp"

#include "core/box_chunks.hpp"
#include "core/shape_text.hpp"

namespace floe::cli {

std::vector<Box> chunk_boxes(const Shape& shape, std::size_t element_size,
                             std::uint64_t max_bytes) {
  if (shape.empty()) return {Box{}};
  if (num_elements(shape) == 0) return {};
  std::vector<Box> boxes;
  split_box(full_box(shape), element_size, max_bytes, boxes);
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
