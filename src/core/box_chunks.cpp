#include "core/box_chunks.hpp"

#include <algorithm>

namespace floe {

void split_box(const Box& box, std::uint64_t element, std::uint64_t limit,
               std::vector<Box>& out) {
  std::size_t d = 0;
  while (d < box.extent.size() && box.extent[d] <= 1) ++d;
  if (d == box.extent.size() || box.elements() * element <= limit) {
    out.push_back(box);
    return;
  }
  const std::uint64_t slice = box.elements() / box.extent[d] * element;
  const std::uint64_t step = std::max<std::uint64_t>(1, limit / slice);
  Box part = box;
  for (std::uint64_t i = 0; i < box.extent[d]; i += step) {
    part.offset[d] = box.offset[d] + i;
    part.extent[d] = std::min(step, box.extent[d] - i);
    if (slice > limit) {
      split_box(part, element, limit, out);
    } else {
      out.push_back(part);
    }
  }
}

}  // namespace floe
