// The commit protocol seen from the disk: what a save leaves, what a failed
// save leaves (nothing, and the previous checkpoint intact), retention,
// recovery of interrupted saves, corruption detection and auto-resume.
#include <sys/stat.h>

#include <algorithm>
#include <fstream>

#include "commit/paths.hpp"
#include "engine_fixture.hpp"
#include "io/faulty_file_system.hpp"

namespace floe::test {
namespace {

namespace fs = std::filesystem;

// A trainer holding the full test state at this job's world size.
using Rig = EngineRig;

class CommitProtocol : public ::testing::TestWithParam<std::string> {};

TEST_P(CommitProtocol, SaveLeavesManifestLatestAndNoStaging) {
  TempDir tmp;
  Rig rig(tmp / "ckpt", GetParam());
  rig.save_at(7);
  const fs::path dir = tmp / "ckpt";
  EXPECT_EQ(slurp(dir / "latest"), "global_step_7\n");
  EXPECT_EQ(listing(dir), "global_step_7 latest ");
  EXPECT_TRUE(fs::exists(dir / "global_step_7" / "manifest.json"));
  EXPECT_EQ(rig.engine->checkpoint_dir(), dir / "global_step_7");
  EXPECT_TRUE(rig.engine->latest_checkpoint_exists());
  const Manifest m = Manifest::read(dir / "global_step_7");
  EXPECT_EQ(m.step, 7);
  EXPECT_EQ(m.world_size, world_size());
  EXPECT_EQ(m.engine, GetParam());
  EXPECT_EQ(m.format_version, Manifest::kFormatVersion);
  for (const auto& f : m.files) {
    EXPECT_EQ(fs::file_size(dir / "global_step_7" / f.path), f.size) << f.path;
  }
  // Replicated tensors are written once, by rank 0.
  const TensorRecord* bias = m.find("model/model.bias");
  ASSERT_NE(bias, nullptr);
  ASSERT_EQ(bias->pieces.size(), 1u);
  EXPECT_EQ(bias->pieces[0].rank, 0);
  EXPECT_EQ(m.blobs.size(), static_cast<std::size_t>(world_size()));
}

// Rank 0 deletes what retention renamed aside in the background: wait()
// for it (every rank) before looking at the directory.
void wait_for_retention(CheckpointEngine& engine) {
  engine.wait();
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST_P(CommitProtocol, RetentionKeepsNewestAndTheLoadedOne) {
  TempDir tmp;
  Rig rig(tmp / "ckpt", GetParam(), {{"keep_last_n", 2}});
  for (int step = 1; step <= 4; ++step) rig.save_at(step);
  wait_for_retention(*rig.engine);
  EXPECT_EQ(listing(tmp / "ckpt"), "global_step_3 global_step_4 latest ");
  rig.engine->load(tmp / "ckpt" / "global_step_3");
  rig.save_at(5);
  rig.save_at(6);  // 3 was loaded: kept though it is older than the newest two
  wait_for_retention(*rig.engine);
  EXPECT_EQ(listing(tmp / "ckpt"), "global_step_3 global_step_5 global_step_6 latest ");
}

TEST_P(CommitProtocol, SavingAStepAgainReplacesIt) {
  TempDir tmp;
  Rig rig(tmp / "ckpt", GetParam());
  rig.save_at(3);
  rig.trainer.state().set_scalar("lr", 0.5);
  rig.save_at(3);
  wait_for_retention(*rig.engine);  // the replaced one is deleted so
  EXPECT_EQ(listing(tmp / "ckpt"), "global_step_3 latest ");
  EXPECT_EQ(Manifest::read(tmp / "ckpt" / "global_step_3").scalars["lr"], 0.5);
}

TEST_P(CommitProtocol, InterruptedSaveLeftoversAreRemovedAtStart) {
  TempDir tmp;
  {
    Rig rig(tmp / "ckpt", GetParam());
    rig.save_at(2);
  }
  if (world_rank() == 0) {  // what a save killed mid-way leaves behind
    fs::create_directories(tmp / "ckpt" / ".staging-global_step_3");
    std::ofstream(tmp / "ckpt" / ".staging-global_step_3" / "data.bin") << "partial";
    fs::create_directories(tmp / "ckpt" / ".deleting-global_step_1");
  }
  MPI_Barrier(MPI_COMM_WORLD);
  Rig rig(tmp / "ckpt", GetParam());
  EXPECT_TRUE(rig.engine->latest_checkpoint_exists());
  const auto m = rig.engine->resume();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->step, 2);
  EXPECT_EQ(listing(tmp / "ckpt"), "global_step_2 latest ");
}

// A fault on one rank (or rank 0's coordinator) must raise the same error
// on every rank, remove the staging directory and leave `latest` and the
// previous checkpoint as they were.
void expect_clean_failure(const std::string& engine, FsOp op,
                          const std::string& path_part, int faulty_rank) {
  TempDir tmp;
  Rig rig(tmp / "ckpt", engine);
  rig.save_at(1);
  const std::string before = listing(tmp / "ckpt");
  auto faulty = std::make_shared<FaultyFileSystem>();
  if (world_rank() == faulty_rank) faulty->add_rule({op, path_part, ENOSPC, 0, -1});
  rig.engine->set_file_system(faulty);
  const Caught caught = catch_error([&] { rig.save_at(2); });
  EXPECT_TRUE(is_error(caught, ErrorCode::kIo, {"No space left on device"}))
      << fs_op_name(op) << " " << path_part;
  EXPECT_TRUE(same_on_all_ranks(caught.message));
  EXPECT_EQ(listing(tmp / "ckpt"), before) << fs_op_name(op) << " " << path_part;
  EXPECT_EQ(slurp(tmp / "ckpt" / "latest"), "global_step_1\n");
  EXPECT_TRUE(verify_checkpoint(tmp / "ckpt" / "global_step_1", MPI_COMM_WORLD).ok());
}

TEST_P(CommitProtocol, DataWriteFailureOnAnyRankFailsAllCleanly) {
  for (int rank = 0; rank < world_size(); ++rank) {
    run_within(std::chrono::seconds(60), [&] {
      expect_clean_failure(GetParam(), FsOp::kDataWrite, "", rank);
    });
  }
}

TEST_P(CommitProtocol, CoordinatorFailuresBeforeTheRenameFailCleanly) {
  const std::vector<std::pair<FsOp, std::string>> sites = {
      {FsOp::kCreateDirectories, ".staging-"},
      {FsOp::kFsyncFile, ".staging-"},
      {FsOp::kWriteFile, "manifest.json"},
      {FsOp::kRename, "manifest.json"},
      {FsOp::kRename, "global_step_2"},
  };
  for (const auto& [op, part] : sites) {
    run_within(std::chrono::seconds(60),
               [&] { expect_clean_failure(GetParam(), op, part, 0); });
  }
}

TEST_P(CommitProtocol, LatestWriteFailureKeepsThePreviousLatest) {
  TempDir tmp;
  Rig rig(tmp / "ckpt", GetParam());
  rig.save_at(1);
  auto faulty = std::make_shared<FaultyFileSystem>();
  faulty->add_rule({FsOp::kWriteFile, "latest", EIO, 0, 1});
  rig.engine->set_file_system(faulty);
  EXPECT_TRUE(throws_error([&] { rig.save_at(2); }, ErrorCode::kIo,
                           {"latest", "Input/output error"}));
  EXPECT_EQ(slurp(tmp / "ckpt" / "latest"), "global_step_1\n");
  // The next save goes through and moves `latest` on.
  rig.save_at(3);
  EXPECT_EQ(slurp(tmp / "ckpt" / "latest"), "global_step_3\n");
}

TEST_P(CommitProtocol, FlippedByteIsDetectedAndResumeFallsBack) {
  TempDir tmp;
  Rig rig(tmp / "ckpt", GetParam());
  rig.save_at(1);
  rig.save_at(2);
  const fs::path bad = tmp / "ckpt" / "global_step_2";
  const Manifest m = Manifest::read(bad);
  const TensorRecord* t = m.find("model/model.embed.weight");
  ASSERT_NE(t, nullptr);
  on_rank0_then_barrier([&] {
    // Flip a byte inside the first piece of a tensor: mpiio records the
    // piece's offset, hdf5 the dataset's (storage_offset; the first piece
    // starts there).
    ASSERT_TRUE(GetParam() == "mpiio" || t->storage_offset.has_value());
    flip_byte(bad / t->pieces[0].file,
              (GetParam() == "mpiio" ? t->pieces[0].offset : *t->storage_offset) + 3);
  });
  const VerifyReport report = verify_checkpoint(bad, MPI_COMM_WORLD);
  ASSERT_FALSE(report.ok());
  // A flipped data byte is a checksum mismatch naming the file and tensor.
  EXPECT_NE(report.problems[0].find(t->pieces[0].file), std::string::npos)
      << report.problems[0];
  EXPECT_TRUE(throws_error([&] { rig.engine->load(bad); }, ErrorCode::kCorrupt,
                           {"checksum mismatch", t->pieces[0].file, "model.embed.weight"}));
  std::vector<std::string> warnings;
  set_log_sink([&](LogLevel, const std::string& m) { warnings.push_back(m); });
  Rig fresh(tmp / "ckpt", GetParam());
  const auto resumed = fresh.engine->resume();
  set_log_sink(nullptr);
  ASSERT_TRUE(resumed.has_value());
  EXPECT_EQ(resumed->step, 1);
  EXPECT_TRUE(state_holds_expected(fresh.trainer.state()));
  EXPECT_EQ(listing(tmp / "ckpt"), "global_step_1 global_step_2.corrupt latest ");
  EXPECT_EQ(slurp(tmp / "ckpt" / "latest"), "global_step_1\n");
  if (world_rank() == 0) {
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find("skipped checkpoint global_step_2"), std::string::npos)
        << warnings[0];
  }
}

TEST_P(CommitProtocol, TruncatedFileIsNamed) {
  TempDir tmp;
  Rig rig(tmp / "ckpt", GetParam());
  rig.save_at(1);
  const fs::path dir = tmp / "ckpt" / "global_step_1";
  const Manifest m = Manifest::read(dir);
  const fs::path file = dir / m.files.at(0).path;
  if (world_rank() == 0) fs::resize_file(file, m.files[0].size - 10);
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(throws_error([&] { rig.engine->load(dir); }, ErrorCode::kCorrupt,
                           {file.string(), "truncated"}));
  EXPECT_TRUE(throws_error([&] { (void)verify_checkpoint(dir, MPI_COMM_WORLD); },
                           ErrorCode::kCorrupt, {"truncated"}));
}

TEST_P(CommitProtocol, BadCheckpointDirectoriesGiveClearErrors) {
  TempDir tmp;
  Rig rig(tmp / "ckpt", GetParam());
  EXPECT_TRUE(throws_error([&] { rig.engine->load(); }, ErrorCode::kNotFound,
                           {"has no `latest`"}));
  EXPECT_FALSE(rig.engine->latest_checkpoint_exists());
  EXPECT_FALSE(rig.engine->resume().has_value());
  if (world_rank() == 0) fs::create_directories(tmp / "ckpt" / "global_step_9");
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(throws_error([&] { rig.engine->load(tmp / "ckpt" / "global_step_9"); },
                           ErrorCode::kNotFound, {"no manifest.json"}));
  rig.save_at(4);
  const fs::path dir = tmp / "ckpt" / "global_step_4";
  if (world_rank() == 0) {
    auto j = nlohmann::json::parse(slurp(dir / "manifest.json"));
    j["format_version"] = Manifest::kFormatVersion + 1;
    std::ofstream(dir / "manifest.json") << j.dump();
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(throws_error([&] { rig.engine->load(dir); }, ErrorCode::kUnsupported,
                           {"format version " + std::to_string(Manifest::kFormatVersion + 1),
                            "upgrade Floe"}));
}

TEST_P(CommitProtocol, StateMismatchesNameTheTensor) {
  TempDir tmp;
  {
    Rig rig(tmp / "ckpt", GetParam());
    rig.save_at(1);
  }
  {
    SimpleTrainer t;
    build_test_state(t.state(), world_rank(), world_size(), Partition::kDim0);
    t.state().add_model("model.extra", DType::kF32, {4}, replicated_whole({4}));
    EXPECT_TRUE(throws_error([&] { make_test_engine(t, GetParam(), tmp / "ckpt")->load(); },
                             ErrorCode::kMismatch, {"model/model.extra", "not in checkpoint"}));
  }
  {
    SimpleTrainer t;
    t.state().add_model("model.bias", DType::kF64, {13}, replicated_whole({13}));
    EXPECT_TRUE(throws_error([&] { make_test_engine(t, GetParam(), tmp / "ckpt")->load(); },
                             ErrorCode::kMismatch, {"model/model.bias", "F64[12]", "F64[13]"}));
  }
  {
    SimpleTrainer t;
    t.state().add_model("model.bias", DType::kF64, {12}, replicated_whole({12}));
    EXPECT_TRUE(throws_error([&] { make_test_engine(t, GetParam(), tmp / "ckpt")->load(); },
                             ErrorCode::kMismatch, {"that no rank's state has"}));
    LoadOptions options;
    options.allow_extra_tensors = true;
    make_test_engine(t, GetParam(), tmp / "ckpt")->load(std::nullopt, options);
    EXPECT_TRUE(holds_expected(t.state().tensors()[0]));
  }
}

// Records every FileSystem::reserve call, then reserves as the real file
// system would (or fails as the armed rules say).
class ReserveRecorder : public FaultyFileSystem {
 public:
  struct Call {
    fs::path path;
    std::uint64_t offset, bytes;
  };
  std::vector<Call> calls;
  void reserve(const fs::path& p, std::uint64_t offset, std::uint64_t bytes) override {
    calls.push_back({p, offset, bytes});
    FaultyFileSystem::reserve(p, offset, bytes);
  }
};

// Ranks writing pieces of one data file at once would leave it in small
// extents out of file order (slower to read back), so rank 0 reserves the
// range every tensor's bytes lie in, once, in the staging directory,
// before the writes; the checkpoint is the same as ever.
TEST_P(CommitProtocol, RankZeroReservesTheDataFileOnceBeforeTheWrites) {
  TempDir tmp;
  Rig rig(tmp / "ckpt", GetParam());
  auto recorder = std::make_shared<ReserveRecorder>();
  rig.engine->set_file_system(recorder);
  rig.save_at(1);
  const fs::path dir = tmp / "ckpt" / "global_step_1";
  EXPECT_TRUE(verify_checkpoint(dir, MPI_COMM_WORLD).ok());
  if (world_rank() != 0) {
    EXPECT_TRUE(recorder->calls.empty());
    return;
  }
  ASSERT_EQ(recorder->calls.size(), 1u);
  const ReserveRecorder::Call& call = recorder->calls[0];
  EXPECT_EQ(call.path.parent_path().filename(), ".staging-global_step_1");
  const Manifest m = Manifest::read(dir);
  const auto file = std::find_if(m.files.begin(), m.files.end(), [&](const auto& f) {
    return f.path == call.path.filename().string();
  });
  ASSERT_NE(file, m.files.end()) << call.path;
  EXPECT_LE(call.offset + call.bytes, file->size);
  std::uint64_t tensor_bytes = 0;
  for (const TensorRecord& t : m.tensors) {
    tensor_bytes += t.spec.nbytes();
    if (t.storage_offset && t.spec.nbytes() > 0) {  // hdf5: inside the range
      EXPECT_GE(*t.storage_offset, call.offset) << t.spec.name;
      EXPECT_LE(*t.storage_offset + t.spec.nbytes(), call.offset + call.bytes) << t.spec.name;
    }
  }
  EXPECT_GE(call.bytes, tensor_bytes);
  if (GetParam() == "mpiio") {  // the whole file: every rank's extent
    EXPECT_EQ(call.offset, 0u);
    EXPECT_EQ(call.bytes, file->size);
  }
}

// A full disk met while reserving fails the save on every rank with the
// error naming the file, and leaves the previous checkpoint and `latest`.
TEST_P(CommitProtocol, FullDiskWhileReservingFailsAllCleanly) {
  run_within(std::chrono::seconds(60), [&] {
    TempDir tmp;
    Rig rig(tmp / "ckpt", GetParam());
    rig.save_at(1);
    const std::string before = listing(tmp / "ckpt");
    auto faulty = std::make_shared<FaultyFileSystem>();
    if (world_rank() == 0) faulty->add_rule({FsOp::kReserve, "", ENOSPC, 0, -1});
    rig.engine->set_file_system(faulty);
    const Caught caught = catch_error([&] { rig.save_at(2); });
    const std::string file = GetParam() == "mpiio" ? "data.bin" : "checkpoint.h5";
    EXPECT_TRUE(is_error(caught, ErrorCode::kIo,
                         {"cannot reserve space for", ".staging-global_step_2/" + file,
                          "No space left on device"}));
    EXPECT_TRUE(same_on_all_ranks(caught.message));
    if (world_rank() == 0) {
      EXPECT_EQ(faulty->injected(), 1);
    }
    EXPECT_EQ(listing(tmp / "ckpt"), before);
    EXPECT_EQ(slurp(tmp / "ckpt" / "latest"), "global_step_1\n");
    EXPECT_TRUE(verify_checkpoint(tmp / "ckpt" / "global_step_1", MPI_COMM_WORLD).ok());
  });
}

// The real file system's reserve: blocks allocated, size unchanged; a
// missing file is left to the writes (nothing thrown, nothing created).
TEST_P(CommitProtocol, TracePhasesLogsEachRanksSteps) {
  TempDir tmp;
  std::vector<std::string> lines;
  set_log_sink([&](LogLevel level, const std::string& m) {
    if (level == LogLevel::kInfo && m.rfind("trace ", 0) == 0) lines.push_back(m);
  });
  {
    Rig quiet(tmp / "quiet", GetParam());  // trace_phases is off by default
    quiet.save_at(1);
    quiet.engine->load();
  }
  Rig rig(tmp / "ckpt", GetParam(), {{"trace_phases", true}});
  rig.save_at(4);
  rig.engine->load();
  rig.save_at(5);  // the same tensors and regions: the layout is kept
  set_log_sink(nullptr);
  ASSERT_EQ(lines.size(), 3u) << (lines.empty() ? "" : lines[0]);
  EXPECT_NE(lines[2].find(" layout (kept) "), std::string::npos) << lines[2];
  EXPECT_EQ(lines[0].find("(kept)"), std::string::npos) << lines[0];
  const std::string me = "trace rank " + std::to_string(world_rank()) + " ";
  EXPECT_EQ(lines[0].rfind(me + "save global_step_4: retention wait ", 0), 0u) << lines[0];
  for (const char* step : {" layout ", " begin ", " write ", " commit ", " total "}) {
    EXPECT_NE(lines[0].find(step), std::string::npos) << step << " in " << lines[0];
  }
  // Rank 0 writes the manifest.
  EXPECT_EQ(lines[0].find("commit: manifest write ") != std::string::npos,
            world_rank() == 0) << lines[0];
  EXPECT_EQ(lines[1].rfind(me + "load: ", 0), 0u) << lines[1];
  for (const char* step : {" manifest read ", " manifest parse ", " match ",
                           " read, check ", " total "}) {
    EXPECT_NE(lines[1].find(step), std::string::npos) << step << " in " << lines[1];
  }
}

// The engine keeps the last save's layout while the ranks' tensors and
// regions stay the same; a save after they changed records the new ones.
TEST_P(CommitProtocol, ASaveAfterThePartitionChangedRecordsTheNewOne) {
  TempDir tmp;
  Rig rig(tmp / "ckpt", GetParam());
  rig.save_at(1);
  State flat;
  build_test_state(flat, world_rank(), world_size(), Partition::kFlat);
  rig.trainer.state() = std::move(flat);
  rig.save_at(2);
  const Manifest before = Manifest::read(tmp / "ckpt" / "global_step_1");
  const Manifest after = Manifest::read(tmp / "ckpt" / "global_step_2");
  const TensorRecord* weight = after.find("model/model.embed.weight");
  ASSERT_NE(weight, nullptr);
  for (const auto& piece : weight->pieces) {
    EXPECT_EQ(piece.region.kind(), Region::Kind::kFlatRange) << piece.region.to_string();
  }
  EXPECT_EQ(before.find("model/model.embed.weight")->pieces[0].region.kind(),
            Region::Kind::kBox);
  Rig fresh(tmp / "other", GetParam());  // the mixed partition again
  fresh.engine->load(tmp / "ckpt" / "global_step_2");
  EXPECT_TRUE(state_holds_expected(fresh.trainer.state()));
}

TEST(PosixReserve, AllocatesBlocksWithoutChangingTheSize) {
  TempDir tmp;
  const fs::path file = tmp / ("rank" + std::to_string(world_rank()) + ".bin");
  std::ofstream(file) << "header";
  constexpr std::uint64_t kBytes = 8u << 20;
  posix_file_system()->reserve(file, 4096, kBytes);
  EXPECT_EQ(fs::file_size(file), 6u);
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_GE(static_cast<std::uint64_t>(st.st_blocks) * 512, kBytes);  // ext4, xfs, tmpfs
  EXPECT_NO_THROW(posix_file_system()->reserve(tmp / "missing.bin", 0, kBytes));
  EXPECT_FALSE(fs::exists(tmp / "missing.bin"));
}

INSTANTIATE_TEST_SUITE_P(Engines, CommitProtocol, ::testing::ValuesIn(resumable_engines()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace floe::test
