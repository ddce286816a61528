// floe bench's raw baseline for loads: the files of an engine's latest
// checkpoint, and a rank's share of them read into the state's memory.
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cli/bench/raw_io.hpp"
#include "floe/error.hpp"
#include "floe/state.hpp"
#include "test_util.hpp"

namespace floe::bench {
namespace {

namespace fs = std::filesystem;
using test::TempDir;
using test::throws_error;

// Byte i of the concatenation of the test's files.
char byte_at(std::uint64_t i) { return static_cast<char>((i * 131 + 7) % 251); }

void write_bytes(const fs::path& path, std::uint64_t from, std::uint64_t count) {
  std::string text(count, '\0');
  for (std::uint64_t i = 0; i < count; ++i) text[i] = byte_at(from + i);
  std::ofstream(path, std::ios::binary).write(text.data(), static_cast<std::streamsize>(count));
}

// Two U8 tensors of 1,024 and 3,072 bytes, zero-filled.
void add_shards(State& state) {
  state.add_model("a", DType::kU8, {1024}, Region::whole({1024}));
  state.add_model("b", DType::kU8, {3072}, Region::whole({3072}));
  for (auto& shard : state.tensors()) std::memset(shard.data(), 0, shard.nbytes());
}

const char* bytes_of(const State& state, std::size_t t) {
  return reinterpret_cast<const char*>(state.tensors()[t].data());
}

// Checks that tensor `t`'s bytes [at, at + count) hold the files' bytes
// from `from` on.
void expect_bytes(const State& state, std::size_t t, std::uint64_t at, std::uint64_t count,
                  std::uint64_t from) {
  for (std::uint64_t i = 0; i < count; ++i) {
    ASSERT_EQ(bytes_of(state, t)[at + i], byte_at(from + i))
        << "tensor " << t << " byte " << at + i << " (file byte " << from + i << ")";
  }
}

class RawReadShare : public ::testing::Test {
 protected:
  // Two files, 3,000 and 5,000 bytes: 8,000 bytes one after the other.
  void SetUp() override {
    write_bytes(dir_ / "a.bin", 0, 3000);
    write_bytes(dir_ / "b.bin", 3000, 5000);
    add_shards(state_);
  }
  std::vector<fs::path> files() const { return {dir_ / "a.bin", dir_ / "b.bin"}; }

  TempDir dir_{MPI_COMM_SELF};
  State state_;
};

TEST_F(RawReadShare, FirstOfTwoRanksReadsTheFirstHalfIntoTheShardsInOrder) {
  EXPECT_EQ(raw_read_share(files(), 0, 2, state_), 8000u);
  expect_bytes(state_, 0, 0, 1024, 0);
  expect_bytes(state_, 1, 0, 2976, 1024);
  for (std::uint64_t i = 2976; i < 3072; ++i) ASSERT_EQ(bytes_of(state_, 1)[i], 0) << i;
}

TEST_F(RawReadShare, SecondOfTwoRanksReadsAcrossTheFileBoundary) {
  // Bytes [4000, 8000): the end of nothing in a.bin, all from b.bin's
  // offset 1000 on.
  EXPECT_EQ(raw_read_share(files(), 1, 2, state_), 8000u);
  expect_bytes(state_, 0, 0, 1024, 4000);
  expect_bytes(state_, 1, 0, 2976, 5024);
}

TEST_F(RawReadShare, AShareLargerThanTheStateWrapsToTheFirstShard) {
  // 8,000 bytes into 4,096: shards filled once, then again from the first.
  EXPECT_EQ(raw_read_share(files(), 0, 1, state_), 8000u);
  expect_bytes(state_, 0, 0, 1024, 4096);
  expect_bytes(state_, 1, 0, 2880, 5120);
  expect_bytes(state_, 1, 2880, 192, 3904);
}

TEST_F(RawReadShare, AMissingFileIsAnIoErrorNamingIt) {
  fs::remove(dir_ / "b.bin");
  EXPECT_TRUE(throws_error([&] { raw_read_share(files(), 0, 1, state_); }, ErrorCode::kIo,
                           {(dir_ / "b.bin").string()}));
}

TEST(LatestCheckpointFiles, AreTheFilesOfTheTaggedCheckpointSortedByPath) {
  TempDir dir(MPI_COMM_SELF);
  fs::create_directories(dir / "global_step_2");
  fs::create_directories(dir / "global_step_3" / "sub");
  write_bytes(dir / "global_step_2" / "data.bin", 0, 10);
  write_bytes(dir / "global_step_3" / "manifest.json", 0, 10);
  write_bytes(dir / "global_step_3" / "data.bin", 0, 10);
  std::ofstream(dir / "latest") << "global_step_3\n";
  const std::vector<fs::path> expected = {dir / "global_step_3" / "data.bin",
                                          dir / "global_step_3" / "manifest.json"};
  EXPECT_EQ(latest_checkpoint_files(dir.path()), expected);
}

TEST(LatestCheckpointFiles, WithoutLatestOrFilesAreErrorsNamingThePath) {
  TempDir dir(MPI_COMM_SELF);
  EXPECT_TRUE(throws_error([&] { latest_checkpoint_files(dir.path()); }, ErrorCode::kIo,
                           {(dir / "latest").string()}));
  fs::create_directories(dir / "global_step_1");
  std::ofstream(dir / "latest") << "global_step_1\n";
  EXPECT_TRUE(throws_error([&] { latest_checkpoint_files(dir.path()); }, ErrorCode::kNotFound,
                           {(dir / "global_step_1").string()}));
}

}  // namespace
}  // namespace floe::bench
