// The hf export at 1-4 ranks: every rank writes its own regions straight
// into the consolidated files, and the bytes must not depend on how many
// ranks wrote them or how the tensors were cut.
#include <cstring>

#include <gtest/gtest.h>

#include "engines/hf/float_cast.hpp"
#include "engines/hf/safetensors_index.hpp"
#include "floe/hf.hpp"
#include "hf_test_model.hpp"
#include "hf_test_util.hpp"

namespace floe::test {
namespace {

namespace fs = std::filesystem;

struct ExportCase {
  const char* name;
  std::uint64_t round_bytes;
  std::uint64_t max_shard_size;
  std::size_t files;  // expected data files
};

class HfExport : public ::testing::TestWithParam<ExportCase> {};

// Rank 0 alone exports the whole model: the bytes every rank count must match.
HfExportSummary export_alone(const std::vector<TensorDef>& defs,
                             const fs::path& dir,
                             const HfExportOptions& options) {
  HfExportSummary summary;
  MPI_Comm self = rank_zero_comm();
  if (self != MPI_COMM_NULL) {
    State whole;
    add_model(whole, defs, 0, 1);
    summary = export_hf(whole, dir, self, options);
    MPI_Comm_free(&self);
  }
  return summary;
}

TEST_P(HfExport, BytesDoNotDependOnTheRanks) {
  const ExportCase& c = GetParam();
  TempDir dir;
  HfExportOptions options;
  options.round_bytes = c.round_bytes;
  options.max_shard_size = c.max_shard_size;
  run_within(std::chrono::seconds(120), [&] {
    const auto defs = sample_model();
    const HfExportSummary alone = export_alone(defs, dir / "alone", options);
    State state;
    add_model(state, defs, world_rank(), world_size());
    const HfExportSummary summary =
        export_hf(state, dir / "world", MPI_COMM_WORLD, options);
    std::string files;
    for (const auto& f : summary.files) files += f + " ";
    EXPECT_TRUE(same_on_all_ranks(files));
    EXPECT_EQ(summary.files.size(), c.files + (c.files > 1 ? 1 : 0));
    if (world_rank() != 0) return;
    EXPECT_EQ(summary.files, alone.files);
    for (const auto& f : summary.files) {
      EXPECT_EQ(read_bytes(dir / "world" / f), read_bytes(dir / "alone" / f))
          << f;
    }
    // And the bytes are the model's: read every tensor back whole.
    const hf::HfDirectory weights(dir / "world");
    for (const auto& def : defs) {
      const auto* at = weights.find(def.name);
      ASSERT_NE(at, nullptr) << def.name;
      EXPECT_EQ(at->tensor->dtype, def.dtype);
      EXPECT_EQ(at->tensor->shape, def.shape);
      std::string got(at->tensor->nbytes(), '\0');
      weights.files()[at->file]->read_box(*at->tensor, full_box(def.shape),
                                          got.data(), def.dtype);
      EXPECT_TRUE(got == expected_bytes(def)) << def.name;
    }
    EXPECT_EQ(weights.find("embed.weight/exp_avg"), nullptr);
    EXPECT_EQ(weights.tensors().size(), defs.size());
  });
}

INSTANTIATE_TEST_SUITE_P(
    Rounds, HfExport,
    ::testing::Values(ExportCase{"OneFileOneRound", 256u << 20,
                                 5'000'000'000ULL, 1},
                      ExportCase{"OneFileTinyRounds", 64, 5'000'000'000ULL, 1},
                      ExportCase{"ShardsOddRounds", 1000, 2000, 5},
                      ExportCase{"EveryTensorAlone", 64, 1, 10}),
    [](const auto& info) { return std::string(info.param.name); });

std::uint16_t bf16_of(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, 4);
  return static_cast<std::uint16_t>((b + 0x7fff + ((b >> 16) & 1)) >> 16);
}

TEST(HfExportCast, WritesBf16RoundedToNearestEven) {
  TempDir dir;
  HfExportOptions options;
  options.dtype = DType::kBF16;
  options.round_bytes = 100;  // converts in many small rounds
  run_within(std::chrono::seconds(120), [&] {
    const auto defs = float_model();
    export_alone(defs, dir / "alone", options);
    State state;
    add_model(state, defs, world_rank(), world_size());
    export_hf(state, dir / "world", MPI_COMM_WORLD, options);
    if (world_rank() != 0) return;
    EXPECT_EQ(read_bytes(dir / "world" / "model.safetensors"),
              read_bytes(dir / "alone" / "model.safetensors"));
    const hf::HfDirectory weights(dir / "world");
    for (const auto& def : defs) {
      const auto* at = weights.find(def.name);
      ASSERT_NE(at, nullptr);
      const std::uint64_t n = num_elements(def.shape);
      if (def.dtype == DType::kI64) {
        EXPECT_EQ(at->tensor->dtype, DType::kI64);  // integers keep their dtype
        continue;
      }
      ASSERT_EQ(at->tensor->dtype, DType::kBF16) << def.name;
      std::vector<std::uint16_t> got(n);
      weights.files()[at->file]->read_box(*at->tensor, full_box(def.shape),
                                          got.data(), DType::kBF16);
      for (std::uint64_t i = 0; i < n; ++i) {
        const double v = def.dtype == DType::kF64
                             ? expected_value<double>("model/" + def.name, i)
                             : expected_value<float>("model/" + def.name, i);
        ASSERT_EQ(got[i], bf16_of(static_cast<float>(v)))
            << def.name << "[" << i << "]";
      }
    }
  });
}

// Runs of megabytes: each rank writes its own, unconverted ones straight
// from its buffers, converted ones through buffers smaller than a tensor.
TEST(HfExportLargeRuns, WriteTheModelsBytesWithAndWithoutACast) {
  TempDir dir;
  run_within(std::chrono::seconds(300), [&] {
    const auto defs = large_model();
    State state;
    add_model(state, defs, world_rank(), world_size());
    export_hf(state, dir / "keep", MPI_COMM_WORLD);
    HfExportOptions cast;
    cast.dtype = DType::kF32;
    cast.round_bytes = (1u << 20) + 100;  // 8 MiB converted per rank: rounds
    export_hf(state, dir / "cast", MPI_COMM_WORLD, cast);
    if (world_rank() != 0) return;
    for (const std::string name : {"keep", "cast"}) {
      const hf::HfDirectory weights(dir / name);
      for (const auto& def : defs) {
        const auto* at = weights.find(def.name);
        ASSERT_NE(at, nullptr) << name << " " << def.name;
        const DType dtype = name == "cast" ? DType::kF32 : def.dtype;
        ASSERT_EQ(at->tensor->dtype, dtype) << name << " " << def.name;
        const std::uint64_t n = num_elements(def.shape);
        std::string want(n * dtype_size(dtype), '\0');
        hf::cast_elements(expected_bytes(def).data(), def.dtype, want.data(),
                          dtype, n);
        std::string got(want.size(), '\0');
        weights.files()[at->file]->read_box(*at->tensor, full_box(def.shape),
                                            got.data(), dtype);
        EXPECT_TRUE(got == want) << name << " " << def.name;
      }
    }
  });
}

TEST(HfExportErrors, AreTheSameOnEveryRank) {
  TempDir dir;
  run_within(std::chrono::seconds(120), [&] {
    State state;
    add_model(state, sample_model(), world_rank(), world_size());
    export_hf(state, dir.path(), MPI_COMM_WORLD);
    const Caught again =
        catch_error([&] { export_hf(state, dir.path(), MPI_COMM_WORLD); });
    EXPECT_TRUE(is_error(again, ErrorCode::kInvalidArgument,
                         {"already holds an export"}));
    EXPECT_TRUE(same_on_all_ranks(again.message));

    HfExportOptions bad;
    bad.dtype = DType::kI8;
    EXPECT_TRUE(throws_error(
        [&] { export_hf(state, dir / "cast", MPI_COMM_WORLD, bad); },
        ErrorCode::kInvalidArgument, {"cannot convert"}));
    HfExportOptions copy;
    copy.copy_files = {dir / "no-such-config.json"};
    EXPECT_TRUE(throws_error(
        [&] { export_hf(state, dir / "copy", MPI_COMM_WORLD, copy); },
        ErrorCode::kNotFound, {"no-such-config.json"}));

    if (world_size() > 1) {
      HfExportOptions uneven;  // a rename that differs between ranks
      const std::string suffix = std::to_string(world_rank());
      uneven.rename = [suffix](const std::string& n) { return n + suffix; };
      const Caught c = catch_error(
          [&] { export_hf(state, dir / "uneven", MPI_COMM_WORLD, uneven); });
      EXPECT_TRUE(is_error(c, ErrorCode::kInvalidArgument,
                           {"the ranks planned different files"}));
      State overlapping;  // every rank claims the whole tensor, not replicated
      overlapping.add_model("w", DType::kF32, {4}, Region::whole({4}));
      EXPECT_TRUE(throws_error(
          [&] { export_hf(overlapping, dir / "overlap", MPI_COMM_WORLD); },
          ErrorCode::kMismatch, {"\"model/w\"", "overlap"}));
    }
  });
}

}  // namespace
}  // namespace floe::test
