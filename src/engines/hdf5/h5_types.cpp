#include "engines/hdf5/h5_types.hpp"

#include <cstdint>
#include <type_traits>
#include <vector>

namespace floe::h5 {
namespace {

Type copy_of(hid_t predefined) {
  return Type(check_id(H5Tcopy(predefined), "H5Tcopy"));
}

// IEEE binary16, built the way h5py builds it (h5py reads it as float16).
Type half_float() {
  Type type = copy_of(H5T_IEEE_F32LE);
  check(H5Tset_fields(type.get(), 15, 10, 5, 0, 10), "H5Tset_fields (F16)");
  check(H5Tset_size(type.get(), 2), "H5Tset_size (F16)");
  check(H5Tset_ebias(type.get(), 15), "H5Tset_ebias (F16)");
  return type;
}

// h5py's bool: an enum over a signed byte with FALSE = 0 and TRUE = 1.
Type bool_enum() {
  Type type(check_id(H5Tenum_create(H5T_STD_I8LE), "H5Tenum_create (BOOL)"));
  const std::int8_t no = 0, yes = 1;
  check(H5Tenum_insert(type.get(), "FALSE", &no), "H5Tenum_insert (BOOL)");
  check(H5Tenum_insert(type.get(), "TRUE", &yes), "H5Tenum_insert (BOOL)");
  return type;
}

void write_attribute(hid_t object, const std::string& name, hid_t type,
                     const void* value, const std::string& where) {
  const std::string what = "attribute \"" + name + "\" of " + where;
  Space space(check_id(H5Screate(H5S_SCALAR), "H5Screate (" + what + ")"));
  Attribute attribute(
      check_id(H5Acreate2(object, name.c_str(), type, space.get(), H5P_DEFAULT,
                          H5P_DEFAULT),
               "H5Acreate2 (" + what + ")"));
  check(H5Awrite(attribute.get(), type, value), "H5Awrite (" + what + ")");
  attribute.close("H5Aclose (" + what + ")");
}

}  // namespace

Type stored_type(DType dtype) {
  switch (dtype) {
    case DType::kBool:
      return bool_enum();
    case DType::kU8:
      return copy_of(H5T_STD_U8LE);
    case DType::kI8:
      return copy_of(H5T_STD_I8LE);
    case DType::kU16:
      return copy_of(H5T_STD_U16LE);
    case DType::kI16:
      return copy_of(H5T_STD_I16LE);
    case DType::kF16:
      return half_float();
    case DType::kBF16:
      return copy_of(H5T_STD_U16LE);
    case DType::kU32:
      return copy_of(H5T_STD_U32LE);
    case DType::kI32:
      return copy_of(H5T_STD_I32LE);
    case DType::kF32:
      return copy_of(H5T_IEEE_F32LE);
    case DType::kU64:
      return copy_of(H5T_STD_U64LE);
    case DType::kI64:
      return copy_of(H5T_STD_I64LE);
    case DType::kF64:
      return copy_of(H5T_IEEE_F64LE);
    case DType::kF8E4M3:
      return copy_of(H5T_STD_U8LE);
    case DType::kF8E5M2:
      return copy_of(H5T_STD_U8LE);
  }
  throw Error(
      ErrorCode::kInternal,
      "no HDF5 type for dtype " + std::to_string(static_cast<int>(dtype)));
}

Type utf8_string(std::size_t size) {
  Type type = copy_of(H5T_C_S1);
  check(H5Tset_size(type.get(), size == 0 ? 1 : size), "H5Tset_size (string)");
  check(H5Tset_cset(type.get(), H5T_CSET_UTF8), "H5Tset_cset (string)");
  check(H5Tset_strpad(type.get(), H5T_STR_NULLPAD), "H5Tset_strpad (string)");
  return type;
}

void write_string_attribute(hid_t object, const std::string& name,
                            const std::string& value,
                            const std::string& where) {
  const Type type = utf8_string(value.size());
  const char empty = '\0';
  write_attribute(object, name, type.get(),
                  value.empty() ? &empty : value.data(), where);
}

std::string read_string_attribute(hid_t object, const std::string& name,
                                  const std::string& where, ErrorCode code) {
  const std::string what = "attribute \"" + name + "\" of " + where;
  if (!check_tri(H5Aexists(object, name.c_str()), "H5Aexists (" + what + ")",
                 code)) {
    throw Error(code, where + " has no attribute \"" + name + "\"");
  }
  Attribute attribute(check_id(H5Aopen(object, name.c_str(), H5P_DEFAULT),
                               "H5Aopen (" + what + ")", code));
  Type type(check_id(H5Aget_type(attribute.get()), "H5Aget_type (" + what + ")",
                     code));
  Space space(check_id(H5Aget_space(attribute.get()),
                       "H5Aget_space (" + what + ")", code));
  const bool fixed_string =
      H5Tget_class(type.get()) == H5T_STRING &&
      !check_tri(H5Tis_variable_str(type.get()), "H5Tis_variable_str", code);
  if (!fixed_string || H5Sget_simple_extent_npoints(space.get()) != 1) {
    throw Error(code, what + " is not a fixed-length string");
  }
  std::vector<char> text(H5Tget_size(type.get()) + 1, '\0');
  check(H5Aread(attribute.get(), type.get(), text.data()),
        "H5Aread (" + what + ")", code);
  std::string out(text.data(), text.size() - 1);
  while (!out.empty() && out.back() == '\0') out.pop_back();
  return out;
}

void write_scalar_attribute(hid_t object, const std::string& name,
                            const Scalar& value, const std::string& where) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>) {
          const std::int8_t byte = v ? 1 : 0;
          write_attribute(object, name, bool_enum().get(), &byte, where);
        } else if constexpr (std::is_same_v<T, std::int64_t>) {
          write_attribute(object, name, H5T_STD_I64LE, &v, where);
        } else if constexpr (std::is_same_v<T, double>) {
          write_attribute(object, name, H5T_IEEE_F64LE, &v, where);
        } else {
          write_string_attribute(object, name, v, where);
        }
      },
      value);
}

}  // namespace floe::h5
