// The shared test helpers, checked before other suites rely on them:
// temporary directories, deterministic contents, and the partitions.
#include "test_util.hpp"

#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace floe {
namespace {

using namespace floe::test;

TEST(TestUtil, TempDirIsSharedFreshAndRemoved) {
  std::filesystem::path seen;
  {
    TempDir dir;
    seen = dir.path();
    EXPECT_TRUE(same_on_all_ranks(dir.path().string()));
    EXPECT_TRUE(std::filesystem::is_directory(dir.path()));
    EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
    EXPECT_NE(dir.path().filename().string().find(
                  "TestUtil.TempDirIsSharedFreshAndRemoved"),
              std::string::npos)
        << dir.path();
    MPI_Barrier(MPI_COMM_WORLD);  // all looked before anyone writes
    // Every rank writes a file; every rank sees all of them.
    std::ofstream(dir / ("rank" + std::to_string(world_rank())))
        << world_rank();
    MPI_Barrier(MPI_COMM_WORLD);
    for (int r = 0; r < world_size(); ++r) {
      EXPECT_TRUE(std::filesystem::exists(dir / ("rank" + std::to_string(r))))
          << r;
    }
    TempDir other;
    EXPECT_NE(other.path(), dir.path());
  }
  const char* keep = std::getenv("FLOE_TEST_KEEP_TMPDIR");
  if (!(keep && *keep && std::string(keep) != "0")) {
    EXPECT_FALSE(std::filesystem::exists(seen)) << seen;
  }
}

TEST(TestUtil, ExpectedValuesAreDeterministicAndVaried) {
  EXPECT_EQ(expected_value<float>("model/w", 17),
            expected_value<float>("model/w", 17));
  std::set<float> values;
  for (std::uint64_t i = 0; i < 1000; ++i)
    values.insert(expected_value<float>("model/w", i));
  EXPECT_GT(values.size(), 900u);  // nearly all distinct
  EXPECT_NE(expected_value<std::int64_t>("model/w", 3),
            expected_value<std::int64_t>("model/v", 3));
  // Floats are multiples of 1/256 in [-128, 128): exact in F32 and F64.
  for (std::uint64_t i = 0; i < 100; ++i) {
    const double d = expected_value<double>("k", i);
    EXPECT_EQ(static_cast<double>(static_cast<float>(d)), d);
    EXPECT_GE(d, -128.0);
    EXPECT_LT(d, 128.0);
  }
  EXPECT_TRUE(
      same_on_all_ranks(std::to_string(element_hash("model/w", 12345))));
  // Pinned: the values every test's checkpoints hold, whichever way they
  // are computed (the loops hash the key once).
  EXPECT_EQ(element_hash("model/w", 12345), 10071860623008147450ull);
  EXPECT_EQ(element_hash_after(key_hash("model/w"), 12345), 10071860623008147450ull);
}

TEST(TestUtil, ForEachElementVisitsTheRegionInBufferOrder) {
  std::vector<std::uint64_t> globals, locals;
  for_each_element({3, 4}, Region::flat(FlatRange{2, 7}),
                   [&](std::uint64_t g, std::uint64_t l) {
                     globals.push_back(g);
                     locals.push_back(l);
                   });
  EXPECT_EQ(globals, (std::vector<std::uint64_t>{2, 3, 4, 5, 6}));
  EXPECT_EQ(locals, (std::vector<std::uint64_t>{0, 1, 2, 3, 4}));
  globals.clear();
  for_each_element(
      {3, 4}, Region::box(Box{{1, 1}, {2, 2}}),
      [&](std::uint64_t g, std::uint64_t) { globals.push_back(g); });
  EXPECT_EQ(globals, (std::vector<std::uint64_t>{5, 6, 9, 10}));
}

TEST(TestUtil, FillAndCheckShards) {
  State state;
  state.add_model("w", DType::kF32, {10, 3},
                  dim0_shard({10, 3}, world_rank(), world_size()));
  state.add_model("b", DType::kBF16, {7},
                  zero_flat_shard({7}, world_rank(), world_size()));
  // Looked up after both adds: add_model's reference lasts only until the next
  // add.
  TensorShard& w = *state.find("model/w");
  TensorShard& b = *state.find("model/b");
  fill_expected(w);
  fill_expected(b);
  EXPECT_TRUE(holds_expected(w));
  EXPECT_TRUE(holds_expected(b));
  const auto rows = even_split(10, world_rank(), world_size());
  if (rows.second > rows.first) {
    // The first element of the shard is global element rows.first * 3.
    EXPECT_EQ(w.data_as<float>()[0],
              expected_value<float>("model/w", rows.first * 3));
    w.data_as<float>()[1] += 1.0f;
    const auto bad = holds_expected(w);
    EXPECT_FALSE(bad);
    EXPECT_NE(std::string(bad.message()).find("1 of"), std::string::npos)
        << bad.message();
    EXPECT_NE(
        std::string(bad.message()).find(std::to_string(rows.first * 3 + 1)),
        std::string::npos)
        << bad.message();
  }
}

TEST(TestUtil, PartitionsTileTheTensor) {
  for (int parts = 1; parts <= 5; ++parts) {
    for (std::uint64_t n : {0, 1, 4, 7, 10, 35}) {
      std::uint64_t next_even = 0, next_flat = 0;
      for (int r = 0; r < parts; ++r) {
        const auto [b, e] = even_split(n, r, parts);
        EXPECT_EQ(b, next_even);
        EXPECT_LE(e - b, n / parts + 1);
        EXPECT_GE(e - b, n / parts);
        next_even = e;
        const FlatRange f = zero_flat_shard({n}, r, parts).as_flat();
        EXPECT_EQ(f.begin, next_flat);
        next_flat = f.end;
      }
      EXPECT_EQ(next_even, n);
      EXPECT_EQ(next_flat, n);
    }
  }
  // ZeRO slices are ceil(n / parts): 35 over 4 is 9, 9, 9, 8.
  EXPECT_EQ(zero_flat_shard({7, 5}, 3, 4).to_string(), "flat[27:35)");
  EXPECT_EQ(dim0_shard({10, 3}, 0, 4).to_string(), "box[0:3,0:3]");
  EXPECT_EQ(dim0_shard({10, 3}, 3, 4).to_string(), "box[8:10,0:3]");
  EXPECT_EQ(replicated_whole({2, 2}).to_string(), "box[0:2,0:2]*");
}

}  // namespace
}  // namespace floe
