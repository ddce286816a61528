#include "cli/diff_values.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "engines/hf/float_cast.hpp"

namespace floe::cli {
namespace {

// Elements handled per step: memcmp skips equal blocks quickly.
constexpr std::uint64_t kBlock = 1024;

bool numeric_dtype(DType d) {
  return d == DType::kF64 || d == DType::kF32 || d == DType::kF16 ||
         d == DType::kBF16;
}

// `n` (<= kBlock) elements of a float dtype at `src` as doubles.
void to_double(DType dtype, const unsigned char* src, std::uint64_t n,
               double* out) {
  if (dtype == DType::kF64) {
    std::memcpy(out, src, n * sizeof(double));
    return;
  }
  float values[kBlock];
  if (dtype == DType::kF32) {
    std::memcpy(values, src, n * sizeof(float));
  } else {  // F16, BF16: widening to F32 is exact
    hf::cast_elements(src, dtype, values, DType::kF32, n);
  }
  for (std::uint64_t i = 0; i < n; ++i) out[i] = values[i];
}

void note(ValueDiffs& diffs, std::uint64_t at, std::size_t limit) {
  ++diffs.count;
  if (diffs.first.size() < limit) diffs.first.push_back(at);
}

}  // namespace

void compare_values(DType dtype, const void* a, const void* b,
                    std::uint64_t count, const Tolerance& tolerance,
                    std::size_t limit, ValueDiffs& diffs) {
  const std::size_t size = dtype_size(dtype);
  const bool numeric = tolerance.numeric && numeric_dtype(dtype);
  const auto* pa = static_cast<const unsigned char*>(a);
  const auto* pb = static_cast<const unsigned char*>(b);
  double da[kBlock], db[kBlock];
  for (std::uint64_t at = 0; at < count; at += kBlock) {
    const std::uint64_t n = std::min(kBlock, count - at);
    const unsigned char* xa = pa + at * size;
    const unsigned char* xb = pb + at * size;
    if (std::memcmp(xa, xb, n * size) == 0) continue;
    if (!numeric) {
      for (std::uint64_t i = 0; i < n; ++i) {
        if (std::memcmp(xa + i * size, xb + i * size, size) != 0) {
          note(diffs, at + i, limit);
        }
      }
      continue;
    }
    to_double(dtype, xa, n, da);
    to_double(dtype, xb, n, db);
    for (std::uint64_t i = 0; i < n; ++i) {
      const double x = da[i], y = db[i];
      if ((std::isnan(x) && std::isnan(y)) || x == y) continue;
      // NaN against a number, or an infinity against anything else, always
      // differs (the tolerance test would say otherwise: 0 * inf is NaN).
      const double d = std::fabs(x - y);
      if (!std::isfinite(x) || !std::isfinite(y) ||
          d > tolerance.atol + tolerance.rtol * std::fabs(y)) {
        note(diffs, at + i, limit);
        if (!std::isnan(d)) diffs.max_abs = std::max(diffs.max_abs, d);
      }
    }
  }
}

std::string element_text(DType dtype, const void* p) {
  char text[64];
  const auto* bytes = static_cast<const unsigned char*>(p);
  auto as = [&](auto value) {
    std::memcpy(&value, bytes, sizeof value);
    return value;
  };
  switch (dtype) {
    case DType::kBool:
      return bytes[0] ? "true" : "false";
    case DType::kU8:
      return std::to_string(as(std::uint8_t{}));
    case DType::kI8:
      return std::to_string(as(std::int8_t{}));
    case DType::kU16:
      return std::to_string(as(std::uint16_t{}));
    case DType::kI16:
      return std::to_string(as(std::int16_t{}));
    case DType::kU32:
      return std::to_string(as(std::uint32_t{}));
    case DType::kI32:
      return std::to_string(as(std::int32_t{}));
    case DType::kU64:
      return std::to_string(as(std::uint64_t{}));
    case DType::kI64:
      return std::to_string(as(std::int64_t{}));
    case DType::kF64:
      std::snprintf(text, sizeof text, "%.17g", as(double{}));
      return text;
    case DType::kF32:
      std::snprintf(text, sizeof text, "%.9g",
                    static_cast<double>(as(float{})));
      return text;
    case DType::kF16:
    case DType::kBF16: {
      float value = 0;
      hf::cast_elements(bytes, dtype, &value, DType::kF32, 1);
      std::snprintf(text, sizeof text, "%.6g", static_cast<double>(value));
      return text;
    }
    case DType::kF8E4M3:
    case DType::kF8E5M2:
      std::snprintf(text, sizeof text, "0x%02x", bytes[0]);
      return text;
  }
  return "?";
}

}  // namespace floe::cli
