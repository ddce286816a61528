// How Floe writes a shape in its messages and listings: "[3,5]", "[]" for a
// rank-0 tensor, "F32[3,5]" with its dtype. One text, so an error, `floe
// inspect` and `floe diff` name the same shape the same way. Internal: the
// installed headers do not promise this text.
#pragma once

#include <string>

#include "floe/dtype.hpp"
#include "floe/region.hpp"

namespace floe {

// "[3,5]"; "[]" for a rank-0 tensor.
inline std::string shape_text(const Shape& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    out += (i ? "," : "") + std::to_string(shape[i]);
  }
  return out + "]";
}

// "F32[3,5]": the dtype's name, then the shape.
inline std::string shape_text(DType dtype, const Shape& shape) {
  return std::string(dtype_name(dtype)) + shape_text(shape);
}

}  // namespace floe
