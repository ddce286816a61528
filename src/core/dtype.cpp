#include "floe/dtype.hpp"

#include <array>
#include <string>

#include "floe/error.hpp"

namespace floe {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  std::size_t size;
  bool is_float;
};

constexpr std::array<DTypeInfo, 15> kDTypes = {{
    {DType::kBool, "BOOL", 1, false},
    {DType::kU8, "U8", 1, false},
    {DType::kI8, "I8", 1, false},
    {DType::kU16, "U16", 2, false},
    {DType::kI16, "I16", 2, false},
    {DType::kF16, "F16", 2, true},
    {DType::kBF16, "BF16", 2, true},
    {DType::kU32, "U32", 4, false},
    {DType::kI32, "I32", 4, false},
    {DType::kF32, "F32", 4, true},
    {DType::kU64, "U64", 8, false},
    {DType::kI64, "I64", 8, false},
    {DType::kF64, "F64", 8, true},
    {DType::kF8E4M3, "F8_E4M3", 1, true},
    {DType::kF8E5M2, "F8_E5M2", 1, true},
}};

const DTypeInfo& info(DType dtype) {
  // kDTypes is in the enum's order: the entry at the enum's value, checked,
  // before any search (dtype_size() runs several times per tensor of a
  // load; searching cost ~300 instructions per tensor at 20,000 tensors).
  const auto at = static_cast<std::size_t>(dtype);
  if (at < kDTypes.size() && kDTypes[at].dtype == dtype) return kDTypes[at];
  for (const auto& entry : kDTypes) {
    if (entry.dtype == dtype) return entry;
  }
  throw Error(ErrorCode::kInternal,
              "unknown dtype value " + std::to_string(static_cast<int>(dtype)));
}

}  // namespace

std::string_view dtype_name(DType dtype) { return info(dtype).name; }
std::size_t dtype_size(DType dtype) { return info(dtype).size; }
bool dtype_is_float(DType dtype) { return info(dtype).is_float; }

DType parse_dtype(std::string_view name) {
  // Length and first letter before the comparison (a memcmp call): the
  // manifest parser calls this per tensor.
  for (const auto& entry : kDTypes) {
    if (entry.name.size() == name.size() && entry.name[0] == name[0] && entry.name == name) {
      return entry.dtype;
    }
  }
  std::string known;
  for (const auto& entry : kDTypes) {
    known += known.empty() ? "" : ", ";
    known += entry.name;
  }
  throw Error(ErrorCode::kInvalidArgument,
              "unknown dtype \"" + std::string(name) + "\" (known: " + known + ")");
}

}  // namespace floe
