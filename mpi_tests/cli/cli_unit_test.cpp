// The pieces `floe diff` is built on: chunk plans that tile a tensor in
// row-major order within a byte budget, multi-index text, and the value
// comparison (bitwise, and numeric with tolerances, NaN and signed zeros);
// and `floe bench`'s timing: order-balanced ratios, failures on one rank.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <mpi.h>

#include "cli/bench/timing.hpp"
#include "cli/chunk_plan.hpp"
#include "cli/diff_values.hpp"
#include "floe/error.hpp"

namespace floe::cli {
namespace {

// Every element once, in row-major order, and no box over the budget
// unless it is a single element.
void expect_tiles(const Shape& shape, std::size_t element,
                  std::uint64_t budget) {
  std::string trace = "shape";
  for (const auto d : shape) trace += " " + std::to_string(d);
  SCOPED_TRACE(trace + ", budget " + std::to_string(budget));
  std::uint64_t next = 0;
  for (const Box& box : chunk_boxes(shape, element, budget)) {
    const std::uint64_t n = box.elements();
    EXPECT_TRUE(n == 1 || n * element <= budget) << n << " elements";
    for (std::uint64_t i = 0; i < n; ++i) {
      ASSERT_EQ(global_index(shape, box, i), next) << "element " << i;
      ++next;
    }
  }
  EXPECT_EQ(next, num_elements(shape));
}

TEST(BenchTiming, OrderBalancedCancelsAnAlternatingFactor) {
  using floe::bench::order_balanced;
  // A load at 0.9 of raw whose second reader is 1.5x faster: even
  // repetitions (raw first) show 0.9 * 1.5, odd ones 0.9 / 1.5.
  const double k = 1.5, truth = 0.9;
  EXPECT_NEAR(order_balanced({truth * k, truth / k, truth * k, truth / k}), truth, 1e-12);
  // The median of the pairs ignores one disturbed pair.
  EXPECT_NEAR(order_balanced({truth * k, truth / k, 5.0, 5.0, truth * k, truth / k}), truth,
              1e-12);
  // A last unpaired repetition is left out, unless it is the only one.
  EXPECT_NEAR(order_balanced({0.5, 2.0, 7.0}), 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(order_balanced({0.8}), 0.8);
  EXPECT_DOUBLE_EQ(order_balanced({}), 0.0);
}

TEST(BenchTiming, AFailureOnOneRankFailsEveryRank) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  // The last rank fails alone (as a raw read with nothing to read into
  // did): every rank must throw its message, none wait in the reduction.
  try {
    floe::bench::timed(MPI_COMM_WORLD, [&] {
      if (rank == size - 1) throw floe::Error(floe::ErrorCode::kIo, "boom on the last rank");
    });
    FAIL() << "timed() returned on rank " << rank;
  } catch (const floe::Error& e) {
    EXPECT_EQ(e.code(), floe::ErrorCode::kIo);
    EXPECT_NE(std::string(e.what()).find("boom on the last rank"), std::string::npos) << e.what();
    if (size > 1) {
      EXPECT_NE(std::string(e.what()).find("rank " + std::to_string(size - 1)), std::string::npos)
          << e.what();
    }
  }
  // And the ranks go on together: the next timed step is the slowest's.
  const double slowest = floe::bench::timed(MPI_COMM_WORLD, [] {});
  EXPECT_GE(slowest, 0.0);
}

TEST(ChunkPlan, TilesEveryShapeInRowMajorOrder) {
  for (const Shape& shape : std::vector<Shape>{{},
                                               {1},
                                               {9},
                                               {37, 16},
                                               {8, 12, 3},
                                               {0, 4},
                                               {5, 0, 2},
                                               {3, 1, 4, 5}}) {
    for (std::uint64_t budget : {1, 4, 7, 16, 64, 100, 1000, 1 << 20}) {
      expect_tiles(shape, 4, budget);
    }
  }
}

TEST(ChunkPlan, WholeRowsWhenTheyFit) {
  const auto boxes = chunk_boxes({37, 16}, 4, 64 * 10);  // 10 rows a chunk
  ASSERT_EQ(boxes.size(), 4u);
  EXPECT_EQ(boxes[3].offset, (Shape{30, 0}));
  EXPECT_EQ(boxes[3].extent, (Shape{7, 16}));
  EXPECT_EQ(chunk_boxes({37, 16}, 4, 1 << 20).size(), 1u);
  EXPECT_TRUE(chunk_boxes({0, 4}, 2, 16).empty());
}

TEST(ChunkPlan, IndexText) {
  EXPECT_EQ(index_text({37, 16}, 100), "[6,4]");
  EXPECT_EQ(index_text({8, 12, 3}, 287), "[7,11,2]");
  EXPECT_EQ(index_text({}, 0), "[]");
}

template <typename T>
ValueDiffs compare(DType dtype, const std::vector<T>& a,
                   const std::vector<T>& b, Tolerance tolerance = {}) {
  ValueDiffs diffs;
  compare_values(dtype, a.data(), b.data(), a.size(), tolerance, 10, diffs);
  return diffs;
}

TEST(CompareValues, BitwiseByDefault) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const auto d =
      compare<float>(DType::kF32, {1, 0.0f, nan, 2, 3}, {1, -0.0f, nan, 2, 4});
  EXPECT_EQ(d.count, 2u);  // -0 != +0 bitwise; the same NaN is equal
  EXPECT_EQ(d.first, (std::vector<std::uint64_t>{1, 4}));
}

TEST(CompareValues, FindsDifferencesPastFullBlocks) {
  std::vector<std::int64_t> a(5000, 7), b = a;
  b[4999] = 8;
  b[1024] = 9;
  const auto d = compare(DType::kI64, a, b, Tolerance{true, 10, 10});
  EXPECT_EQ(d.first, (std::vector<std::uint64_t>{1024, 4999}));  // ints exact
}

TEST(CompareValues, NumericWithinTolerance) {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> a = {1.0, 0.0, nan, inf, 100.0, 1.0, nan};
  const std::vector<double> b = {1.0005, -0.0, nan, inf, 101.0, -inf, 1.0};
  const auto d = compare(DType::kF64, a, b, Tolerance{true, 1e-3, 0});
  EXPECT_EQ(d.first, (std::vector<std::uint64_t>{4, 5, 6}));
  EXPECT_DOUBLE_EQ(d.max_abs, inf);
  const auto r = compare(DType::kF64, a, b, Tolerance{true, 1e-3, 0.01});
  EXPECT_EQ(r.first, (std::vector<std::uint64_t>{5, 6}));  // |1| <= 0.01*101
}

TEST(CompareValues, HalfPrecisionWidened) {
  // BF16 1.0 = 0x3f80, 1.0078125 = 0x3f81; F16 1.0 = 0x3c00, 1.0009765625 =
  // 0x3c01.
  EXPECT_EQ(compare<std::uint16_t>(DType::kBF16, {0x3f80}, {0x3f81}).count, 1u);
  EXPECT_EQ(compare<std::uint16_t>(DType::kBF16, {0x3f80}, {0x3f81},
                                   Tolerance{true, 0.01, 0})
                .count,
            0u);
  EXPECT_EQ(compare<std::uint16_t>(DType::kF16, {0x3c00}, {0x3c01},
                                   Tolerance{true, 0.0005, 0})
                .count,
            1u);
  EXPECT_EQ(compare<std::uint16_t>(DType::kF16, {0x3c00}, {0x3c01},
                                   Tolerance{true, 0.001, 0})
                .count,
            0u);
}

TEST(ElementText, ByDtype) {
  const float f = -1.5f;
  const std::uint16_t bf16 = 0x3fc0, f16 = 0x3e00;  // 1.5 in both
  const std::int32_t i = -42;
  const std::uint8_t yes = 1, f8 = 0x3c;
  EXPECT_EQ(element_text(DType::kF32, &f), "-1.5");
  EXPECT_EQ(element_text(DType::kBF16, &bf16), "1.5");
  EXPECT_EQ(element_text(DType::kF16, &f16), "1.5");
  EXPECT_EQ(element_text(DType::kI32, &i), "-42");
  EXPECT_EQ(element_text(DType::kBool, &yes), "true");
  EXPECT_EQ(element_text(DType::kF8E4M3, &f8), "0x3c");
}

}  // namespace
}  // namespace floe::cli
