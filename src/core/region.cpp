#include "floe/region.hpp"

#include <algorithm>
#include <cstring>

#include "core/shape_text.hpp"
#include "floe/error.hpp"

namespace floe {
namespace {

[[noreturn]] void throw_overflow(const char* what) {
  throw Error(ErrorCode::kInvalidArgument, std::string(what) + " overflows 64 bits");
}

std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const char* what) {
  std::uint64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out)) throw_overflow(what);
  return out;
}

// The box where `a` and `b` meet, into offset[0, rank) and extent[0, rank)
// (rank = a's): false when they do not meet. Throws when their ranks
// differ. intersect() and walk_overlap() (which keeps its arrays on the
// stack) share it.
bool intersect_into(const Box& a, const Box& b, std::uint64_t* offset,
                    std::uint64_t* extent) {
  if (a.offset.size() != b.offset.size()) {
    throw Error(ErrorCode::kInvalidArgument,
                "intersect: boxes of different rank");
  }
  for (std::size_t d = 0; d < a.offset.size(); ++d) {
    const std::uint64_t lo = std::max(a.offset[d], b.offset[d]);
    const std::uint64_t hi = std::min(a.offset[d] + a.extent[d],
                                      b.offset[d] + b.extent[d]);
    if (hi <= lo) return false;
    offset[d] = lo;
    extent[d] = hi - lo;
  }
  return true;
}

// Appends the boxes tiling flat range [begin, end) of the sub-tensor
// shape[dim:], whose outer indices are `prefix`.
void decompose(const Shape& shape, std::size_t dim, Shape& prefix,
               std::uint64_t begin, std::uint64_t end, std::vector<Box>& out) {
  if (begin >= end) return;
  const std::size_t rank = shape.size();
  std::uint64_t row = 1;  // elements per index of `dim`
  for (std::size_t d = dim + 1; d < rank; ++d) row *= shape[d];

  auto emit = [&](std::uint64_t first, std::uint64_t count) {
    Box box;
    box.offset = prefix;
    box.extent.assign(prefix.size(), 1);
    box.offset.push_back(first);
    box.extent.push_back(count);
    for (std::size_t d = dim + 1; d < rank; ++d) {
      box.offset.push_back(0);
      box.extent.push_back(shape[d]);
    }
    out.push_back(std::move(box));
  };

  std::uint64_t first_full = begin / row;
  if (begin % row != 0) {  // a partial head row
    const std::uint64_t head = begin / row;
    const std::uint64_t head_end = std::min(end, (head + 1) * row);
    prefix.push_back(head);
    decompose(shape, dim + 1, prefix, begin - head * row, head_end - head * row,
              out);
    prefix.pop_back();
    if (head_end == end) return;
    first_full = head + 1;
  }
  const std::uint64_t last_full = end / row;  // exclusive
  if (last_full > first_full) emit(first_full, last_full - first_full);
  if (end % row != 0) {  // a partial tail row
    prefix.push_back(last_full);
    decompose(shape, dim + 1, prefix, 0, end - last_full * row, out);
    prefix.pop_back();
  }
}

}  // namespace

std::uint64_t num_elements(const Shape& shape) {
  // A zero dimension makes the product 0 wherever it stands: nothing
  // overflows. One pass, the check after it: this runs several times per
  // tensor of a load (TensorShard::nbytes()).
  std::uint64_t n = 1;
  bool zero = false, overflow = false;
  for (auto d : shape) {
    zero |= d == 0;
    overflow |= __builtin_mul_overflow(n, d, &n);
  }
  if (zero) return 0;
  if (overflow) throw_overflow("the tensor's element count");
  return n;
}

std::uint64_t byte_size(const Shape& shape, std::size_t element_size) {
  return checked_mul(num_elements(shape), element_size,
                     "the tensor's byte size");
}

bool Box::empty() const {
  return std::any_of(extent.begin(), extent.end(),
                     [](std::uint64_t e) { return e == 0; });
}

Box full_box(const Shape& shape) {
  return Box{Shape(shape.size(), 0), shape};
}

std::optional<Box> intersect(const Box& a, const Box& b) {
  Box out;
  out.offset.resize(a.offset.size());
  out.extent.resize(a.offset.size());
  if (!intersect_into(a, b, out.offset.data(), out.extent.data())) return std::nullopt;
  return out;
}

std::vector<Box> flat_range_to_boxes(const Shape& shape,
                                     const FlatRange& range) {
  const std::uint64_t total = num_elements(shape);
  if (range.begin > range.end || range.end > total) {
    throw Error(ErrorCode::kInvalidArgument,
                "flat range [" + std::to_string(range.begin) + ", " +
                    std::to_string(range.end) + ") does not fit a tensor of " +
                    std::to_string(total) + " elements");
  }
  std::vector<Box> out;
  if (range.begin == range.end) return out;
  if (shape.empty()) return {Box{}};
  Shape prefix;
  decompose(shape, 0, prefix, range.begin, range.end, out);
  return out;
}

Region Region::whole(const Shape& shape) { return box(full_box(shape)); }

Region Region::box(Box box) {
  if (box.offset.size() != box.extent.size()) {
    throw Error(ErrorCode::kInvalidArgument,
                "box offset and extent have different ranks");
  }
  Region r;
  r.kind_ = Kind::kBox;
  r.box_ = std::move(box);
  return r;
}

Region Region::flat(FlatRange range) {
  if (range.begin > range.end) {
    throw Error(ErrorCode::kInvalidArgument, "flat range with begin > end");
  }
  Region r;
  r.kind_ = Kind::kFlatRange;
  r.flat_ = range;
  return r;
}

Region Region::replicated() const {
  Region r = *this;
  r.replicated_ = true;
  return r;
}

const Box& Region::as_box() const {
  if (kind_ != Kind::kBox) {
    throw Error(ErrorCode::kInternal, "as_box() on a flat-range region");
  }
  return box_;
}

const FlatRange& Region::as_flat() const {
  if (kind_ != Kind::kFlatRange) {
    throw Error(ErrorCode::kInternal, "as_flat() on a box region");
  }
  return flat_;
}

std::uint64_t Region::elements() const {
  return kind_ == Kind::kBox ? box_.elements() : flat_.elements();
}

void Region::validate(const Shape& shape, const std::string& tensor) const {
  auto fail = [&](const std::string& why) {
    throw Error(ErrorCode::kInvalidArgument, "tensor \"" + tensor +
                                                 "\": region " + to_string() +
                                                 " " + why);
  };
  if (kind_ == Kind::kFlatRange) {
    if (flat_.end > num_elements(shape)) {
      fail("ends past the tensor's " + std::to_string(num_elements(shape)) +
           " elements");
    }
    return;
  }
  if (box_.offset.size() != shape.size()) {
    fail("has rank " + std::to_string(box_.offset.size()) +
         " but the tensor has shape " + shape_text(shape));
  }
  for (std::size_t d = 0; d < shape.size(); ++d) {
    std::uint64_t end = 0;
    if (__builtin_add_overflow(box_.offset[d], box_.extent[d], &end) ||
        end > shape[d]) {
      fail("leaves the tensor's shape " + shape_text(shape) + " in dimension " +
           std::to_string(d));
    }
  }
}

std::vector<Box> Region::boxes(const Shape& shape) const {
  if (kind_ == Kind::kBox) return {box_};
  return flat_range_to_boxes(shape, flat_);
}

std::string Region::to_string() const {
  std::string out;
  if (kind_ == Kind::kFlatRange) {
    out = "flat[" + std::to_string(flat_.begin) + ":" +
          std::to_string(flat_.end) + ")";
  } else {
    out = "box[";
    for (std::size_t d = 0; d < box_.offset.size(); ++d) {
      out += (d ? "," : "") + std::to_string(box_.offset[d]) + ":" +
             std::to_string(box_.offset[d] + box_.extent[d]);
    }
    out += "]";
  }
  return replicated_ ? out + "*" : out;
}

bool Region::operator==(const Region& other) const {
  if (kind_ != other.kind_ || replicated_ != other.replicated_) return false;
  return kind_ == Kind::kBox ? box_ == other.box_ : flat_ == other.flat_;
}

namespace detail {

std::uint64_t walk_overlap(const Box& a, const Box& b,
                           void (*run)(void*, std::uint64_t, std::uint64_t,
                                       std::uint64_t),
                           void* context) {
  const std::size_t rank = a.offset.size();
  // The common box (offset, extent), each buffer's row-major strides and
  // the odometer live on the stack up to kInlineRank dimensions: a load
  // walks this once per tensor and saved piece, and at 20,000 small
  // tensors the five vectors it built (intersect() and three here) cost
  // more than the walk itself.
  constexpr std::size_t kInlineRank = 8;
  std::uint64_t inline_space[5 * kInlineRank];
  std::vector<std::uint64_t> heap_space;
  std::uint64_t* space = inline_space;
  if (rank > kInlineRank) {
    heap_space.resize(5 * rank);
    space = heap_space.data();
  }
  std::uint64_t* const offset = space;
  std::uint64_t* const extent = space + rank;
  std::uint64_t* const a_stride = space + 2 * rank;
  std::uint64_t* const b_stride = space + 3 * rank;
  std::uint64_t* const index = space + 4 * rank;  // odometer over dims < inner
  if (!intersect_into(a, b, offset, extent)) return 0;
  std::uint64_t count = 1;
  for (std::size_t d = 0; d < rank; ++d) {
    count = checked_mul(count, extent[d], "the tensor's element count");
  }
  if (rank == 0) {
    run(context, 0, 0, 1);
    return 1;
  }
  // Coalesce trailing dimensions that all three boxes span fully, so each
  // run is the longest contiguous one.
  std::size_t inner = rank - 1;
  std::uint64_t length = extent[inner];
  while (inner > 0 && extent[inner] == a.extent[inner] &&
         extent[inner] == b.extent[inner]) {
    --inner;
    length *= extent[inner];
  }
  a_stride[rank - 1] = b_stride[rank - 1] = 1;
  for (std::size_t d = rank - 1; d > 0; --d) {
    a_stride[d - 1] = a_stride[d] * a.extent[d];
    b_stride[d - 1] = b_stride[d] * b.extent[d];
  }
  std::fill(index, index + inner, 0);
  for (;;) {
    std::uint64_t a_at = 0, b_at = 0;
    for (std::size_t d = 0; d <= inner; ++d) {
      const std::uint64_t g = offset[d] + (d < inner ? index[d] : 0);
      a_at += (g - a.offset[d]) * a_stride[d];
      b_at += (g - b.offset[d]) * b_stride[d];
    }
    run(context, a_at, b_at, length);
    std::size_t d = inner;
    for (;;) {
      if (d == 0) return count;
      --d;
      if (++index[d] < extent[d]) break;
      index[d] = 0;
    }
  }
}

}  // namespace detail

std::uint64_t copy_overlap(const Box& src_box, const void* src,
                           const Box& dst_box, void* dst,
                           std::size_t element_size) {
  const auto* in = static_cast<const unsigned char*>(src);
  auto* out = static_cast<unsigned char*>(dst);
  return for_each_overlap_run(
      src_box, dst_box,
      [&](std::uint64_t src_at, std::uint64_t dst_at, std::uint64_t n) {
        std::memcpy(out + dst_at * element_size, in + src_at * element_size,
                    n * element_size);
      });
}

std::uint64_t copy_region_overlap(const Shape& shape, const Region& src_region,
                                  const void* src, const Region& dst_region,
                                  void* dst, std::size_t element_size) {
  const auto src_boxes = src_region.boxes(shape);
  const auto dst_boxes = dst_region.boxes(shape);
  std::uint64_t copied = 0;
  std::uint64_t src_at = 0;
  for (const auto& s : src_boxes) {
    std::uint64_t dst_at = 0;
    for (const auto& d : dst_boxes) {
      copied += copy_overlap(
          s, static_cast<const unsigned char*>(src) + src_at * element_size, d,
          static_cast<unsigned char*>(dst) + dst_at * element_size,
          element_size);
      dst_at += d.elements();
    }
    src_at += s.elements();
  }
  return copied;
}

}  // namespace floe
