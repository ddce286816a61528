#include "engines/hdf5/h5_selection.hpp"

#include <algorithm>

#include "engines/hdf5/h5_handle.hpp"

namespace floe::h5 {
namespace {

// Row-major index of `point` in a tensor of `shape`.
std::uint64_t flat_index(const Shape& shape, const Shape& point) {
  std::uint64_t index = 0;
  for (std::size_t d = 0; d < shape.size(); ++d)
    index = index * shape[d] + point[d];
  return index;
}

std::uint64_t first_index(const Shape& shape, const Box& box) {
  return flat_index(shape, box.offset);
}

std::uint64_t last_index(const Shape& shape, const Box& box) {
  Shape point = box.offset;
  for (std::size_t d = 0; d < point.size(); ++d) point[d] += box.extent[d] - 1;
  return flat_index(shape, point);
}

// Elements [begin, end) of `box` in its own row-major order, as boxes of the
// tensor (at most 2N-1 of them, in row-major order).
void append_slice(const Box& box, std::uint64_t begin, std::uint64_t end,
                  std::vector<Box>& out) {
  if (begin == 0 && end == box.elements()) {
    out.push_back(box);
    return;
  }
  for (Box part : flat_range_to_boxes(box.extent, FlatRange{begin, end})) {
    for (std::size_t d = 0; d < part.offset.size(); ++d) {
      part.offset[d] += box.offset[d];
    }
    out.push_back(std::move(part));
  }
}

std::vector<hsize_t> to_hsize(const Shape& values) {
  return std::vector<hsize_t>(values.begin(), values.end());
}

}  // namespace

std::vector<Transfer> plan_transfers(const Shape& shape,
                                     const std::vector<Box>& boxes,
                                     std::uint64_t max_elements) {
  std::vector<Transfer> out;
  Transfer current;
  std::uint64_t buffer_at = 0;  // elements of the buffer consumed
  bool have_previous = false;
  std::uint64_t previous_last = 0;  // row-major index of the previous box's end
  auto emit = [&] {
    if (current.elements == 0) return;
    out.push_back(std::move(current));
    current = Transfer{};
    current.buffer_offset = buffer_at;
  };
  for (const Box& box : boxes) {
    const std::uint64_t n = box.elements();
    if (n == 0) continue;
    if (have_previous && first_index(shape, box) <= previous_last) emit();
    have_previous = true;
    previous_last = last_index(shape, box);
    for (std::uint64_t done = 0; done < n;) {
      std::uint64_t take = n - done;
      if (max_elements != 0)
        take = std::min(take, max_elements - current.elements);
      append_slice(box, done, done + take, current.boxes);
      current.elements += take;
      done += take;
      buffer_at += take;
      if (max_elements != 0 && current.elements == max_elements) emit();
    }
  }
  emit();
  return out;
}

void select_boxes(hid_t space, const Shape& shape,
                  const std::vector<Box>& boxes) {
  if (boxes.empty()) {
    check(H5Sselect_none(space), "H5Sselect_none");
    return;
  }
  if (shape.empty()) {
    check(H5Sselect_all(space), "H5Sselect_all");
    return;
  }
  H5S_seloper_t op = H5S_SELECT_SET;
  for (const Box& box : boxes) {
    const auto start = to_hsize(box.offset);
    const auto count = to_hsize(box.extent);
    check(H5Sselect_hyperslab(space, op, start.data(), nullptr, count.data(),
                              nullptr),
          "H5Sselect_hyperslab");
    op = H5S_SELECT_OR;
  }
}

}  // namespace floe::h5
