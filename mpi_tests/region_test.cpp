// Region arithmetic: element counts, intersections, flat ranges as boxes,
// and the overlap copies resharded loads are built on, each checked against
// an element-by-element reference.
#include "floe/region.hpp"

#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace floe {
namespace {

using test::throws_error;

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

std::string shape_text(const Shape& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    out += (i ? "," : "") + std::to_string(shape[i]);
  }
  return out + "]";
}

// Every shape of rank 0..max_rank with each dimension in 0..max_dim.
std::vector<Shape> all_shapes(std::size_t max_rank, std::uint64_t max_dim) {
  std::vector<Shape> out = {Shape{}};
  std::vector<Shape> previous = {Shape{}};
  for (std::size_t rank = 1; rank <= max_rank; ++rank) {
    std::vector<Shape> next;
    for (const auto& s : previous) {
      for (std::uint64_t d = 0; d <= max_dim; ++d) {
        Shape t = s;
        t.push_back(d);
        next.push_back(t);
      }
    }
    out.insert(out.end(), next.begin(), next.end());
    previous = std::move(next);
  }
  return out;
}

// Row-major flat index of `index` in a tensor of `shape`.
std::uint64_t flat_index(const Shape& shape, const Shape& index) {
  std::uint64_t flat = 0;
  for (std::size_t d = 0; d < shape.size(); ++d)
    flat = flat * shape[d] + index[d];
  return flat;
}

// The global flat indices of `box`'s elements in row-major order over the box.
std::vector<std::uint64_t> box_elements(const Shape& shape, const Box& box) {
  std::vector<std::uint64_t> out;
  const std::uint64_t n = box.elements();
  out.reserve(n);
  Shape index(box.offset.size(), 0);
  Shape global(box.offset.size());  // one allocation, not one per element
  for (std::uint64_t i = 0; i < n; ++i) {
    for (std::size_t d = 0; d < global.size(); ++d) global[d] = box.offset[d] + index[d];
    out.push_back(flat_index(shape, global));
    for (std::size_t d = index.size(); d-- > 0;) {
      if (++index[d] < box.extent[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

// ---- num_elements / byte_size ---------------------------------------------

TEST(Region, NumElements) {
  EXPECT_EQ(num_elements({}), 1u);
  EXPECT_EQ(num_elements({7}), 7u);
  EXPECT_EQ(num_elements({2, 3, 4}), 24u);
  EXPECT_EQ(num_elements({2, 0, 4}), 0u);
  EXPECT_EQ(num_elements({1ull << 32, (1ull << 32) - 1}),
            (1ull << 32) * ((1ull << 32) - 1));
  EXPECT_EQ(byte_size({3, 5}, 8), 120u);
}

TEST(Region, NumElementsOverflowIsAnError) {
  EXPECT_TRUE(throws_error(
      [] {
        (void)num_elements({1ull << 32, 1ull << 32});
      },
      ErrorCode::kInvalidArgument, {"overflows"}));
  EXPECT_TRUE(throws_error(
      [] {
        (void)num_elements({kMax, 2});
      },
      ErrorCode::kInvalidArgument, {"overflows"}));
  // The element count fits; the byte size does not.
  EXPECT_TRUE(throws_error([] { (void)byte_size({1ull << 62}, 8); },
                           ErrorCode::kInvalidArgument,
                           {"byte size", "overflows"}));
}

TEST(Region, ZeroSizeTensorWithHugeDimensionsHasZeroElements) {
  // The product is 0 whatever the order of the dimensions: nothing overflows.
  EXPECT_EQ(num_elements({1ull << 40, 1ull << 40, 0}), 0u);
  EXPECT_EQ(num_elements({0, 1ull << 40, 1ull << 40}), 0u);
  EXPECT_EQ(byte_size({1ull << 40, 1ull << 40, 0}, 8), 0u);
}

// ---- intersect
// ---------------------------------------------------------------

TEST(Region, IntersectOverlappingBoxes) {
  const Box a{{0, 2}, {4, 4}};  // rows 0..3, cols 2..5
  const Box b{{2, 0}, {4, 4}};  // rows 2..5, cols 0..3
  const auto c = intersect(a, b);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(*c, (Box{{2, 2}, {2, 2}}));
  EXPECT_EQ(intersect(b, a), c);
}

TEST(Region, IntersectContainedAndIdentical) {
  const Box outer{{0, 0, 0}, {5, 6, 7}};
  const Box inner{{1, 2, 3}, {2, 2, 2}};
  EXPECT_EQ(intersect(outer, inner), inner);
  EXPECT_EQ(intersect(inner, inner), inner);
}

TEST(Region, IntersectOfDisjointOrTouchingBoxesIsEmpty) {
  EXPECT_FALSE(
      intersect(Box{{0}, {4}}, Box{{4}, {4}}).has_value());  // touching
  EXPECT_FALSE(intersect(Box{{0, 0}, {2, 2}}, Box{{0, 5}, {2, 2}}).has_value());
  // An empty box meets nothing, not even a box that contains its offset.
  EXPECT_FALSE(intersect(Box{{1, 1}, {0, 3}}, Box{{0, 0}, {4, 4}}).has_value());
}

TEST(Region, IntersectOfRankZeroBoxesIsTheScalar) {
  const auto c = intersect(Box{}, Box{});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->elements(), 1u);
  EXPECT_TRUE(c->offset.empty());
}

TEST(Region, IntersectOfDifferentRanksIsAnError) {
  EXPECT_TRUE(throws_error(
      [] {
        (void)intersect(Box{{0}, {2}}, Box{{0, 0}, {2, 2}});
      },
      ErrorCode::kInvalidArgument, {"rank"}));
}

// ---- flat_range_to_boxes
// -------------------------------------------------------

// For every shape of rank 0..4 with dims 0..4 and every [b, e) of it: at most
// 2N-1 boxes (1 for a scalar), each inside the tensor and non-empty, and
// their elements in order are exactly b, b+1, ..., e-1, so the boxes are
// contiguous, disjoint, in flat order and cover the range.
TEST(Region, FlatRangeToBoxesExhaustive) {
  std::uint64_t ranges_checked = 0;
  for (const Shape& shape : all_shapes(4, 4)) {
    const std::uint64_t total = num_elements(shape);
    const std::size_t max_boxes = shape.empty() ? 1 : 2 * shape.size() - 1;
    for (std::uint64_t b = 0; b <= total; ++b) {
      for (std::uint64_t e = b; e <= total; ++e) {
        ++ranges_checked;
        const auto boxes = flat_range_to_boxes(shape, FlatRange{b, e});
        auto where = [&] {
          return "shape " + shape_text(shape) + " range [" + std::to_string(b) +
                 "," + std::to_string(e) + ")";
        };
        if (boxes.size() > max_boxes) {
          ADD_FAILURE() << where() << ": " << boxes.size() << " boxes";
          continue;
        }
        std::uint64_t next = b;
        bool ok = true;
        for (const Box& box : boxes) {
          if (box.offset.size() != shape.size() ||
              box.extent.size() != shape.size()) {
            ADD_FAILURE() << where() << ": a box of the wrong rank";
            ok = false;
            break;
          }
          if (box.empty()) {
            ADD_FAILURE() << where() << ": an empty box";
            ok = false;
          }
          for (std::size_t d = 0; d < shape.size(); ++d) {
            if (box.offset[d] + box.extent[d] > shape[d]) {
              ADD_FAILURE() << where() << ": a box leaves the tensor";
              ok = false;
            }
          }
          if (!ok) break;
          for (std::uint64_t g : box_elements(shape, box)) {
            if (g != next) {
              ADD_FAILURE() << where() << ": element " << g << " where " << next
                            << " was due";
              ok = false;
              break;
            }
            ++next;
          }
          if (!ok) break;
        }
        if (ok && next != e) {
          ADD_FAILURE() << where() << ": the boxes end at " << next;
        }
        if (::testing::Test::HasFailure()) return;  // one report is enough
      }
    }
  }
  // 781 shapes and 436,413 ranges: proof that the loops ran them all.
  EXPECT_EQ(ranges_checked, 436413u);
}

TEST(Region, FlatRangeToBoxesExamples) {
  // A 4x5 tensor, elements 3..16: head of row 0, rows 1..2, head of row 3.
  const auto boxes = flat_range_to_boxes({4, 5}, FlatRange{3, 17});
  ASSERT_EQ(boxes.size(), 3u);
  EXPECT_EQ(boxes[0], (Box{{0, 3}, {1, 2}}));
  EXPECT_EQ(boxes[1], (Box{{1, 0}, {2, 5}}));
  EXPECT_EQ(boxes[2], (Box{{3, 0}, {1, 2}}));
  // The whole tensor is one box.
  EXPECT_EQ(flat_range_to_boxes({4, 5}, FlatRange{0, 20}),
            std::vector<Box>{full_box({4, 5})});
  // An empty range is no boxes; a scalar is one rank-0 box.
  EXPECT_TRUE(flat_range_to_boxes({4, 5}, FlatRange{7, 7}).empty());
  EXPECT_EQ(flat_range_to_boxes({}, FlatRange{0, 1}), std::vector<Box>{Box{}});
}

TEST(Region, FlatRangeOutsideTheTensorIsAnError) {
  EXPECT_TRUE(throws_error(
      [] {
        (void)flat_range_to_boxes({4, 5}, FlatRange{0, 21});
      },
      ErrorCode::kInvalidArgument, {"[0, 21)", "20 elements"}));
  EXPECT_TRUE(throws_error(
      [] {
        (void)flat_range_to_boxes({4, 5}, FlatRange{5, 3});
      },
      ErrorCode::kInvalidArgument, {"[5, 3)"}));
  EXPECT_TRUE(throws_error(
      [] {
        (void)flat_range_to_boxes({0, 5}, FlatRange{0, 1});
      },
      ErrorCode::kInvalidArgument, {"0 elements"}));
}

TEST(Region, FlatRegionBoxesMatchFlatRangeToBoxes) {
  const Shape shape{3, 4, 5};
  const Region r = Region::flat(FlatRange{7, 51});
  EXPECT_EQ(r.elements(), 44u);
  EXPECT_EQ(r.boxes(shape), flat_range_to_boxes(shape, FlatRange{7, 51}));
  const Region b = Region::box(Box{{1, 0, 2}, {2, 4, 3}});
  EXPECT_EQ(b.boxes(shape), std::vector<Box>{b.as_box()});
  EXPECT_EQ(b.elements(), 24u);
}

// ---- Region construction, text form, validate ------------------------------

TEST(Region, ConstructionAndTextForm) {
  const Region whole = Region::whole({4, 8});
  EXPECT_EQ(whole.kind(), Region::Kind::kBox);
  EXPECT_FALSE(whole.is_replicated());
  EXPECT_EQ(whole.to_string(), "box[0:4,0:8]");
  EXPECT_EQ(whole.replicated().to_string(), "box[0:4,0:8]*");
  EXPECT_TRUE(whole.replicated().is_replicated());
  EXPECT_EQ(Region::flat(FlatRange{10, 20}).to_string(), "flat[10:20)");
  EXPECT_EQ(Region::box(Box{{2, 0}, {1, 8}}).to_string(), "box[2:3,0:8]");
  EXPECT_EQ(Region::whole({}).to_string(), "box[]");
  EXPECT_EQ(Region::whole({}).elements(), 1u);

  EXPECT_EQ(whole, Region::box(full_box({4, 8})));
  EXPECT_FALSE(whole == whole.replicated());
  EXPECT_FALSE(Region::flat(FlatRange{0, 32}) ==
               whole);  // same elements, other kind
}

TEST(Region, ConstructionErrors) {
  EXPECT_TRUE(throws_error(
      [] {
        (void)Region::box(Box{{0, 0}, {4}});
      },
      ErrorCode::kInvalidArgument, {"different ranks"}));
  EXPECT_TRUE(throws_error(
      [] {
        (void)Region::flat(FlatRange{5, 4});
      },
      ErrorCode::kInvalidArgument, {"begin > end"}));
  EXPECT_TRUE(throws_error([] { (void)Region::whole({4}).as_flat(); },
                           ErrorCode::kInternal));
  EXPECT_TRUE(throws_error(
      [] {
        (void)Region::flat(FlatRange{0, 1}).as_box();
      },
      ErrorCode::kInternal));
}

TEST(Region, ValidateAcceptsRegionsInside) {
  const Shape shape{4, 8};
  for (const Region& r :
       {Region::whole(shape), Region::box(Box{{3, 7}, {1, 1}}),
        Region::box(Box{{4, 0}, {0, 8}}),  // empty, at the end
        Region::flat(FlatRange{0, 32}), Region::flat(FlatRange{32, 32})}) {
    const auto caught =
        test::catch_error([&] { r.validate(shape, "model/w"); });
    EXPECT_FALSE(caught.thrown) << r.to_string() << ": " << caught.message;
  }
}

TEST(Region, ValidateErrorsNameTheTensor) {
  const Shape shape{4, 8};
  const std::string name = "model/layers.0.mlp.weight";
  EXPECT_TRUE(throws_error(
      [&] {
        Region::box(Box{{2, 0}, {3, 8}}).validate(shape, name);
      },
      ErrorCode::kInvalidArgument,
      {"\"" + name + "\"", "box[2:5,0:8]", "dimension 0"}));
  EXPECT_TRUE(throws_error(
      [&] {
        Region::box(Box{{0, 1}, {4, 8}}).validate(shape, name);
      },
      ErrorCode::kInvalidArgument, {"\"" + name + "\"", "dimension 1"}));
  EXPECT_TRUE(throws_error([&] { Region::whole({4}).validate(shape, name); },
                           ErrorCode::kInvalidArgument,
                           {"\"" + name + "\"", "rank 1"}));
  EXPECT_TRUE(throws_error(
      [&] {
        Region::flat(FlatRange{30, 33}).validate(shape, name);
      },
      ErrorCode::kInvalidArgument,
      {"\"" + name + "\"", "flat[30:33)", "32 elements"}));
  // offset + extent wraps around 2^64: still outside, not "inside".
  EXPECT_TRUE(throws_error(
      [&] {
        Region::box(Box{{kMax, 0}, {2, 8}}).validate(shape, name);
      },
      ErrorCode::kInvalidArgument, {"\"" + name + "\""}));
}

// ---- copy_overlap / copy_region_overlap against a reference -----------------

constexpr unsigned char kUntouched = 0xEE;

// The element of global flat index `g` as test bytes (distinct per element).
void element_bytes(std::uint64_t g, std::size_t size, unsigned char* out) {
  for (std::size_t i = 0; i < size; ++i) {
    out[i] = static_cast<unsigned char>((g * 131 + i * 7 + 1) % 251);
  }
}

struct Buffer {
  std::vector<unsigned char> bytes;
  std::vector<std::uint64_t> globals;  // position -> global flat index
};

// A buffer holding `region`'s elements in its own order, filled with
// element_bytes (fill) or kUntouched.
Buffer make_buffer(const Shape& shape, const Region& region, std::size_t size,
                   bool fill) {
  Buffer b;
  test::for_each_element(shape, region, [&](std::uint64_t g, std::uint64_t) {
    b.globals.push_back(g);
  });
  b.bytes.assign(b.globals.size() * size, kUntouched);
  if (fill) {
    for (std::size_t i = 0; i < b.globals.size(); ++i) {
      element_bytes(b.globals[i], size, &b.bytes[i * size]);
    }
  }
  return b;
}

// What dst must hold after copying from src: src's bytes where src holds the
// element, untouched elsewhere. Returns the number of shared elements.
std::uint64_t reference_copy(const Buffer& src, Buffer& dst, std::size_t size) {
  std::map<std::uint64_t, std::size_t> at;
  for (std::size_t i = 0; i < src.globals.size(); ++i) at[src.globals[i]] = i;
  std::uint64_t copied = 0;
  for (std::size_t i = 0; i < dst.globals.size(); ++i) {
    auto it = at.find(dst.globals[i]);
    if (it == at.end()) continue;
    std::memcpy(&dst.bytes[i * size], &src.bytes[it->second * size], size);
    ++copied;
  }
  return copied;
}

Shape random_shape(std::mt19937_64& rng) {
  Shape shape(rng() % 5);
  for (auto& d : shape) d = 1 + rng() % 5;
  if (!shape.empty() && rng() % 20 == 0) shape[rng() % shape.size()] = 0;
  return shape;
}

Box random_box(std::mt19937_64& rng, const Shape& shape) {
  Box box;
  for (auto d : shape) {
    const std::uint64_t lo = d ? rng() % d : 0;
    const std::uint64_t hi = lo + rng() % (d - lo + 1);  // may be empty
    box.offset.push_back(lo);
    box.extent.push_back(hi - lo);
  }
  return box;
}

Region random_region(std::mt19937_64& rng, const Shape& shape) {
  if (rng() % 2 == 0) return Region::box(random_box(rng, shape));
  const std::uint64_t n = num_elements(shape);
  const std::uint64_t b = rng() % (n + 1);
  return Region::flat(FlatRange{b, b + rng() % (n - b + 1)});
}

std::size_t random_element_size(std::mt19937_64& rng) {
  static const std::size_t kSizes[] = {1, 2, 3, 4, 8};
  return kSizes[rng() % 5];
}

TEST(Region, CopyOverlapMatchesReferenceOnRandomBoxes) {
  std::mt19937_64 rng(20240611);
  for (int trial = 0; trial < 4000; ++trial) {
    const Shape shape = random_shape(rng);
    const Box src_box = random_box(rng, shape);
    const Box dst_box = random_box(rng, shape);
    const std::size_t size = random_element_size(rng);
    const Buffer src = make_buffer(shape, Region::box(src_box), size, true);
    Buffer dst = make_buffer(shape, Region::box(dst_box), size, false);
    Buffer want = dst;
    const std::uint64_t want_count = reference_copy(src, want, size);
    const std::uint64_t count = copy_overlap(src_box, src.bytes.data(), dst_box,
                                             dst.bytes.data(), size);
    ASSERT_EQ(count, want_count)
        << "trial " << trial << " shape " << shape_text(shape) << " src "
        << Region::box(src_box).to_string() << " dst "
        << Region::box(dst_box).to_string();
    ASSERT_EQ(dst.bytes, want.bytes)
        << "trial " << trial << " shape " << shape_text(shape) << " src "
        << Region::box(src_box).to_string() << " dst "
        << Region::box(dst_box).to_string() << " element size " << size;
  }
}

TEST(Region, CopyOverlapCoalescesFullRows) {
  // Both boxes span dims 1..2 fully: the overlap is one contiguous run.
  const Shape shape{6, 3, 4};
  const Box src_box{{0, 0, 0}, {4, 3, 4}};
  const Box dst_box{{2, 0, 0}, {4, 3, 4}};
  const Buffer src = make_buffer(shape, Region::box(src_box), 4, true);
  Buffer dst = make_buffer(shape, Region::box(dst_box), 4, false);
  Buffer want = dst;
  EXPECT_EQ(reference_copy(src, want, 4), 24u);
  EXPECT_EQ(
      copy_overlap(src_box, src.bytes.data(), dst_box, dst.bytes.data(), 4),
      24u);
  EXPECT_EQ(dst.bytes, want.bytes);
}

TEST(Region, CopyRegionOverlapMatchesReferenceOnRandomRegions) {
  std::mt19937_64 rng(77);
  for (int trial = 0; trial < 4000; ++trial) {
    const Shape shape = random_shape(rng);
    const Region src_region = random_region(rng, shape);
    const Region dst_region = random_region(rng, shape);
    const std::size_t size = random_element_size(rng);
    const Buffer src = make_buffer(shape, src_region, size, true);
    Buffer dst = make_buffer(shape, dst_region, size, false);
    Buffer want = dst;
    const std::uint64_t want_count = reference_copy(src, want, size);
    const std::uint64_t count =
        copy_region_overlap(shape, src_region, src.bytes.data(), dst_region,
                            dst.bytes.data(), size);
    const std::string what =
        "trial " + std::to_string(trial) + " shape " + shape_text(shape) +
        " src " + src_region.to_string() + " dst " + dst_region.to_string();
    ASSERT_EQ(count, want_count) << what;
    ASSERT_EQ(dst.bytes, want.bytes) << what << " element size " << size;
  }
}

TEST(Region, CopyRegionOverlapFlatIntoBox) {
  // ZeRO flat shard [5, 17) of a 4x6 tensor loaded into a dim-0 shard
  // (rows 1..2).
  const Shape shape{4, 6};
  const Region flat = Region::flat(FlatRange{5, 17});
  const Region rows = Region::box(Box{{1, 0}, {2, 6}});
  std::vector<float> src(12), dst(12, -1.0f);
  for (int i = 0; i < 12; ++i)
    src[i] = static_cast<float>(5 + i);  // value = flat index
  EXPECT_EQ(copy_region_overlap(shape, flat, src.data(), rows, dst.data(),
                                sizeof(float)),
            11u);  // flat indices 6..16
  const std::vector<float> want = {6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, -1};
  EXPECT_EQ(dst, want);
}

}  // namespace
}  // namespace floe
