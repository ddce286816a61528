// dtype names, sizes and the unknown-name error.
#include "floe/dtype.hpp"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "floe/error.hpp"

namespace floe {
namespace {

struct DTypeCase {
  DType dtype;
  const char* name;
  std::size_t size;
  bool is_float;
};

// Every dtype, with safetensors' name for it.
const std::vector<DTypeCase>& all_dtypes() {
  static const std::vector<DTypeCase> kCases = {
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
  };
  return kCases;
}

TEST(DType, EverySafetensorsNameRoundTrips) {
  for (const auto& c : all_dtypes()) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(dtype_name(c.dtype), c.name);
    EXPECT_EQ(parse_dtype(c.name), c.dtype);
    EXPECT_EQ(parse_dtype(dtype_name(c.dtype)), c.dtype);
  }
}

TEST(DType, SizesAndFloatness) {
  for (const auto& c : all_dtypes()) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(dtype_size(c.dtype), c.size);
    EXPECT_EQ(dtype_is_float(c.dtype), c.is_float);
  }
}

TEST(DType, NamesAreDistinct) {
  const auto& cases = all_dtypes();
  for (std::size_t i = 0; i < cases.size(); ++i) {
    for (std::size_t j = i + 1; j < cases.size(); ++j) {
      EXPECT_NE(dtype_name(cases[i].dtype), dtype_name(cases[j].dtype));
    }
  }
}

TEST(DType, UnknownNameErrorNamesItAndListsKnownNames) {
  for (const char* bad : {"F128", "f32", "", "float32", "F8_E4M3FN"}) {
    SCOPED_TRACE(bad);
    try {
      (void)parse_dtype(bad);
      ADD_FAILURE() << "parse_dtype accepted \"" << bad << "\"";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      const std::string message = e.what();
      EXPECT_NE(message.find("\"" + std::string(bad) + "\""), std::string::npos)
          << message;
      for (const auto& c : all_dtypes()) {
        EXPECT_NE(message.find(c.name), std::string::npos)
            << "the list of known names lacks " << c.name << ": " << message;
      }
    }
  }
}

TEST(DType, InvalidEnumValueIsAnInternalError) {
  try {
    (void)dtype_size(static_cast<DType>(200));
    ADD_FAILURE() << "dtype_size accepted an invalid enum value";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_NE(std::string(e.what()).find("200"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace floe
