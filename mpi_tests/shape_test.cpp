// floe::Shape, the inline small vector of dimensions: the same values as a
// std::vector through every operation, on both sides of the inline limit,
// and moves that leave the source empty and own nothing twice (the ASan
// stage runs this too).
#include "floe/shape.hpp"

#include <cstdint>
#include <list>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace floe {
namespace {

using Dims = std::vector<std::uint64_t>;

Dims as_vector(const Shape& s) { return Dims(s.begin(), s.end()); }

// 0..n-1, times 7 (no two equal, none zero past the first).
Shape counted(std::size_t n) {
  Shape s;
  for (std::size_t i = 0; i < n; ++i) s.push_back(7 * i);
  return s;
}

// Sizes around the inline limit: empty, inline, full, spilled, grown twice.
const std::size_t kSizes[] = {0, 1, Shape::kInline - 1, Shape::kInline, Shape::kInline + 1,
                              3 * Shape::kInline + 2};

TEST(Shape, HoldsWhatAVectorHoldsOnBothSidesOfTheInlineLimit) {
  for (std::size_t n : kSizes) {
    const Shape s = counted(n);
    Dims expected;
    for (std::size_t i = 0; i < n; ++i) expected.push_back(7 * i);
    EXPECT_EQ(as_vector(s), expected) << n;
    EXPECT_EQ(s.size(), n);
    EXPECT_EQ(s.empty(), n == 0);
    EXPECT_GE(s.capacity(), n);
    if (n > 0) {
      EXPECT_EQ(s.front(), 0u);
      EXPECT_EQ(s.back(), 7 * (n - 1));
      EXPECT_EQ(s.at(n - 1), 7 * (n - 1));
    }
    EXPECT_THROW((void)s.at(n), std::out_of_range);
  }
}

TEST(Shape, ConstructsFromListsRangesAndCounts) {
  EXPECT_EQ(as_vector(Shape{3, 4, 5}), (Dims{3, 4, 5}));
  EXPECT_EQ(as_vector(Shape{1, 2, 3, 4, 5, 6}), (Dims{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(as_vector(Shape(6, 9)), Dims(6, 9));
  EXPECT_EQ(as_vector(Shape(2)), Dims(2, 0));
  const std::list<int> list = {8, 0, 2, 1, 5};  // not random access
  EXPECT_EQ(as_vector(Shape(list.begin(), list.end())), (Dims{8, 0, 2, 1, 5}));
  Shape s = {1, 2};
  s.assign(5, 3);
  EXPECT_EQ(as_vector(s), Dims(5, 3));
  s = {4};
  EXPECT_EQ(as_vector(s), Dims{4});
}

TEST(Shape, CopiesAndMovesKeepValuesAndLeaveTheSourceEmpty) {
  for (std::size_t n : kSizes) {
    for (std::size_t m : kSizes) {
      Shape source = counted(n);
      Shape copy(source);
      EXPECT_EQ(copy, source);
      copy.push_back(1);  // the copy owns its own storage
      EXPECT_EQ(source.size(), n);

      Shape target = counted(m);
      target = source;
      EXPECT_EQ(target, source) << n << " over " << m;

      Shape moved(std::move(source));
      EXPECT_EQ(as_vector(moved), as_vector(counted(n)));
      EXPECT_TRUE(source.empty());  // NOLINT(bugprone-use-after-move): specified here
      source.push_back(5);          // and usable again
      EXPECT_EQ(as_vector(source), Dims{5});

      Shape assigned = counted(m);
      assigned = std::move(moved);
      EXPECT_EQ(as_vector(assigned), as_vector(counted(n))) << n << " over " << m;
      Shape& same = assigned;
      assigned = std::move(same);  // a self-move keeps the value
      EXPECT_EQ(assigned.size(), n);
    }
  }
}

TEST(Shape, EditsAsAVectorDoes) {
  for (std::size_t n : kSizes) {
    Shape s = counted(n);
    Dims v(s.begin(), s.end());
    s.insert(s.begin(), 100);
    v.insert(v.begin(), 100);
    s.insert(s.end(), 200);
    v.insert(v.end(), 200);
    EXPECT_EQ(as_vector(s), v);
    s.erase(s.begin() + 1);
    v.erase(v.begin() + 1);
    EXPECT_EQ(as_vector(s), v);
    s.pop_back();
    v.pop_back();
    EXPECT_EQ(as_vector(s), v);
    s.resize(n + 6, 3);
    v.resize(n + 6, 3);
    EXPECT_EQ(as_vector(s), v);
    s.resize(1);
    v.resize(1);
    EXPECT_EQ(as_vector(s), v);
    s.clear();
    EXPECT_TRUE(s.empty());
  }
}

TEST(Shape, ComparesByValue) {
  EXPECT_EQ(Shape({1, 2, 3, 4, 5}), Shape({1, 2, 3, 4, 5}));
  EXPECT_NE(Shape({1, 2}), Shape({1, 2, 0}));
  EXPECT_NE(Shape({1, 2}), Shape({1, 3}));
  EXPECT_LT(Shape({1, 2}), Shape({1, 2, 0}));
  EXPECT_LT(Shape({1, 2, 3, 4, 5}), Shape({1, 2, 3, 4, 6}));
  EXPECT_EQ(Shape(), Shape({}));
}

TEST(Shape, RoundTripsThroughJsonAsAnArray) {
  for (std::size_t n : kSizes) {
    const Shape s = counted(n);
    const nlohmann::json j = s;
    ASSERT_TRUE(j.is_array());
    EXPECT_EQ(j.dump(), nlohmann::json(as_vector(s)).dump());
    EXPECT_EQ(j.get<Shape>(), s);
  }
}

}  // namespace
}  // namespace floe
