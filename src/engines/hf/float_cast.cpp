#include "engines/hf/float_cast.hpp"

#include <cstring>

#include "floe/error.hpp"

namespace floe::hf {
namespace {

bool castable(DType d) {
  return d == DType::kF64 || d == DType::kF32 || d == DType::kF16 ||
         d == DType::kBF16;
}

// IEEE-style binary formats narrower than double, by exponent and mantissa
// bit counts: F16 (5, 10), BF16 (8, 7), F32 (8, 23).
struct Format {
  int exponent_bits;
  int mantissa_bits;
};

constexpr Format kF16{5, 10};
constexpr Format kBF16{8, 7};

std::uint64_t double_bits(double x) {
  std::uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

double from_bits(std::uint64_t b) {
  double x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

// Rounds `x` to the nearest value of `f` (ties to even) and returns its bits.
std::uint32_t encode(double x, Format f) {
  const std::uint64_t b = double_bits(x);
  const int m = f.mantissa_bits;
  const std::uint32_t sign = static_cast<std::uint32_t>(b >> 63)
                             << (f.exponent_bits + m);
  const int exp = static_cast<int>((b >> 52) & 0x7ff);
  const std::uint64_t mantissa = b & ((std::uint64_t{1} << 52) - 1);
  const std::uint32_t max_exp = (1u << f.exponent_bits) - 1;
  if (exp == 0x7ff) {  // infinity, or NaN made quiet
    const std::uint32_t nan = mantissa ? (1u << (m - 1)) : 0;
    return sign | (max_exp << m) | nan;
  }
  if (exp == 0) return sign;  // double subnormals are far below every target
  const int bias = (1 << (f.exponent_bits - 1)) - 1;
  int target_exp = exp - 1023 + bias;
  const std::uint64_t significand = (std::uint64_t{1} << 52) | mantissa;
  int shift = 52 - m;
  if (target_exp < 1) {  // subnormal in the target: fewer mantissa bits
    shift += 1 - target_exp;
    target_exp = 0;
  }
  if (shift > 54) return sign;  // below half the smallest subnormal
  std::uint64_t rounded = significand >> shift;
  const std::uint64_t rest = significand & ((std::uint64_t{1} << shift) - 1);
  const std::uint64_t half = std::uint64_t{1} << (shift - 1);
  if (rest > half || (rest == half && (rounded & 1))) ++rounded;
  if (target_exp == 0) {
    // A subnormal that rounded up to 1 << m is the smallest normal: the
    // carry lands in the exponent field by itself.
    return sign | static_cast<std::uint32_t>(rounded);
  }
  if (rounded >> (m + 1)) {  // carried into a new binade
    rounded >>= 1;
    ++target_exp;
  }
  if (static_cast<std::uint32_t>(target_exp) >= max_exp) {
    return sign | (max_exp << m);  // overflow: infinity
  }
  return sign | (static_cast<std::uint32_t>(target_exp) << m) |
         static_cast<std::uint32_t>(rounded & ((std::uint64_t{1} << m) - 1));
}

// The exact value of `bits` in format `f`.
double decode(std::uint32_t bits, Format f) {
  const int m = f.mantissa_bits;
  const std::uint64_t sign =
      static_cast<std::uint64_t>((bits >> (f.exponent_bits + m)) & 1) << 63;
  const std::uint32_t max_exp = (1u << f.exponent_bits) - 1;
  const std::uint32_t exp = (bits >> m) & max_exp;
  std::uint64_t mantissa = bits & ((1u << m) - 1);
  const int bias = (1 << (f.exponent_bits - 1)) - 1;
  if (exp == max_exp) {
    return from_bits(
        sign | (std::uint64_t{0x7ff} << 52) |
        (mantissa ? (std::uint64_t{1} << 51) | (mantissa << (52 - m)) : 0));
  }
  int e = static_cast<int>(exp) - bias;
  if (exp == 0) {
    if (mantissa == 0) return from_bits(sign);
    e = 1 - bias;  // subnormal: normalize
    while (!(mantissa & (1u << m))) {
      mantissa <<= 1;
      --e;
    }
    mantissa &= (1u << m) - 1;
  }
  return from_bits(sign | (static_cast<std::uint64_t>(e + 1023) << 52) |
                   (mantissa << (52 - m)));
}

double load(const unsigned char* p, DType dtype) {
  switch (dtype) {
    case DType::kF64: {
      double v;
      std::memcpy(&v, p, 8);
      return v;
    }
    case DType::kF32: {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
    default: {
      std::uint16_t v;
      std::memcpy(&v, p, 2);
      return decode(v, dtype == DType::kF16 ? kF16 : kBF16);
    }
  }
}

void store(double x, DType dtype, unsigned char* p) {
  switch (dtype) {
    case DType::kF64:
      std::memcpy(p, &x, 8);
      return;
    case DType::kF32: {
      const float v = static_cast<float>(x);  // the FPU rounds to nearest even
      std::memcpy(p, &v, 4);
      return;
    }
    default: {
      const auto v = static_cast<std::uint16_t>(
          encode(x, dtype == DType::kF16 ? kF16 : kBF16));
      std::memcpy(p, &v, 2);
      return;
    }
  }
}

// The two conversions mixed-precision exports and loads do most, without
// the trip through double: F32 -> BF16 (the integer form of round to
// nearest even; NaNs made quiet) and BF16 -> F32 (a shift).
void f32_to_bf16(const unsigned char* s, unsigned char* d, std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) {
    std::uint32_t b;
    std::memcpy(&b, s + 4 * i, 4);
    std::uint16_t h;
    if ((b & 0x7fffffffu) > 0x7f800000u) {
      h = static_cast<std::uint16_t>((b >> 16) | 0x40);
    } else {
      h = static_cast<std::uint16_t>((b + 0x7fffu + ((b >> 16) & 1)) >> 16);
    }
    std::memcpy(d + 2 * i, &h, 2);
  }
}

void bf16_to_f32(const unsigned char* s, unsigned char* d, std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, s + 2 * i, 2);
    const std::uint32_t b = static_cast<std::uint32_t>(h) << 16;
    std::memcpy(d + 4 * i, &b, 4);
  }
}

}  // namespace

bool can_cast(DType from, DType to) {
  return from == to || (castable(from) && castable(to));
}

void check_cast(DType from, DType to, const std::string& tensor) {
  if (can_cast(from, to)) return;
  throw Error(ErrorCode::kInvalidArgument,
              "tensor \"" + tensor + "\": cannot convert " +
                  std::string(dtype_name(from)) + " to " +
                  std::string(dtype_name(to)) +
                  " (conversions are between F64, F32, F16 and BF16 only)");
}

void cast_elements(const void* src, DType from, void* dst, DType to,
                   std::uint64_t count) {
  const std::size_t in = dtype_size(from);
  const std::size_t out = dtype_size(to);
  if (from == to) {
    std::memcpy(dst, src, count * in);
    return;
  }
  if (!can_cast(from, to)) check_cast(from, to, "(unnamed)");
  const auto* s = static_cast<const unsigned char*>(src);
  auto* d = static_cast<unsigned char*>(dst);
  if (from == DType::kF32 && to == DType::kBF16)
    return f32_to_bf16(s, d, count);
  if (from == DType::kBF16 && to == DType::kF32)
    return bf16_to_f32(s, d, count);
  for (std::uint64_t i = 0; i < count; ++i)
    store(load(s + i * in, from), to, d + i * out);
}

}  // namespace floe::hf
