// The overlap copies resharded loads are built on (copy_overlap,
// copy_region_overlap), checked against an element-by-element reference on
// random boxes and regions, and the coalescing of full rows.
#include "floe/region.hpp"

#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/shape_text.hpp"
#include "test_util.hpp"

namespace floe {
namespace {

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

// copy_overlap between two random boxes of `shape`, against reference_copy:
// the same count and the same destination bytes.
::testing::AssertionResult copy_matches_reference(std::mt19937_64& rng, const Shape& shape) {
  const Box src_box = random_box(rng, shape);
  const Box dst_box = random_box(rng, shape);
  const std::size_t size = random_element_size(rng);
  const Buffer src = make_buffer(shape, Region::box(src_box), size, true);
  Buffer dst = make_buffer(shape, Region::box(dst_box), size, false);
  Buffer want = dst;
  const std::uint64_t want_count = reference_copy(src, want, size);
  const std::uint64_t count =
      copy_overlap(src_box, src.bytes.data(), dst_box, dst.bytes.data(), size);
  if (count == want_count && dst.bytes == want.bytes) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << (count != want_count ? "count " + std::to_string(count) + ", want " +
                                       std::to_string(want_count)
                                 : std::string("bytes differ"))
         << "; shape " << shape_text(shape) << " src " << Region::box(src_box).to_string()
         << " dst " << Region::box(dst_box).to_string() << " element size " << size;
}

TEST(Region, CopyOverlapMatchesReferenceOnRandomBoxes) {
  std::mt19937_64 rng(20240611);
  for (int trial = 0; trial < 4000; ++trial) {
    const Shape shape = random_shape(rng);
    ASSERT_TRUE(copy_matches_reference(rng, shape)) << "trial " << trial;
  }
}

TEST(Region, CopyOverlapMatchesReferenceAboveEightDimensions) {
  // walk_overlap keeps its per-dimension state on the stack up to 8
  // dimensions and on the heap above: boxes of 9 to 11 dimensions (extents
  // of 1 to 3, a few thousand elements) take the heap path.
  std::mt19937_64 rng(20261130);
  for (int trial = 0; trial < 200; ++trial) {
    Shape shape(9 + rng() % 3);
    for (auto& d : shape) d = 1 + rng() % 3;
    ASSERT_TRUE(copy_matches_reference(rng, shape)) << "trial " << trial;
  }
}

TEST(Region, CopyOverlapOfBoxesOfDifferentRankIsAnError) {
  const Box two{{0, 0}, {2, 2}};
  const Box three{{0, 0, 0}, {2, 2, 2}};
  unsigned char src[8] = {}, dst[8] = {};
  EXPECT_TRUE(test::throws_error([&] { (void)copy_overlap(two, src, three, dst, 1); },
                                 ErrorCode::kInvalidArgument, {"different rank"}));
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
