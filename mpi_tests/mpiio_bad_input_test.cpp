// Issue 6's bad input for the mpiio engine: MPI-IO hints with bad values and
// an alignment that is not a power of two are config errors naming the key;
// a data file shorter than its manifest says is a kCorrupt naming the file,
// on every rank, before any byte reaches the state, with nothing committed
// changed. (The staging pool that cannot be allocated: async_save_test.)
#include <cstring>
#include <fstream>

#include "engine_fixture.hpp"
#include "floe/checkpoint.hpp"

namespace floe::test {
namespace {

namespace fs = std::filesystem;

CheckpointConfig mpiio_config(nlohmann::json extra) {
  nlohmann::json json = {{"type", "mpiio"}, {"output_dir", "/tmp/unused"}};
  json.update(extra);
  return parse_config(json);
}

TEST(MpiioBadInput, HintsWithBadValuesNameTheKey) {
  const std::vector<std::pair<nlohmann::json, std::vector<std::string>>> cases = {
      {{{"romio_cb_write", "sometimes"}},
       {"\"romio_cb_write\"", "automatic, enable or disable"}},
      {{{"romio_cb_write", 1}}, {"\"romio_cb_write\""}},
      {{{"cb_buffer_size", "lots"}}, {"\"cb_buffer_size\""}},
      {{{"cb_buffer_size", -16}}, {"\"cb_buffer_size\""}},
      {{{"cb_buffer_size", 1.5}}, {"\"cb_buffer_size\""}},
      {{{"striping_factor", -1}}, {"\"striping_factor\""}},
      {{{"striping_factor", "four"}}, {"\"striping_factor\""}},
      {{{"striping_unit", "wide"}}, {"\"striping_unit\""}},
      {{{"striping_unit", true}}, {"\"striping_unit\""}},
  };
  for (const auto& [extra, parts] : cases) {
    const Caught caught = catch_error([&] { mpiio_config(extra); });
    EXPECT_TRUE(is_error(caught, ErrorCode::kInvalidConfig)) << extra.dump();
    for (const auto& part : parts) {
      EXPECT_NE(caught.message.find(part), std::string::npos)
          << extra.dump() << ": " << caught.message;
    }
  }
  // Good values pass through to the engine's options.
  const auto good = mpiio_config({{"romio_cb_write", "disable"},
                                  {"cb_buffer_size", "16MiB"},
                                  {"striping_factor", 4},
                                  {"striping_unit", "1MiB"}});
  EXPECT_EQ(good.options.get_string("romio_cb_write"), "disable");
  EXPECT_EQ(good.options.get_count("cb_buffer_size"), 16u << 20);
}

TEST(MpiioBadInput, AlignmentThatIsNotAPowerOfTwoNamesTheKey) {
  for (const nlohmann::json& bad : {nlohmann::json(3000), nlohmann::json("3k"),
                                    nlohmann::json(0), nlohmann::json("12KiB")}) {
    EXPECT_TRUE(throws_error([&] { mpiio_config({{"alignment", bad}}); },
                             ErrorCode::kInvalidConfig, {"\"alignment\"", "power of two"}))
        << bad.dump();
  }
  EXPECT_TRUE(throws_error([&] { mpiio_config({{"alignment", "2GiB"}}); },
                           ErrorCode::kInvalidConfig, {"\"alignment\"", "at most 1GiB"}));
  EXPECT_EQ(mpiio_config({{"alignment", "1MiB"}}).options.get_count("alignment"), 1u << 20);
}

// Cuts the data file of a committed mpiio checkpoint by `cut` bytes (or to
// empty), then loads and verifies it.
void expect_short_data_file_rejected(std::uint64_t cut, bool verify_on_load) {
  TempDir tmp;
  SimpleTrainer trainer;
  build_test_state(trainer.state(), world_rank(), world_size(), Partition::kMixed);
  auto engine = make_test_engine(trainer, "mpiio", tmp / "ckpt",
                                 {{"verify_on_load", verify_on_load}});
  trainer.progress_now.global_step = 1;
  engine->save();
  const fs::path dir = tmp / "ckpt" / "global_step_1";
  const Manifest m = Manifest::read(dir);
  ASSERT_EQ(m.files.size(), 1u);
  const fs::path data = dir / m.files[0].path;
  const std::uint64_t size = m.files[0].size;
  ASSERT_GT(size, 0u);
  const std::uint64_t keep = cut >= size ? 0 : size - cut;
  if (world_rank() == 0) fs::resize_file(data, keep);
  MPI_Barrier(MPI_COMM_WORLD);
  const std::string manifest_before = slurp(dir / "manifest.json");

  for (auto& shard : trainer.state().tensors()) std::memset(shard.data(), 0x5A, shard.nbytes());
  const Caught caught = catch_error([&] { engine->load(); });
  EXPECT_TRUE(is_error(caught, ErrorCode::kCorrupt, {data.string(), "truncated"}))
      << "cut " << cut << ": " << caught.message;
  EXPECT_TRUE(same_on_all_ranks(caught.message));
  // Refused before any byte reached the state.
  for (const auto& shard : trainer.state().tensors()) {
    for (std::uint64_t i = 0; i < shard.nbytes(); ++i) {
      ASSERT_EQ(static_cast<unsigned char>(shard.data()[i]), 0x5A) << shard.spec().key();
    }
  }
  EXPECT_TRUE(throws_error([&] { (void)verify_checkpoint(dir, MPI_COMM_WORLD); },
                           ErrorCode::kCorrupt, {"truncated"}));
  // Nothing committed changed: the manifest, `latest`, the file as cut.
  EXPECT_EQ(slurp(dir / "manifest.json"), manifest_before);
  EXPECT_EQ(slurp(tmp / "ckpt" / "latest"), "global_step_1\n");
  EXPECT_EQ(fs::file_size(data), keep);
}

TEST(MpiioBadInput, DataFileShorterThanTheManifestSaysIsRefused) {
  for (bool verify : {true, false}) {
    for (std::uint64_t cut : {std::uint64_t{1}, std::uint64_t{4096}, ~std::uint64_t{0}}) {
      run_within(std::chrono::seconds(60),
                 [&] { expect_short_data_file_rejected(cut, verify); });
    }
  }
}

}  // namespace
}  // namespace floe::test
