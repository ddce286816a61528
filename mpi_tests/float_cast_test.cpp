// Float conversions on export and load, against independent references:
// the classic BF16 bit trick, the compiler's _Float16, and exhaustive round
// trips over every 16-bit pattern.
#include "engines/hf/float_cast.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace floe::test {
namespace {

using hf::cast_elements;

template <typename To, typename From>
To bits_of(From v) {
  static_assert(sizeof(To) == sizeof(From));
  To out;
  std::memcpy(&out, &v, sizeof out);
  return out;
}

// Round to nearest even by the well-known integer trick (NaN handled apart).
std::uint16_t reference_bf16(float f) {
  std::uint32_t b = bits_of<std::uint32_t>(f);
  b += 0x7fff + ((b >> 16) & 1);
  return static_cast<std::uint16_t>(b >> 16);
}

bool bf16_is_nan(std::uint16_t h) {
  return (h & 0x7f80) == 0x7f80 && (h & 0x7f);
}
bool f16_is_nan(std::uint16_t h) {
  return (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
}

std::vector<float> interesting_floats() {
  std::vector<float> out = {0.0f,
                            -0.0f,
                            1.0f,
                            -1.0f,
                            65504.0f,
                            65520.0f,
                            65519.99f,
                            std::numeric_limits<float>::max(),
                            std::numeric_limits<float>::min(),
                            std::numeric_limits<float>::denorm_min(),
                            5.9604645e-08f,
                            2.9802322e-08f,
                            2.9802326e-08f,
                            6.1035156e-05f,
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            bits_of<float>(0x3f808000u),
                            bits_of<float>(0x3f818000u),
                            bits_of<float>(0x7f7fffffu),
                            bits_of<float>(0x007fffffu)};
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i)
    out.push_back(bits_of<float>(static_cast<std::uint32_t>(rng())));
  return out;
}

TEST(FloatCast, F32ToBf16RoundsToNearestEven) {
  const auto in = interesting_floats();
  std::vector<std::uint16_t> out(in.size());
  cast_elements(in.data(), DType::kF32, out.data(), DType::kBF16, in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (std::isnan(in[i])) {
      ASSERT_TRUE(bf16_is_nan(out[i])) << i;
      continue;
    }
    ASSERT_EQ(out[i], reference_bf16(in[i]))
        << "input bits " << bits_of<std::uint32_t>(in[i]);
  }
}

TEST(FloatCast, F64ToBf16MatchesTheF32PathWhereNoDoubleRoundingArises) {
  // F32 -> BF16 has a fast integer path; F64 -> BF16 the generic encoder.
  // On values exact in F32 both must agree.
  const auto in = interesting_floats();
  std::vector<double> wide(in.begin(), in.end());
  std::vector<std::uint16_t> fast(in.size()), generic(in.size());
  cast_elements(in.data(), DType::kF32, fast.data(), DType::kBF16, in.size());
  cast_elements(wide.data(), DType::kF64, generic.data(), DType::kBF16,
                wide.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (std::isnan(in[i])) {
      ASSERT_TRUE(bf16_is_nan(generic[i])) << i;
      continue;
    }
    ASSERT_EQ(generic[i], fast[i])
        << "input bits " << bits_of<std::uint32_t>(in[i]);
  }
}

TEST(FloatCast, F64ToBf16RoundsOnceNotTwice) {
  // 1 + 2^-8 + 2^-30 lies just above a BF16 tie: rounding via F32 would
  // first land on the tie, then round to even (down).
  const double x = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30);
  std::uint16_t out = 0;
  cast_elements(&x, DType::kF64, &out, DType::kBF16, 1);
  EXPECT_EQ(out, 0x3f81);
}

TEST(FloatCast, WideningIsExactForEvery16BitPattern) {
  std::vector<std::uint16_t> all(65536);
  for (std::uint32_t i = 0; i < 65536; ++i)
    all[i] = static_cast<std::uint16_t>(i);
  for (const DType narrow : {DType::kBF16, DType::kF16}) {
    std::vector<float> wide(all.size());
    std::vector<double> wider(all.size());
    std::vector<std::uint16_t> back(all.size()), back2(all.size());
    cast_elements(all.data(), narrow, wide.data(), DType::kF32, all.size());
    cast_elements(all.data(), narrow, wider.data(), DType::kF64, all.size());
    cast_elements(wide.data(), DType::kF32, back.data(), narrow, all.size());
    cast_elements(wider.data(), DType::kF64, back2.data(), narrow, all.size());
    for (std::uint32_t i = 0; i < 65536; ++i) {
      const bool nan =
          narrow == DType::kBF16 ? bf16_is_nan(all[i]) : f16_is_nan(all[i]);
      if (nan) {
        ASSERT_TRUE(std::isnan(wide[i])) << i;
        continue;
      }
      ASSERT_EQ(back[i], all[i]) << dtype_name(narrow) << " pattern " << i;
      ASSERT_EQ(back2[i], all[i]) << dtype_name(narrow) << " pattern " << i;
      ASSERT_EQ(static_cast<double>(wide[i]), wider[i]) << i;
    }
  }
  // BF16 widening is a shift.
  const std::uint16_t one = 0x3f80;
  float f = 0;
  cast_elements(&one, DType::kBF16, &f, DType::kF32, 1);
  EXPECT_EQ(f, 1.0f);
}

#if defined(__FLT16_MAX__)
TEST(FloatCast, F16MatchesTheCompilersFloat16) {
  const auto in = interesting_floats();
  std::vector<std::uint16_t> out(in.size());
  cast_elements(in.data(), DType::kF32, out.data(), DType::kF16, in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto want = bits_of<std::uint16_t>(static_cast<_Float16>(in[i]));
    if (std::isnan(in[i])) {
      ASSERT_TRUE(f16_is_nan(out[i])) << i;
      continue;
    }
    ASSERT_EQ(out[i], want) << "input bits " << bits_of<std::uint32_t>(in[i]);
  }
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> spread(-30.0, 17.0);
  for (int i = 0; i < 100000; ++i) {
    const double x = std::ldexp(1.0 + (rng() % 4096) / 4096.0,
                                static_cast<int>(spread(rng)));
    std::uint16_t got = 0;
    cast_elements(&x, DType::kF64, &got, DType::kF16, 1);
    ASSERT_EQ(got, bits_of<std::uint16_t>(static_cast<_Float16>(x))) << x;
  }
  std::vector<std::uint16_t> all(65536), via(65536);
  for (std::uint32_t i = 0; i < 65536; ++i)
    all[i] = static_cast<std::uint16_t>(i);
  std::vector<float> wide(65536);
  cast_elements(all.data(), DType::kF16, wide.data(), DType::kF32, all.size());
  for (std::uint32_t i = 0; i < 65536; ++i) {
    if (f16_is_nan(all[i])) continue;
    ASSERT_EQ(wide[i], static_cast<float>(bits_of<_Float16>(all[i]))) << i;
  }
}
#endif

TEST(FloatCast, RefusesWhatIsNotFloatToFloat) {
  EXPECT_TRUE(hf::can_cast(DType::kI64, DType::kI64));
  EXPECT_TRUE(hf::can_cast(DType::kF16, DType::kBF16));
  EXPECT_FALSE(hf::can_cast(DType::kI32, DType::kF32));
  EXPECT_FALSE(hf::can_cast(DType::kF32, DType::kI32));
  EXPECT_FALSE(hf::can_cast(DType::kF32, DType::kF8E4M3));
  EXPECT_FALSE(hf::can_cast(DType::kF8E5M2, DType::kF32));
  EXPECT_TRUE(throws_error([] { hf::check_cast(DType::kU8, DType::kF16, "t"); },
                           ErrorCode::kInvalidArgument,
                           {"tensor \"t\"", "cannot convert U8 to F16"}));
}

}  // namespace
}  // namespace floe::test
