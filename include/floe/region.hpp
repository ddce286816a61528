// Regions: which part of a global tensor one rank holds, and the overlap
// arithmetic that resharded loads are built on.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "floe/shape.hpp"

namespace floe {

// Number of elements of `shape` (1 for a rank-0 tensor). Throws
// Error(kInvalidArgument) when the product overflows 64 bits.
std::uint64_t num_elements(const Shape& shape);

// num_elements(shape) * element_size, overflow-checked like num_elements.
std::uint64_t byte_size(const Shape& shape, std::size_t element_size);

// An N-d box of a global tensor: offset and extent per dimension.
struct Box {
  Shape offset;
  Shape extent;

  std::uint64_t elements() const { return num_elements(extent); }
  bool empty() const;
  bool operator==(const Box& other) const {
    return offset == other.offset && extent == other.extent;
  }
};

// The box covering all of `shape`.
Box full_box(const Shape& shape);

// The common part of `a` and `b`, or nullopt if they do not meet.
// Both must have the same rank.
std::optional<Box> intersect(const Box& a, const Box& b);

// A flat range [begin, end) of a tensor's row-major element order.
struct FlatRange {
  std::uint64_t begin = 0;
  std::uint64_t end = 0;

  std::uint64_t elements() const { return end - begin; }
  bool operator==(const FlatRange& other) const {
    return begin == other.begin && end == other.end;
  }
};

// Splits a flat range of a tensor of `shape` into the boxes that tile it, in
// row-major order: at most 2N-1 boxes for an N-d tensor. Throws
// Error(kInvalidArgument) when the range does not fit in the tensor.
std::vector<Box> flat_range_to_boxes(const Shape& shape, const FlatRange& range);

// The part of a tensor one rank holds: a box or a flat range, optionally
// replicated (other ranks hold the same data; it is written once).
class Region {
 public:
  enum class Kind { kBox, kFlatRange };

  // The whole tensor, held by this rank alone.
  static Region whole(const Shape& shape);
  static Region box(Box box);
  static Region flat(FlatRange range);
  // Same region, marked as also held by other ranks.
  Region replicated() const;

  Kind kind() const { return kind_; }
  bool is_replicated() const { return replicated_; }
  const Box& as_box() const;         // kind() == kBox
  const FlatRange& as_flat() const;  // kind() == kFlatRange

  // Elements this region covers in the tensor of `shape`.
  std::uint64_t elements() const;

  // Checks that the region lies inside a tensor of `shape`; throws
  // Error(kInvalidArgument) naming `tensor_name` otherwise.
  void validate(const Shape& shape, const std::string& tensor_name) const;

  // The boxes tiling this region, in the order its elements are laid out in
  // the holder's buffer (row-major within each box, boxes in flat order).
  std::vector<Box> boxes(const Shape& shape) const;

  // A short text form: "box[0:4,0:8]", "flat[10:20)", with "*" if replicated.
  std::string to_string() const;

  bool operator==(const Region& other) const;

 private:
  Kind kind_ = Kind::kBox;
  bool replicated_ = false;
  Box box_;
  FlatRange flat_;
};

// Calls `run(a_at, b_at, count)` for each maximal contiguous run of the
// elements where `a` and `b` overlap, in row-major order: `count` elements
// starting at element `a_at` of a buffer laid out row-major over `a`, and at
// element `b_at` of one laid out over `b`. Returns the elements visited.
template <typename Run>
std::uint64_t for_each_overlap_run(const Box& a, const Box& b, Run&& run);

// Copies the elements where `src_box` and `dst_box` overlap from `src`
// (laid out row-major over `src_box`) into `dst` (row-major over `dst_box`).
// Returns the number of elements copied. Both boxes are of the same tensor.
std::uint64_t copy_overlap(const Box& src_box, const void* src,
                           const Box& dst_box, void* dst,
                           std::size_t element_size);

// The same for whole regions of one tensor of `shape`: copies every element
// that `src_region` (held in `src`) and `dst_region` (held in `dst`) share.
std::uint64_t copy_region_overlap(const Shape& shape, const Region& src_region,
                                  const void* src, const Region& dst_region,
                                  void* dst, std::size_t element_size);

namespace detail {
// Walks the overlap as for_each_overlap_run does; `run` is type-erased.
std::uint64_t walk_overlap(const Box& a, const Box& b,
                           void (*run)(void*, std::uint64_t, std::uint64_t,
                                       std::uint64_t),
                           void* context);
}  // namespace detail

template <typename Run>
std::uint64_t for_each_overlap_run(const Box& a, const Box& b, Run&& run) {
  return detail::walk_overlap(
      a, b,
      [](void* c, std::uint64_t a_at, std::uint64_t b_at, std::uint64_t n) {
        (*static_cast<std::remove_reference_t<Run>*>(c))(a_at, b_at, n);
      },
      &run);
}

}  // namespace floe
