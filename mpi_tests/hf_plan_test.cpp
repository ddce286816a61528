// The export plan, a pure function of the tensor list: file boundaries as
// huggingface_hub draws them, header bytes and padding, the index, names.
#include <gtest/gtest.h>

#include "engines/hf/shard_plan.hpp"
#include "test_util.hpp"

namespace floe::test {
namespace {

using hf::plan_export;

TensorSpec model(const std::string& name, DType dtype, Shape shape) {
  return TensorSpec{TensorGroup::kModel, name, "", dtype, std::move(shape)};
}

// The files' tensor names, e.g. {{"a", "b"}, {"c"}}.
std::vector<std::vector<std::string>> files_of(const hf::ExportPlan& plan) {
  std::vector<std::vector<std::string>> out;
  for (const auto& f : plan.files) {
    out.emplace_back();
    for (const auto i : f.tensors) out.back().push_back(plan.tensors[i].name);
  }
  return out;
}

HfExportOptions limit(std::uint64_t bytes) {
  HfExportOptions o;
  o.max_shard_size = bytes;
  return o;
}

TEST(HfPlan, OneFileHasNoIndexAndAnExactHeader) {
  const auto plan = plan_export(
      {model("w", DType::kF32, {2, 3}), model("b", DType::kF32, {3})},
      HfExportOptions{});
  ASSERT_EQ(plan.files.size(), 1u);
  EXPECT_EQ(plan.files[0].name, "model.safetensors");
  EXPECT_TRUE(plan.index_json.empty());
  const std::string& header = plan.files[0].header;
  EXPECT_EQ(header.size() % 8, 0u);
  const std::string json = header.substr(8);
  EXPECT_EQ(
      json.find_last_not_of(' ') + 1,
      std::string(
          R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],)"
          R"("data_offsets":[0,24]},"b":{"dtype":"F32","shape":[3],)"
          R"("data_offsets":[24,36]}})")
          .size());
  EXPECT_EQ(
      json.rfind(
          R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],)"
          R"("data_offsets":[0,24]},"b":{"dtype":"F32","shape":[3],)"
          R"("data_offsets":[24,36]}})",
          0),
      0u);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | static_cast<unsigned char>(header[i]);
  EXPECT_EQ(n, json.size());
  EXPECT_EQ(plan.files[0].size, header.size() + 36);
  EXPECT_EQ(plan.tensors[1].file_offset, header.size() + 24);
  EXPECT_EQ(plan.total_size, 36u);
}

TEST(HfPlan, PadsEveryHeaderToAMultipleOfEight) {
  for (std::size_t len = 1; len < 20; ++len) {
    const auto plan =
        plan_export({model(std::string(len, 'n'), DType::kU8, {1})}, {});
    EXPECT_EQ(plan.files[0].header.size() % 8, 0u) << len;
    EXPECT_LT(plan.files[0].header.find_last_not_of(' '),
              plan.files[0].header.size());
  }
}

TEST(HfPlan, SplitsGreedilyInStateOrder) {
  // 40-byte tensors, 100-byte limit: two per file.
  std::vector<TensorSpec> specs;
  for (const char* n : {"a", "b", "c", "d", "e"})
    specs.push_back(model(n, DType::kF32, {10}));
  EXPECT_EQ(
      files_of(plan_export(specs, limit(100))),
      (std::vector<std::vector<std::string>>{{"a", "b"}, {"c", "d"}, {"e"}}));
  // Exactly at the limit still fits.
  EXPECT_EQ(files_of(plan_export(specs, limit(80))).size(), 3u);
  EXPECT_EQ(files_of(plan_export(specs, limit(79))).size(), 5u);
  EXPECT_EQ(files_of(plan_export(specs, limit(200))).size(), 1u);
}

TEST(HfPlan, GivesAnOversizeTensorAFileOfItsOwnAsHuggingFaceHubDoes) {
  const std::vector<TensorSpec> specs = {
      model("a", DType::kF32, {10}), model("big", DType::kF32, {100}),
      model("c", DType::kF32, {10}), model("d", DType::kF32, {20})};
  // huggingface_hub appends an oversize tensor's file at once and keeps
  // filling the current one: a and c share a file after big's.
  EXPECT_EQ(
      files_of(plan_export(specs, limit(100))),
      (std::vector<std::vector<std::string>>{{"big"}, {"a", "c"}, {"d"}}));
  const auto plan = plan_export(specs, limit(100));
  EXPECT_EQ(plan.files[0].name, "model-00001-of-00003.safetensors");
  EXPECT_EQ(plan.files[2].name, "model-00003-of-00003.safetensors");
  EXPECT_EQ(plan.index_json,
            "{\n"
            "  \"metadata\": {\n"
            "    \"total_size\": 560\n"
            "  },\n"
            "  \"weight_map\": {\n"
            "    \"a\": \"model-00002-of-00003.safetensors\",\n"
            "    \"big\": \"model-00001-of-00003.safetensors\",\n"
            "    \"c\": \"model-00002-of-00003.safetensors\",\n"
            "    \"d\": \"model-00003-of-00003.safetensors\"\n"
            "  }\n"
            "}\n");
}

TEST(HfPlan, AlignsDataByElementSizeAndKeepsHeaderOrder) {
  const auto plan =
      plan_export({model("h", DType::kBF16, {3}), model("f", DType::kF32, {1}),
                   model("i", DType::kI64, {1}), model("z", DType::kF32, {0})},
                  {});
  const auto& t = plan.tensors;
  EXPECT_EQ(t[2].begin, 0u);   // I64 first
  EXPECT_EQ(t[1].begin, 8u);   // then F32
  EXPECT_EQ(t[3].begin, 12u);  // the empty F32 after it
  EXPECT_EQ(t[0].begin, 12u);  // BF16 last
  for (const auto& x : t)
    EXPECT_EQ(x.file_offset % dtype_size(x.dtype), 0u) << x.name;
  const std::string& h = plan.files[0].header;
  EXPECT_LT(h.find("\"h\""), h.find("\"f\""));
  EXPECT_LT(h.find("\"f\""), h.find("\"i\""));
}

TEST(HfPlan, CastsFloatsOnlyAndSkipsOptimizerState) {
  HfExportOptions o;
  o.dtype = DType::kBF16;
  const auto plan = plan_export(
      {model("w", DType::kF32, {4}), model("ids", DType::kI64, {2}),
       TensorSpec{TensorGroup::kOptimizer, "w", "exp_avg", DType::kF32, {4}},
       model("m", DType::kBool, {3})},
      o);
  ASSERT_EQ(plan.tensors.size(), 3u);
  EXPECT_EQ(plan.tensors[0].dtype, DType::kBF16);
  EXPECT_EQ(plan.tensors[0].nbytes, 8u);
  EXPECT_EQ(plan.tensors[1].dtype, DType::kI64);
  EXPECT_EQ(plan.tensors[2].dtype, DType::kBool);
  EXPECT_EQ(plan.total_size, 8u + 16u + 3u);
  EXPECT_TRUE(
      throws_error([&] { plan_export({model("q", DType::kF8E4M3, {4})}, o); },
                   ErrorCode::kInvalidArgument,
                   {"\"q\"", "cannot convert F8_E4M3 to BF16"}));
}

TEST(HfPlan, RenamesAndRefusesClashes) {
  HfExportOptions o;
  o.rename = [](const std::string& n) {
    return n.rfind("module.", 0) == 0 ? n.substr(7) : n;
  };
  const auto plan = plan_export(
      {model("module.w", DType::kF32, {1}), model("b", DType::kF32, {1})}, o);
  EXPECT_EQ(plan.tensors[0].name, "w");
  EXPECT_NE(plan.files[0].header.find("\"w\":{"), std::string::npos);
  EXPECT_TRUE(throws_error(
      [&] {
        plan_export(
            {model("module.w", DType::kF32, {1}), model("w", DType::kF32, {1})},
            o);
      },
      ErrorCode::kInvalidArgument,
      {"\"module.w\" and \"w\" both export as \"w\""}));
  EXPECT_TRUE(throws_error(
      [&] { plan_export({model("__metadata__", DType::kF32, {1})}, {}); },
      ErrorCode::kInvalidArgument, {"__metadata__"}));
  EXPECT_TRUE(throws_error(
      [&] { plan_export({model("bad\xff", DType::kF32, {1})}, {}); },
      ErrorCode::kInvalidArgument, {"not valid UTF-8"}));
  EXPECT_TRUE(throws_error([&] { plan_export({}, limit(0)); },
                           ErrorCode::kInvalidArgument,
                           {"max_shard_size must be > 0"}));
  HfExportOptions m;
  m.metadata = {{"format", "tf"}};
  EXPECT_TRUE(throws_error([&] { plan_export({}, m); },
                           ErrorCode::kInvalidArgument, {"\"format\""}));
  m.metadata = {{"step", "12"}};
  EXPECT_NE(plan_export({}, m).files[0].header.find(
                R"({"__metadata__":{"format":"pt","step":"12"}})"),
            std::string::npos);
}

TEST(HfPlan, AnEmptyModelIsOneFileOfMetadata) {
  const auto plan = plan_export({}, {});
  ASSERT_EQ(plan.files.size(), 1u);
  EXPECT_EQ(plan.files[0].name, "model.safetensors");
  EXPECT_EQ(plan.files[0].size, plan.files[0].header.size());
}

}  // namespace
}  // namespace floe::test
