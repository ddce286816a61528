// The safetensors reader against hand-made files: every rule the reference
// reader enforces, broken one at a time, must give Error(kCorrupt) naming
// the file and the rule; files the reference accepts must open.
#include "engines/hf/safetensors_reader.hpp"

#include <cstring>

#include <gtest/gtest.h>

#include "hf_test_util.hpp"

namespace floe::test {
namespace {

using hf::SafetensorsFile;

const std::string kW =
    R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

struct BadFile {
  const char* name;
  std::string header;
  std::size_t data_bytes;
  std::optional<std::uint64_t> length;  // prefix, when not the header's size
  std::string rule;                     // a part of the message
  ErrorCode code = ErrorCode::kCorrupt;
};

std::vector<BadFile> bad_files() {
  const auto entry = [](const std::string& name, const std::string& body) {
    return "\"" + name + "\":{" + body + "}";
  };
  return {
      {"header_too_large", "{}", 0, 100'000'001,
       "exceeds the limit of 100000000"},
      {"header_length_huge", "{}", 0, ~0ull, "exceeds the limit"},
      {"header_past_end", "{" + kW + "}", 8, 1000,
       "runs past the end of the file"},
      {"not_utf8", "{\"\xff\":{}}", 0, {}, "not valid UTF-8"},
      {"overlong_utf8", "{\"\xc0\xaf\":{}}", 0, {}, "not valid UTF-8"},
      {"leading_space", " {" + kW + "}", 8, {}, "does not start with '{'"},
      {"array", "[]", 0, {}, "does not start with '{'"},
      {"empty_header", "", 0, {}, "does not start with '{'"},
      {"trailing_nul",
       "{" + kW + "}" + std::string(1, '\0'),
       8,
       {},
       "invalid JSON"},
      {"nul_then_garbage",
       "{" + kW + "}" + std::string(1, '\0') + "garbage",
       8,
       {},
       "invalid JSON: a NUL byte"},
      {"trailing_garbage", "{" + kW + "}x", 8, {}, "invalid JSON"},
      {"two_objects", "{" + kW + "}{}", 8, {}, "invalid JSON"},
      {"unterminated", "{" + kW, 8, {}, "invalid JSON"},
      {"duplicate_tensor",
       "{" + kW + "," + kW + "}",
       8,
       {},
       "key \"w\" appears twice"},
      {"duplicate_metadata",
       R"({"__metadata__":{"a":"1"},"__metadata__":{"a":"1"}})",
       0,
       {},
       "key \"__metadata__\" appears twice"},
      {"duplicate_field",
       "{" +
           entry(
               "w",
               R"("dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8])") +
           "}",
       8,
       {},
       "tensor \"w\": key \"dtype\" appears twice"},
      {"duplicate_metadata_key",
       R"({"__metadata__":{"a":"1","a":"2"}})",
       0,
       {},
       "__metadata__: key \"a\" appears twice"},
      {"unknown_dtype",
       "{" + entry("w", R"("dtype":"X9","shape":[2],"data_offsets":[0,8])") +
           "}",
       8,
       {},
       "tensor \"w\": unknown dtype \"X9\""},
      {"foreign_dtype",
       "{" + entry("w", R"("dtype":"C64","shape":[1],"data_offsets":[0,8])") +
           "}",
       8,
       {},
       "dtype C64 is not supported",
       ErrorCode::kUnsupported},
      {"dtype_number",
       "{" + entry("w", R"("dtype":4,"shape":[1],"data_offsets":[0,4])") + "}",
       4,
       {},
       "tensor \"w\": dtype is a number"},
      {"shape_negative",
       "{" + entry("w", R"("dtype":"F32","shape":[-2],"data_offsets":[0,8])") +
           "}",
       8,
       {},
       "shape holds the negative number -2"},
      {"shape_float",
       "{" + entry("w", R"("dtype":"F32","shape":[2.0],"data_offsets":[0,8])") +
           "}",
       8,
       {},
       "shape holds 2.0"},
      {"shape_string",
       "{" + entry("w", R"("dtype":"F32","shape":"2","data_offsets":[0,8])") +
           "}",
       8,
       {},
       "shape is a string, not an array"},
      {"shape_nested",
       "{" + entry("w", R"("dtype":"F32","shape":[[2]],"data_offsets":[0,8])") +
           "}",
       8,
       {},
       "shape holds an array"},
      {"offsets_three",
       "{" + entry("w", R"("dtype":"F32","shape":[2],"data_offsets":[0,8,8])") +
           "}",
       8,
       {},
       "data_offsets has more than 2 numbers"},
      {"offsets_one",
       "{" + entry("w", R"("dtype":"F32","shape":[2],"data_offsets":[8])") +
           "}",
       8,
       {},
       "data_offsets has 1 numbers, not 2"},
      {"missing_dtype",
       "{" + entry("w", R"("shape":[2],"data_offsets":[0,8])") + "}",
       8,
       {},
       "tensor \"w\": missing \"dtype\""},
      {"missing_shape",
       "{" + entry("w", R"("dtype":"F32","data_offsets":[0,8])") + "}",
       8,
       {},
       "missing \"shape\""},
      {"missing_offsets",
       "{" + entry("w", R"("dtype":"F32","shape":[2])") + "}",
       8,
       {},
       "missing \"data_offsets\""},
      {"entry_not_object",
       R"({"w":[1]})",
       0,
       {},
       "tensor \"w\": is an array, not an object"},
      {"metadata_not_object",
       R"({"__metadata__":"pt"})",
       0,
       {},
       "__metadata__ is a string"},
      {"metadata_value_int",
       R"({"__metadata__":{"a":1}})",
       0,
       {},
       "__metadata__: \"a\" is a number, not a string"},
      {"deep_ignored_field",
       "{" +
           entry("w", R"("dtype":"F32","shape":[2],"data_offsets":[0,8],"x":)" +
                          std::string(65, '[') + std::string(65, ']')) +
           "}",
       8,
       {},
       "nested deeper than 64 levels"},
      {"offsets_reversed",
       "{" + entry("w", R"("dtype":"F32","shape":[0],"data_offsets":[8,0])") +
           "}",
       0,
       {},
       "data_offsets [8, 0] end before they begin"},
      {"size_mismatch",
       "{" +
           entry("w", R"("dtype":"F32","shape":[2,2],"data_offsets":[0,12])") +
           "}",
       12,
       {},
       "tensor \"w\": data_offsets [0, 12] hold 12 bytes but F32[2,2] needs "
       "16"},
      {"shape_overflow",
       "{" +
           entry(
               "w",
               R"("dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0])") +
           "}",
       0,
       {},
       "overflows 64 bits"},
      {"overlap",
       "{" + entry("a", R"("dtype":"F32","shape":[2],"data_offsets":[0,8])") +
           "," +
           entry("b", R"("dtype":"F32","shape":[2],"data_offsets":[4,12])") +
           "}",
       12,
       {},
       "tensor \"b\": data_offsets [4, 12] overlap tensor \"a\" [0, 8]"},
      {"same_range",
       "{" + entry("a", R"("dtype":"F32","shape":[2],"data_offsets":[0,8])") +
           "," +
           entry("b", R"("dtype":"F32","shape":[2],"data_offsets":[0,8])") +
           "}",
       8,
       {},
       "overlap"},
      {"hole",
       "{" + entry("w", R"("dtype":"F32","shape":[2],"data_offsets":[4,12])") +
           "}",
       12,
       {},
       "data bytes [0, 4) belong to no tensor"},
      {"trailing_bytes",
       "{" + kW + "}",
       9,
       {},
       "1 trailing bytes after the last tensor's data"},
      {"truncated_data",
       "{" + kW + "}",
       4,
       {},
       "need 8 bytes of data but the file holds 4"},
      {"huge_offsets",
       "{" +
           entry(
               "w",
               R"("dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,18446744073709551615])") +
           "}",
       8,
       {},
       "hold 7 bytes but F32[2] needs 8"},
      {"huge_aligned_offsets",
       "{" +
           entry(
               "w",
               R"("dtype":"U8","shape":[7],"data_offsets":[18446744073709551608,18446744073709551615])") +
           "}",
       8,
       {},
       "belong to no tensor"},
  };
}

class MalformedFile : public ::testing::TestWithParam<BadFile> {};

TEST_P(MalformedFile, IsRefusedNamingFileAndRule) {
  const BadFile& bad = GetParam();
  TempDir dir;
  const auto path = dir / (std::string(bad.name) + ".safetensors");
  write_safetensors(path, bad.header, std::string(bad.data_bytes, '\0'),
                    bad.length);
  EXPECT_TRUE(throws_error([&] { SafetensorsFile file(path); }, bad.code,
                           {path.string() + ": ", bad.rule}));
  // The same bytes through the in-memory entry point (what a fuzzer calls).
  const std::string bytes = read_bytes(path);
  EXPECT_TRUE(throws_error([&] { hf::parse_safetensors(bytes, "mem"); },
                           bad.code, {"mem: ", bad.rule}));
}

INSTANTIATE_TEST_SUITE_P(Rules, MalformedFile, ::testing::ValuesIn(bad_files()),
                         [](const auto& info) {
                           return std::string(info.param.name);
                         });

TEST(SafetensorsReader, RefusesFilesShorterThanThePrefix) {
  TempDir dir;
  for (std::size_t n : {0, 1, 7}) {
    write_bytes(dir / "short.safetensors", std::string(n, '{'));
    EXPECT_TRUE(throws_error(
        [&] { SafetensorsFile f(dir / "short.safetensors"); },
        ErrorCode::kCorrupt,
        {"short.safetensors", "too small for the 8-byte header length"}));
  }
  EXPECT_TRUE(
      throws_error([&] { SafetensorsFile f(dir / "missing.safetensors"); },
                   ErrorCode::kNotFound, {"missing.safetensors"}));
  EXPECT_TRUE(throws_error([&] { SafetensorsFile f(dir.path()); },
                           ErrorCode::kCorrupt, {"not a regular file"}));
}

TEST(SafetensorsReader, AcceptsWhatTheReferenceAccepts) {
  TempDir dir;
  const auto path = dir / "ok.safetensors";
  // Trailing whitespace, an ignored field (nested), null metadata, a rank-0
  // tensor, zero-size tensors in the middle and at the end, escaped names.
  const std::string header =
      R"({"__metadata__":null,"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},)"
      R"("z":{"dtype":"F32","shape":[0,3],"data_offsets":[8,8]},)"
      R"("\u0077":{"dtype":"U8","shape":[2,3],"data_offsets":[8,14],"extra":{"a":[1,{"b":null}]}},)"
      R"("e":{"data_offsets":[14,14],"shape":[5,0],"dtype":"BF16"}}  )"
      "\t\n\r";
  write_safetensors(path, header, counting_bytes(14));
  const SafetensorsFile file(path);
  const auto& h = file.header();
  ASSERT_EQ(h.tensors.size(), 4u);
  EXPECT_EQ(h.tensors[0].name, "s");
  EXPECT_EQ(h.tensors[2].name, "w");
  EXPECT_EQ(h.tensors[2].dtype, DType::kU8);
  EXPECT_EQ(h.tensors[2].shape, (Shape{2, 3}));
  EXPECT_EQ(h.tensors[2].file_offset, 8 + header.size() + 8);
  EXPECT_TRUE(h.metadata.empty());
  unsigned char row[3] = {};
  file.read_box(h.tensors[2], Box{{1, 0}, {1, 3}}, row, DType::kU8);
  EXPECT_EQ(row[0], 11);
  EXPECT_EQ(row[2], 13);

  write_safetensors(path, "{}", "");
  EXPECT_TRUE(SafetensorsFile(path).header().tensors.empty());
  write_safetensors(path,
                    R"({"__metadata__":{"format":"pt","b":"x"}})"
                    "   ",
                    "");
  const auto meta = SafetensorsFile(path).header().metadata;
  ASSERT_EQ(meta.size(), 2u);
  EXPECT_EQ(meta[0], (std::pair<std::string, std::string>{"format", "pt"}));
}

TEST(SafetensorsReader, ReadsBoxesRowByRowAndConverts) {
  TempDir dir;
  const auto path = dir / "m.safetensors";
  // U16 [300, 70]: rows of 140 bytes; boxes that skip columns force
  // coalesced reads with gaps.
  const std::string data = counting_bytes(300 * 70 * 2);
  write_safetensors(
      path,
      R"({"m":{"dtype":"U16","shape":[300,70],"data_offsets":[0,42000]}})",
      data);
  const SafetensorsFile file(path);
  const auto& t = file.header().tensors[0];
  const Box box{{5, 3}, {200, 4}};
  std::vector<std::uint16_t> out(box.elements());
  file.read_box(t, box, out.data(), DType::kU16);
  for (std::uint64_t r = 0; r < 200; ++r) {
    for (std::uint64_t c = 0; c < 4; ++c) {
      std::uint16_t want;
      std::memcpy(&want, data.data() + ((5 + r) * 70 + 3 + c) * 2, 2);
      ASSERT_EQ(out[r * 4 + c], want) << "row " << r << " col " << c;
    }
  }
  EXPECT_TRUE(throws_error(
      [&] {
        file.read_box(t, Box{{299, 0}, {2, 70}}, out.data(), DType::kU16);
      },
      ErrorCode::kInvalidArgument, {"not inside the tensor"}));

  // A tensor over the 8 MiB read chunk, converted BF16 -> F32 on the way.
  const std::uint64_t n = (9u << 20) / 2;
  std::string big(n * 2, '\0');
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint16_t bf16 =
        static_cast<std::uint16_t>(0x3f80 + (i % 64));  // 1.0 + k/128
    std::memcpy(&big[i * 2], &bf16, 2);
  }
  write_safetensors(path,
                    R"({"b":{"dtype":"BF16","shape":[)" + std::to_string(n) +
                        R"(],"data_offsets":[0,)" + std::to_string(n * 2) +
                        "]}}",
                    big);
  const SafetensorsFile bf(path);
  std::vector<float> wide(n);
  bf.read_box(bf.header().tensors[0], full_box({n}), wide.data(), DType::kF32);
  for (std::uint64_t i = 0; i < n; i += 4099) {
    ASSERT_EQ(wide[i], 1.0f + static_cast<float>(i % 64) / 128.0f) << i;
  }
}

}  // namespace
}  // namespace floe::test
