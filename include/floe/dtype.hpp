// Element types, named as safetensors names them, with their sizes.
#pragma once

#include <cstddef>
#include <string_view>

namespace floe {

enum class DType {
  kBool,
  kU8,
  kI8,
  kU16,
  kI16,
  kF16,
  kBF16,
  kU32,
  kI32,
  kF32,
  kU64,
  kI64,
  kF64,
  kF8E4M3,
  kF8E5M2,
};

// safetensors' name for `dtype`: "F32", "BF16", "F8_E4M3", ...
std::string_view dtype_name(DType dtype);

// The dtype whose safetensors name is `name`. Throws Error(kInvalidArgument)
// naming `name` and listing the known names when there is none.
DType parse_dtype(std::string_view name);

// Bytes per element.
std::size_t dtype_size(DType dtype);

// True for the floating-point types (F16, BF16, F32, F64, F8_*).
bool dtype_is_float(DType dtype);

}  // namespace floe
