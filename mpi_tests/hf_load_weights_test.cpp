// floe::load_weights at 1-4 ranks: any partition loads any export, each rank
// reading only its own regions; mismatches and corrupt files fail the same
// way on every rank.
#include <cstring>

#include <gtest/gtest.h>

#include "floe/hf.hpp"
#include "hf_test_model.hpp"
#include "hf_test_util.hpp"

namespace floe::test {
namespace {

namespace fs = std::filesystem;

std::uint64_t own_bytes(const State& state) {
  std::uint64_t n = 0;
  for (const auto& s : state.tensors()) {
    if (s.spec().group == TensorGroup::kModel) n += s.nbytes();
  }
  return n;
}

void export_model(const std::vector<TensorDef>& defs, const fs::path& dir,
                  const HfExportOptions& options = {}) {
  State state;
  add_model(state, defs, world_rank(), world_size());
  export_hf(state, dir, MPI_COMM_WORLD, options);
}

::testing::AssertionResult holds_model(const State& state) {
  for (const auto& shard : state.tensors()) {
    if (shard.spec().group != TensorGroup::kModel) continue;
    auto ok = holds_expected(shard);
    if (!ok) return ok;
  }
  return ::testing::AssertionSuccess();
}

TEST(HfLoadWeights, AnyPartitionLoadsAnyExport) {
  TempDir dir;
  run_within(std::chrono::seconds(120), [&] {
    const auto defs = sample_model();
    HfExportOptions sharded;
    sharded.max_shard_size = 3000;
    export_model(defs, dir / "one");
    export_model(defs, dir / "many", sharded);
    for (const fs::path& from :
         {dir / "one", dir / "many", dir / "one" / "model.safetensors",
          dir / "many" / "model.safetensors.index.json"}) {
      for (const bool reshard : {false, true}) {
        State state;
        add_model(state, defs, world_rank(), world_size(), reshard,
                  /*fill=*/false);
        const HfLoadSummary s = load_weights(from, state, MPI_COMM_WORLD);
        EXPECT_TRUE(holds_model(state))
            << from << (reshard ? " resharded" : "");
        EXPECT_EQ(s.bytes_read, own_bytes(state))
            << "a rank read more than its regions";
        EXPECT_EQ(s.tensors, defs.size());
        // Optimizer tensors are left alone.
        EXPECT_EQ(
            state.find("optimizer/embed.weight/exp_avg")->data_as<float>()[0] !=
                0.0f,
            true);
      }
    }
  });
}

TEST(HfLoadWeights, MismatchesNameTheTensor) {
  TempDir dir;
  run_within(std::chrono::seconds(120), [&] {
    const auto defs = sample_model();
    export_model(defs, dir.path());
    const auto load_with = [&](const std::vector<TensorDef>& model,
                               const HfLoadOptions& o = {}) {
      State state;
      add_model(state, model, world_rank(), world_size(), true, false);
      const Caught c = catch_error(
          [&] { load_weights(dir.path(), state, MPI_COMM_WORLD, o); });
      EXPECT_TRUE(same_on_all_ranks(c.message));
      return c;
    };
    auto missing = defs;
    missing.push_back({"not.there", DType::kF32, {2}, Split::kDim0});
    EXPECT_TRUE(is_error(load_with(missing), ErrorCode::kMismatch,
                         {"\"not.there\"", "is not in"}));
    auto dtype = defs;
    dtype[0].dtype = DType::kF64;
    EXPECT_TRUE(is_error(
        load_with(dtype), ErrorCode::kMismatch,
        {"\"embed.weight\"", "F32[37,11]", "the state has F64[37,11]"}));
    auto shape = defs;
    shape[3].shape = {999};
    EXPECT_TRUE(is_error(load_with(shape), ErrorCode::kMismatch,
                         {"\"layers.0.norm\"", "F32[999]"}));
    auto fewer = defs;
    fewer.pop_back();
    EXPECT_TRUE(is_error(load_with(fewer), ErrorCode::kMismatch,
                         {"\"lm_head.weight\"", "allow_extra_tensors"}));
    HfLoadOptions extra;
    extra.allow_extra_tensors = true;
    State state;
    add_model(state, fewer, world_rank(), world_size(), true, false);
    const HfLoadSummary s =
        load_weights(dir.path(), state, MPI_COMM_WORLD, extra);
    EXPECT_EQ(s.ignored, std::vector<std::string>{"lm_head.weight"});
    EXPECT_TRUE(holds_model(state));
    EXPECT_TRUE(throws_error(
        [&] { load_weights(dir / "nothing", state, MPI_COMM_WORLD); },
        ErrorCode::kNotFound, {"nothing"}));
  });
}

TEST(HfLoadWeights, CastsAndRenamesWhenAsked) {
  TempDir dir;
  run_within(std::chrono::seconds(120), [&] {
    const auto defs = float_model();
    HfExportOptions bf16;
    bf16.dtype = DType::kBF16;
    bf16.rename = [](const std::string& n) { return "model." + n; };
    export_model(defs, dir.path(), bf16);
    HfLoadOptions options;
    options.rename = [](const std::string& n) { return "model." + n; };
    State state;
    add_model(state, defs, world_rank(), world_size(), true, false);
    EXPECT_TRUE(throws_error(
        [&] { load_weights(dir.path(), state, MPI_COMM_WORLD, options); },
        ErrorCode::kMismatch,
        {"tensor \"a\" (\"model.a\" in the files)", "BF16[41,7]",
         "HfLoadOptions::cast"}));
    options.cast = true;
    load_weights(dir.path(), state, MPI_COMM_WORLD, options);
    for (const auto& shard : state.tensors()) {
      if (shard.spec().group != TensorGroup::kModel) continue;
      if (shard.spec().dtype == DType::kI64) {  // integers are not converted
        EXPECT_TRUE(holds_expected(shard));
        continue;
      }
      const std::string key = shard.spec().key();
      const bool f64 = shard.spec().dtype == DType::kF64;
      for_each_element(
          shard.spec().shape, shard.region(),
          [&](std::uint64_t g, std::uint64_t l) {
            const double want = f64 ? expected_value<double>(key, g)
                                    : expected_value<float>(key, g);
            std::uint32_t b;
            const float wf = static_cast<float>(want);
            std::memcpy(&b, &wf, 4);
            b = ((b + 0x7fff + ((b >> 16) & 1)) >> 16) << 16;  // BF16-rounded
            float rounded;
            std::memcpy(&rounded, &b, 4);
            const double got =
                f64 ? shard.data_as<double>()[l] : shard.data_as<float>()[l];
            ASSERT_EQ(got, static_cast<double>(rounded))
                << key << "[" << g << "]";
          });
    }
  });
}

TEST(HfLoadWeights, CorruptFilesFailOnEveryRank) {
  TempDir dir;
  run_within(std::chrono::seconds(120), [&] {
    const auto defs = sample_model();
    export_model(defs, dir.path());
    const fs::path file = dir / "model.safetensors";
    std::string bytes;
    if (world_rank() == 0) bytes = read_bytes(file);
    MPI_Barrier(MPI_COMM_WORLD);
    const auto fails = [&](const std::string& rule) {
      State state;
      add_model(state, defs, world_rank(), world_size(), true, false);
      const Caught c =
          catch_error([&] { load_weights(dir.path(), state, MPI_COMM_WORLD); });
      EXPECT_TRUE(same_on_all_ranks(c.message));
      return is_error(c, ErrorCode::kCorrupt, {"model.safetensors", rule});
    };
    if (world_rank() == 0) write_bytes(file, bytes.substr(0, bytes.size() - 1));
    MPI_Barrier(MPI_COMM_WORLD);
    EXPECT_TRUE(fails("need"));
    if (world_rank() == 0) {
      std::string broken = bytes;
      const auto at = broken.find("\"data_offsets\":[0,");
      broken.replace(at, 18, "\"data_offsets\":[1,");
      write_bytes(file, broken);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    EXPECT_TRUE(fails("data_offsets [1, "));
    if (world_rank() == 0) write_bytes(file, bytes + "x");
    MPI_Barrier(MPI_COMM_WORLD);
    EXPECT_TRUE(fails("1 trailing bytes"));
  });
}

// A shard name in the index with a typo: every rank gets the same error,
// naming the index and the entry, and nothing is read.
TEST(HfLoadWeights, AnIndexNamingAMissingShardNamesTheEntry) {
  TempDir dir;
  run_within(std::chrono::seconds(120), [&] {
    const auto defs = sample_model();
    HfExportOptions sharded;
    sharded.max_shard_size = 3000;
    export_model(defs, dir.path(), sharded);
    const fs::path index = dir / "model.safetensors.index.json";
    on_rank0_then_barrier([&] {
      std::string text = read_bytes(index);
      ASSERT_NE(text.find("-00002-of-"), std::string::npos) << text;
      for (auto at = text.find("-00002-of-"); at != std::string::npos;
           at = text.find("-00002-of-", at)) {
        text.replace(at, 10, "-00020-of-");  // every entry of shard 2
      }
      write_bytes(index, text);
    });
    State state;
    add_model(state, defs, world_rank(), world_size(), true, /*fill=*/false);
    const Caught c = catch_error([&] { load_weights(dir.path(), state, MPI_COMM_WORLD); });
    EXPECT_TRUE(same_on_all_ranks(c.message));
    EXPECT_TRUE(is_error(c, ErrorCode::kNotFound,
                         {index.string() + ": weight_map[\"",
                          "\"] names \"model-00020-of-", "which does not exist in " +
                                                             dir.path().string()}));
    for (const auto& shard : state.tensors()) {
      if (shard.spec().group != TensorGroup::kModel) continue;
      for (std::size_t i = 0; i < shard.nbytes(); ++i) {
        ASSERT_EQ(std::to_integer<int>(shard.data()[i]), 0)
            << shard.spec().key() << ": read though refused";
      }
    }
  });
}

}  // namespace
}  // namespace floe::test
