// Hugging Face weight directories: which file is read, and every way an
// index can be wrong (paths leaving the directory, tensors in the wrong
// file, a wrong total) refused with Error(kCorrupt) naming the index.
#include "engines/hf/safetensors_index.hpp"

#include <gtest/gtest.h>

#include "hf_test_util.hpp"

namespace floe::test {
namespace {

using hf::HfDirectory;

void write_shard(const std::filesystem::path& path, const std::string& name,
                 unsigned start = 0) {
  write_safetensors(path,
                    R"({"__metadata__":{"format":"pt"},")" + name +
                        R"(":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
                    counting_bytes(4, start));
}

std::string index_text(const std::string& weight_map,
                       const std::string& metadata = R"({"total_size":8})") {
  return R"({"metadata":)" + metadata + R"(,"weight_map":)" + weight_map + "}";
}

class IndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_shard(dir_ / "a.safetensors", "x", 0);
    write_shard(dir_ / "b.safetensors", "y", 100);
  }
  void write_index(const std::string& text) {
    write_bytes(dir_ / hf::kIndexFileName, text);
  }
  // Opening the directory fails with kCorrupt naming the index and `rule`.
  ::testing::AssertionResult refused(const std::string& rule) {
    return throws_error([&] { HfDirectory d(dir_.path()); },
                        ErrorCode::kCorrupt,
                        {std::string(hf::kIndexFileName) + ": ", rule});
  }

  TempDir dir_;
};

TEST_F(IndexTest, OpensAValidIndex) {
  write_index(index_text(R"({"x":"a.safetensors","y":"b.safetensors"})"));
  const HfDirectory d(dir_.path());
  EXPECT_EQ(d.files().size(), 2u);
  EXPECT_EQ(d.total_size(), 8u);
  ASSERT_NE(d.find("y"), nullptr);
  unsigned char out[4];
  const auto* y = d.find("y");
  d.files()[y->file]->read_box(*y->tensor, full_box({4}), out, DType::kU8);
  EXPECT_EQ(out[3], 103);
  // Without metadata (or without total_size) there is nothing to check.
  write_index(
      R"({"weight_map":{"x":"a.safetensors","y":"b.safetensors"},"extra":[1]})");
  EXPECT_EQ(HfDirectory(dir_.path()).tensors().size(), 2u);
  // The index file itself may be named.
  EXPECT_EQ(HfDirectory(dir_ / hf::kIndexFileName).tensors().size(), 2u);
}

TEST_F(IndexTest, PrefersModelSafetensorsAsTransformersDoes) {
  write_index("not json");
  write_shard(dir_ / hf::kSingleFileName, "only");
  const HfDirectory d(dir_.path());
  EXPECT_TRUE(d.index_path().empty());
  EXPECT_NE(d.find("only"), nullptr);
  EXPECT_TRUE(throws_error([&] { HfDirectory e(dir_ / "missing"); },
                           ErrorCode::kNotFound, {"missing"}));
  TempDir empty;
  EXPECT_TRUE(throws_error(
      [&] { HfDirectory e(empty.path()); }, ErrorCode::kNotFound,
      {"neither model.safetensors nor model.safetensors.index.json"}));
}

TEST_F(IndexTest, RefusesPathsLeavingTheDirectory) {
  write_index(index_text(R"({"x":"../a.safetensors","y":"b.safetensors"})"));
  EXPECT_TRUE(refused("leaves the checkpoint directory"));
  write_index(index_text(R"({"x":"/etc/passwd","y":"b.safetensors"})"));
  EXPECT_TRUE(refused("is absolute"));
  write_index(index_text(R"({"x":"","y":"b.safetensors"})"));
  EXPECT_TRUE(refused("is empty"));
  write_index(index_text(R"({"x":"./a.safetensors","y":"b.safetensors"})"));
  EXPECT_TRUE(refused("'.' component"));
}

TEST_F(IndexTest, RefusesSymlinksLeadingOutUnlessAllowed) {
  TempDir outside;
  write_shard(outside / "far.safetensors", "x");
  std::filesystem::create_symlink(outside / "far.safetensors",
                                  dir_ / "link.safetensors");
  write_index(index_text(R"({"x":"link.safetensors","y":"b.safetensors"})"));
  EXPECT_TRUE(refused("resolves outside"));
  EXPECT_EQ(HfDirectory(dir_.path(), /*follow_symlinks=*/true).tensors().size(),
            2u);
  // A link that stays inside is fine either way.
  std::filesystem::create_symlink("a.safetensors", dir_ / "inside.safetensors");
  write_index(index_text(R"({"x":"inside.safetensors","y":"b.safetensors"})"));
  EXPECT_EQ(HfDirectory(dir_.path()).tensors().size(), 2u);
}

TEST_F(IndexTest, RefusesTensorsInTheWrongFile) {
  write_index(index_text(R"({"x":"a.safetensors","y":"a.safetensors"})"));
  EXPECT_TRUE(refused(
      "tensor \"y\" is mapped to a.safetensors, which does not hold it"));
  write_index(index_text(R"({"x":"a.safetensors"})", R"({"total_size":4})"));
  EXPECT_EQ(HfDirectory(dir_.path()).tensors().size(), 1u);  // b is not named
  write_shard(dir_ / "c.safetensors", "x");
  write_index(index_text(R"({"x":"a.safetensors","y":"c.safetensors"})"));
  EXPECT_TRUE(
      refused("tensor \"x\" is in both a.safetensors and c.safetensors"));
  write_shard(dir_ / "c.safetensors", "z");
  write_index(index_text(
      R"({"x":"a.safetensors","y":"b.safetensors","q":"c.safetensors"})",
      R"({"total_size":12})"));
  EXPECT_TRUE(refused(
      "c.safetensors holds tensor \"z\", which the index does not list"));
  write_index(index_text(R"({"x":"a.safetensors","y":"missing.safetensors"})"));
  EXPECT_TRUE(throws_error([&] { HfDirectory d(dir_.path()); },
                           ErrorCode::kNotFound,
                           {std::string(hf::kIndexFileName) +
                                ": weight_map[\"y\"] names \"missing.safetensors\", "
                                "which does not exist in ",
                            dir_.path().string()}));
}

// A shard name with a typo (or one never copied): the error names the index
// and the entry that points at nothing, and how many more entries share it,
// not only the file that cannot be opened.
TEST_F(IndexTest, NamesTheIndexEntryOfAMissingShard) {
  write_shard(dir_ / "c.safetensors", "z");
  write_index(index_text(
      R"({"x":"a.safetensors","y":"b.safetenosrs","z":"c.safetensors"})",
      R"({"total_size":12})"));
  EXPECT_TRUE(throws_error([&] { HfDirectory d(dir_.path()); },
                           ErrorCode::kNotFound,
                           {std::string(hf::kIndexFileName) +
                            ": weight_map[\"y\"] names \"b.safetenosrs\", which "
                            "does not exist in "}));
  write_index(index_text(
      R"({"p":"shard-2.safetensors","q":"shard-2.safetensors","x":"a.safetensors"})"));
  EXPECT_TRUE(throws_error([&] { HfDirectory d(dir_.path()); },
                           ErrorCode::kNotFound,
                           {": weight_map[\"p\"] names \"shard-2.safetensors\" "
                            "(as does 1 more tensor), which does not exist"}));
}

TEST_F(IndexTest, ChecksTheTotalSize) {
  write_index(index_text(R"({"x":"a.safetensors","y":"b.safetensors"})",
                         R"({"total_size":9})"));
  EXPECT_TRUE(
      refused("metadata.total_size is 9 but the tensors it maps hold 8 bytes"));
  write_index(index_text(R"({"x":"a.safetensors","y":"b.safetensors"})",
                         R"({"total_size":8.0})"));
  EXPECT_TRUE(refused("metadata.total_size is not an integer"));
  write_index(index_text(R"({"x":"a.safetensors","y":"b.safetensors"})",
                         R"({"total_size":-8})"));
  EXPECT_TRUE(refused("metadata.total_size is not an integer"));
  write_index(index_text(R"({"x":"a.safetensors","y":"b.safetensors"})", "[]"));
  EXPECT_TRUE(refused("\"metadata\" is not an object"));
}

TEST_F(IndexTest, RefusesMalformedJson) {
  write_index(R"({"weight_map":{"x":"a.safetensors","x":"b.safetensors"}})");
  EXPECT_TRUE(refused("key \"x\" appears twice"));
  write_index(R"({"weight_map":{"x":"a.safetensors"},"weight_map":{}})");
  EXPECT_TRUE(refused("key \"weight_map\" appears twice"));
  write_index(R"({"metadata":{}})");
  EXPECT_TRUE(refused("missing \"weight_map\""));
  write_index(R"({"weight_map":{"x":1}})");
  EXPECT_TRUE(refused("weight_map[\"x\"] is not a string"));
  write_index(R"({"weight_map":[]})");
  EXPECT_TRUE(refused("\"weight_map\" is not an object"));
  write_index(R"({"weight_map":{}} trailing)");
  EXPECT_TRUE(refused("invalid JSON"));
  write_index("[]");
  EXPECT_TRUE(refused("expected a JSON object"));
  write_index(R"({"weight_map":{},"deep":)" + std::string(100, '[') +
              std::string(100, ']') + "}");
  EXPECT_TRUE(refused("nested deeper than 64"));
  write_index(std::string(R"({"weight_map":{}})") + '\0' + "garbage");
  EXPECT_TRUE(refused("a NUL byte"));
  write_index("\xff");
  EXPECT_TRUE(refused("invalid JSON"));
}

}  // namespace
}  // namespace floe::test
