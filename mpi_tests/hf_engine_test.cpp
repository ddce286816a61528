// The "hf" engine through the ordinary save(): a committed directory that is
// a Hugging Face export plus Floe's manifest describing the safetensors data.
#include <gtest/gtest.h>

#include "engines/hf/safetensors_index.hpp"
#include "floe/checkpoint.hpp"
#include "floe/hf.hpp"
#include "floe/manifest.hpp"
#include "floe/registry.hpp"
#include "hf_test_model.hpp"
#include "hf_test_util.hpp"
#include "io/checksum.hpp"
#include "io/faulty_file_system.hpp"

namespace floe::test {
namespace {

namespace fs = std::filesystem;

nlohmann::json hf_config(const fs::path& out) {
  return {{"type", "hf"},
          {"output_dir", out.string()},
          {"max_shard_size", "2kB"},
          {"strip_prefix", "layers."},
          {"dtype", "F32"}};
}

// Saves `defs` (add_model's regions at this job's size) through the engine
// `config` makes, as the checkpoint of `step`.
void save_model(const nlohmann::json& config, std::int64_t step,
                const std::vector<TensorDef>& defs) {
  SimpleTrainer trainer;
  trainer.progress_now.global_step = step;
  add_model(trainer.state_now, defs, world_rank(), world_size());
  make_engine(trainer, parse_config(config))->save();
}

TEST(HfEngine, SavesAnExportWithAManifestOfTheSafetensorsData) {
  TempDir dir;
  run_within(std::chrono::seconds(120), [&] {
    if (world_rank() == 0)
      write_bytes(dir / "config.json", R"({"model_type":"test"})");
    nlohmann::json config = hf_config(dir / "out");
    config["copy_files"] = (dir / "config.json").string() + " , ";
    SimpleTrainer trainer;
    trainer.progress_now.global_step = 5;
    add_model(trainer.state_now, sample_model(), world_rank(), world_size());
    auto engine = make_engine(trainer, parse_config(config));
    EXPECT_FALSE(engine->resumable());
    engine->save();
    const fs::path saved = dir / "out" / "global_step_5";
    const Caught load = catch_error([&] { engine->load(saved); });
    EXPECT_TRUE(is_error(load, ErrorCode::kUnsupported,
                         {"\"hf\"", "cannot be loaded"}));
    if (world_rank() != 0) return;
    EXPECT_EQ(read_bytes(saved / "config.json"), R"({"model_type":"test"})");
    const Manifest m = Manifest::read(saved);
    EXPECT_EQ(m.engine, "hf");
    EXPECT_EQ(m.step, 5);
    EXPECT_TRUE(m.blobs.empty());
    EXPECT_EQ(m.engine_info["index"], hf::kIndexFileName);
    EXPECT_EQ(m.engine_info["renamed_from"]["0.norm"], "layers.0.norm");
    ASSERT_EQ(m.tensors.size(), sample_model().size());  // no optimizer state
    bool listed_config = false;
    for (const auto& f : m.files) listed_config |= f.path == "config.json";
    EXPECT_TRUE(listed_config);
    const hf::HfDirectory weights(saved);
    for (const auto& record : m.tensors) {
      ASSERT_EQ(record.pieces.size(), 1u);
      const PieceRecord& p = record.pieces[0];
      EXPECT_EQ(p.region, Region::whole(record.spec.shape));
      const auto* at = weights.find(record.spec.name);
      ASSERT_NE(at, nullptr) << record.spec.name;
      EXPECT_EQ(weights.files()[at->file]->path().filename(), p.file);
      EXPECT_EQ(at->tensor->file_offset, p.offset);
      EXPECT_EQ(at->tensor->nbytes(), p.nbytes);
      const std::string bytes =
          read_bytes(saved / p.file).substr(p.offset, p.nbytes);
      EXPECT_EQ(xxh3_64(bytes.data(), bytes.size()), p.xxh3)
          << record.spec.name;
    }
    EXPECT_NE(weights.find("0.attn.qkv"), nullptr);
    EXPECT_EQ(weights.find("0.attn.qkv")->tensor->dtype,
              DType::kF32);  // BF16 cast up
    EXPECT_EQ(weights.find("tokens")->tensor->dtype, DType::kU8);
  });
}

// The manifest's checksums, hashed from the ranks' buffers (dim-0 and flat
// shards, converted to F32 on the way) or read back (column blocks split
// across rows), are those of the bytes in the file.
TEST(HfEngine, ChecksumsTheBytesAsTheFileHoldsThem) {
  TempDir dir;
  run_within(std::chrono::seconds(300), [&] {
    nlohmann::json config = hf_config(dir / "out");
    config["max_shard_size"] = "5GB";
    save_model(config, 7, large_model());
    if (world_rank() != 0) return;
    const fs::path saved = dir / "out" / "global_step_7";
    const Manifest m = Manifest::read(saved);
    ASSERT_EQ(m.tensors.size(), large_model().size());
    const std::string bytes = read_bytes(saved / "model.safetensors");
    for (const auto& record : m.tensors) {
      ASSERT_EQ(record.pieces.size(), 1u);
      const PieceRecord& p = record.pieces[0];
      EXPECT_EQ(record.spec.dtype, DType::kF32) << record.spec.name;
      ASSERT_LE(p.offset + p.nbytes, bytes.size());
      EXPECT_EQ(xxh3_64(bytes.data() + p.offset, p.nbytes), p.xxh3)
          << record.spec.name;
    }
  });
}

// The export's manifest names each tensor's file, byte offset and checksum:
// verify_checkpoint reads it (through the mpiio reader), split across the
// ranks, and names the file and the tensor whose bytes changed.
TEST(HfEngine, VerifyChecksTheExportedBytes) {
  TempDir dir;
  run_within(std::chrono::seconds(120), [&] {
    save_model(hf_config(dir / "out"), 4, sample_model());
    const fs::path saved = dir / "out" / "global_step_4";
    const VerifyReport good = verify_checkpoint(saved, MPI_COMM_WORLD);
    EXPECT_TRUE(good.ok()) << (good.ok() ? "" : good.problems[0]);
    EXPECT_EQ(good.pieces_checked, sample_model().size());
    const Manifest m = Manifest::read(saved);
    const TensorRecord& victim = m.tensors.back();
    const PieceRecord& p = victim.pieces.at(0);
    MPI_Barrier(MPI_COMM_WORLD);
    on_rank0_then_barrier([&] { flip_byte(saved / p.file, p.offset + p.nbytes / 2); });
    const VerifyReport bad = verify_checkpoint(saved, MPI_COMM_WORLD);
    ASSERT_EQ(bad.problems.size(), 1u);
    EXPECT_NE(bad.problems[0].find(p.file), std::string::npos) << bad.problems[0];
    EXPECT_NE(bad.problems[0].find(victim.spec.name), std::string::npos)
        << bad.problems[0];
    EXPECT_TRUE(same_on_all_ranks(bad.problems[0]));
  });
}

// A resumable engine's load() reads an hf checkpoint's weights (fine-tuning
// from an export) into a state of those tensors, cut another way; a state
// that also holds optimizer tensors is told which one the export lacks.
TEST(HfEngine, AResumableEngineLoadsTheExportedWeights) {
  TempDir dir;
  run_within(std::chrono::seconds(120), [&] {
    save_model({{"type", "hf"}, {"output_dir", (dir / "out").string()}}, 6, sample_model());
    const fs::path saved = dir / "out" / "global_step_6";
    const nlohmann::json hdf5 = {{"type", "hdf5"}, {"output_dir", (dir / "ft").string()}};
    SimpleTrainer trainer;
    for (const TensorDef& def : sample_model()) {
      const int size = world_size();
      const auto region =
          region_for(def, other_split(def.split), size - 1 - world_rank(), size);
      if (region) trainer.state_now.add_model(def.name, def.dtype, def.shape, *region);
    }
    const Manifest m = make_engine(trainer, parse_config(hdf5))->load(saved);
    EXPECT_EQ(m.engine, "hf");
    EXPECT_EQ(m.step, 6);
    for (const auto& shard : trainer.state_now.tensors()) EXPECT_TRUE(holds_expected(shard));

    trainer.state_now.add_optimizer("embed.weight", "exp_avg", DType::kF32, {8},
                                    Region::flat(FlatRange{0, world_rank() == 0 ? 8u : 0u}));
    const Caught c = catch_error([&] { make_engine(trainer, parse_config(hdf5))->load(saved); });
    EXPECT_TRUE(is_error(c, ErrorCode::kMismatch,
                         {"optimizer/embed.weight/exp_avg", "is not in checkpoint"}));
    EXPECT_TRUE(same_on_all_ranks(c.message));
  });
}

TEST(HfEngine, ValidatesItsOptions) {
  const auto bad = [](const char* key, nlohmann::json value) {
    nlohmann::json config = hf_config("/tmp/unused");
    config[key] = std::move(value);
    return throws_error([&] { parse_config(config); },
                        ErrorCode::kInvalidConfig,
                        {std::string("\"") + key + "\""});
  };
  EXPECT_TRUE(bad("dtype", "I8"));
  EXPECT_TRUE(bad("dtype", "F8_E4M3"));
  EXPECT_TRUE(bad("max_shard_size", 0));
  EXPECT_TRUE(bad("max_shard_size", "lots"));
  EXPECT_TRUE(bad("auto_resume", true));
  const EngineInfo& info = engine_info("hf");
  EXPECT_FALSE(info.resumable);
  EXPECT_TRUE(info.reader);  // the mpiio reader: verify and diff read exports
  EXPECT_TRUE(info.factory);
  const CheckpointConfig parsed =
      parse_config({{"type", "hf"}, {"output_dir", "/x"}});
  EXPECT_EQ(parsed.options.get_count("max_shard_size"), 5'000'000'000ULL);
  EXPECT_EQ(parse_config(hf_config("/x")).options.get_count("max_shard_size"),
            2000u);
}

TEST(HfEngine, AFailedWriteLeavesNoCheckpoint) {
  TempDir dir;
  run_within(std::chrono::seconds(120), [&] {
    SimpleTrainer trainer;
    trainer.progress_now.global_step = 3;
    add_model(trainer.state_now, sample_model(), world_rank(), world_size());
    auto engine = make_engine(trainer, parse_config(hf_config(dir / "out")));
    auto faulty = std::make_shared<FaultyFileSystem>();
    // The second data file fails on the last rank, after the first was written.
    if (world_rank() == world_size() - 1) {
      faulty->add_rule(FaultRule{FsOp::kDataWrite, "-of-", ENOSPC, 1, 1});
    }
    engine->set_file_system(faulty);
    const Caught c = catch_error([&] { engine->save(); });
    EXPECT_TRUE(is_error(c, ErrorCode::kIo));
    EXPECT_TRUE(same_on_all_ranks(c.message));
    if (world_rank() == 0) {
      EXPECT_FALSE(fs::exists(dir / "out" / "global_step_3"));
      EXPECT_FALSE(fs::exists(dir / "out" / "latest"));
    }
    engine->set_file_system(posix_file_system());
    engine->save();  // and the next save works
    if (world_rank() == 0) {
      EXPECT_TRUE(fs::exists(dir / "out" / "global_step_3" / "manifest.json"));
    }
  });
}

// A node that does not see the export directory (the last rank is handed
// one inside a directory that does not exist, the others the real one):
// every rank throws the same kIo naming that rank, from export_hf and from
// export_checkpoint_hf alike, and none hangs in the collective open (Open
// MPI's OMPIO deadlocks in an MPI_File_open that fails on one rank only).
TEST(HfExportErrors, AnExportDirectoryOneRankCannotSeeFailsOnEveryRank) {
  if (world_size() < 2) GTEST_SKIP() << "needs a rank that sees the directory and one that does not";
  TempDir dir;
  const bool blind = world_rank() == world_size() - 1;
  const auto seen_here = [&](const std::string& name) {
    return blind ? dir / "not-on-this-node" / name : dir / name;
  };
  const std::string named = "rank " + std::to_string(world_size() - 1) + ": cannot create";
  run_within(std::chrono::seconds(120), [&] {
    State state;
    add_model(state, sample_model(), world_rank(), world_size());
    const Caught from_state =
        catch_error([&] { export_hf(state, seen_here("from_state"), MPI_COMM_WORLD); });
    EXPECT_TRUE(is_error(from_state, ErrorCode::kIo, {named, "not-on-this-node"}));
    EXPECT_TRUE(same_on_all_ranks(from_state.message));

    save_model({{"type", "hdf5"}, {"output_dir", (dir / "ckpt").string()}}, 0, sample_model());
    const Caught from_checkpoint = catch_error([&] {
      export_checkpoint_hf(dir / "ckpt" / "global_step_0", seen_here("from_checkpoint"),
                           MPI_COMM_WORLD);
    });
    EXPECT_TRUE(is_error(from_checkpoint, ErrorCode::kIo, {named, "not-on-this-node"}));
    EXPECT_TRUE(same_on_all_ranks(from_checkpoint.message));
  });
}

}  // namespace
}  // namespace floe::test
