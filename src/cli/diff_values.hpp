// How `floe diff` compares element values: bitwise by default, or
// numerically within a tolerance for floating-point dtypes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "floe/dtype.hpp"

namespace floe::cli {

struct Tolerance {
  // False: elements are equal when their bytes are (so +0 != -0, and NaNs
  // are equal only with the same bits). True (--atol/--rtol given): float
  // elements a, b are equal when both are NaN, a == b, or
  // |a - b| <= atol + rtol * |b|; other dtypes still compare exactly.
  bool numeric = false;
  double atol = 0;
  double rtol = 0;
};

// What comparing two buffers found.
struct ValueDiffs {
  std::uint64_t count = 0;           // elements that differ
  std::vector<std::uint64_t> first;  // their positions, at most `limit`
  double max_abs = 0;                // largest |a - b| (numeric floats)
};

// Compares `count` elements of `dtype` at `a` and `b` (no alignment
// needed), adding to `diffs` and keeping at most `limit` positions.
void compare_values(DType dtype, const void* a, const void* b,
                    std::uint64_t count, const Tolerance& tolerance,
                    std::size_t limit, ValueDiffs& diffs);

// One element of `dtype` at `p` as text: "1.5", "-0", "nan", "42",
// "true"; F8 elements as hex bits.
std::string element_text(DType dtype, const void* p);

}  // namespace floe::cli
