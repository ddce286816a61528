// Region arithmetic: element counts, intersections, flat ranges as boxes,
// construction and validation (the overlap copies: region_copy_test.cpp).
#include "floe/region.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/shape_text.hpp"
#include "floe/state.hpp"
#include "test_util.hpp"

namespace floe {
namespace {

using test::throws_error;

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

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

// A shard the state allocates itself: from 64 KiB on it starts on a 4 KiB
// boundary (loads copy into it out of the page cache, and with direct_io
// read into it with O_DIRECT; BENCHMARKS.md, "Shard memory alignment"),
// zeroed like a small one.
TEST(State, LargeOwnedShardsStartOnAPageBoundary) {
  State state;
  for (const std::uint64_t rows : {1u, 16u, 17u, 1024u, 4097u}) {
    TensorShard& shard = state.add_model("t" + std::to_string(rows), DType::kF32, {rows, 1024},
                                         Region::box(Box{{0, 0}, {rows, 1024}}));
    const auto address = reinterpret_cast<std::uintptr_t>(shard.data());
    if (shard.nbytes() >= (64u << 10)) EXPECT_EQ(address % 4096, 0u) << rows << " rows";
    EXPECT_EQ(address % alignof(std::max_align_t), 0u) << rows << " rows";
    const auto* bytes = shard.data();
    EXPECT_TRUE(std::all_of(bytes, bytes + shard.nbytes(),
                            [](std::byte b) { return b == std::byte{0}; }));
  }
}

}  // namespace
}  // namespace floe
