// Element conversions between floating-point dtypes (F64, F32, F16, BF16),
// rounding to nearest, ties to even, as PyTorch's Tensor.to() does.
#pragma once

#include <cstdint>
#include <string>

#include "floe/dtype.hpp"

namespace floe::hf {

// True when cast_elements converts `from` to `to`: equal dtypes (a copy),
// or two of F64, F32, F16, BF16. F8 and non-float types are refused: a
// cast to F8 needs scaling that a plain export cannot choose.
bool can_cast(DType from, DType to);

// Throws Error(kInvalidArgument) naming `tensor` unless can_cast(from, to).
void check_cast(DType from, DType to, const std::string& tensor);

// Converts `count` elements at `src` (dtype `from`) into `dst` (dtype `to`).
// Exact widening; narrowing rounds to nearest even, overflows to infinity,
// keeps signs of zeros and infinities and turns NaNs into quiet NaNs.
// Buffers need no alignment and must not overlap. Requires can_cast.
void cast_elements(const void* src, DType from, void* dst, DType to,
                   std::uint64_t count);

}  // namespace floe::hf
