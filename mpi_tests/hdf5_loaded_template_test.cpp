// The first save after a load (hdf5_loaded_template.hpp): a fresh engine
// that loaded an hdf5 checkpoint of the structure it saves writes that save
// from the loaded file, which loads exactly and reads in h5py; any other
// loaded checkpoint (another world size or structure, another engine's, an
// older manifest, a file changed or removed since) gives a full save.
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "engines/hdf5/h5_types.hpp"
#include "floe/checkpoint.hpp"
#include "hdf5_test_support.hpp"

namespace floe::test {
namespace {

// The test state plus 8 small tensors for the batched write and one large
// one (build_template_state), every shard filled with `byte` (0: the
// expected values).
void build_state(State& state, int rank, int size, Partition partition,
                 unsigned char byte = 0) {
  build_template_state(state, rank, size, partition, 8, byte);
}

const Hdf5Engine& hdf5_of(const CheckpointEngine& engine) {
  return dynamic_cast<const Hdf5Engine&>(engine);
}

// Collective over `comm`: a trainer whose state (every byte 0x5a, lr 1.0)
// `engine` saves as global_step_<step> in `dir`.
struct FirstRun {
  FirstRun(const fs::path& dir, std::int64_t step,
           MPI_Comm comm = MPI_COMM_WORLD, const std::string& engine = "hdf5")
      : trainer(comm) {
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    build_state(trainer.state(), rank, size, Partition::kMixed, 0x5a);
    trainer.state().set_scalar("lr", 1.0);
    trainer.progress_now.global_step = step;
    make_test_engine(trainer, engine, dir)->save();
  }
  SimpleTrainer trainer;
};

// A trainer that starts again: a fresh hdf5 engine (options `extra`) loads
// `checkpoint` under another partition than the one that saved it.
struct Resumed {
  Resumed(const fs::path& dir, const fs::path& checkpoint,
          nlohmann::json extra = {}) {
    build_state(trainer.state(), rank, size, Partition::kFlat, 0xab);
    engine = make_test_engine(trainer, "hdf5", dir, std::move(extra));
    engine->load(checkpoint);
  }
  // Collective: the expected values, a scalar and metadata the loaded
  // checkpoint lacks, saved as global_step_<step>; whether that save was
  // written from a template.
  bool save_expected_at(std::int64_t step) {
    for (auto& shard : trainer.state().tensors()) fill_expected(shard);
    trainer.state().set_scalar("lr", 0.00025);
    trainer.state().set_scalar("resumed", std::int64_t{step});
    trainer.state().metadata() = {{"resumed_at", step}};
    trainer.progress_now.global_step = step;
    engine->save();
    engine->wait();
    return hdf5_of(*engine).last_save_reused_structure();
  }
  const int rank = world_rank();
  const int size = world_size();
  SimpleTrainer trainer;
  std::unique_ptr<CheckpointEngine> engine;
};

// Collective: `checkpoint` holds the expected values, Resumed's scalars and
// metadata of `step`, loads exactly under a third partition and passes
// verify_checkpoint.
::testing::AssertionResult holds_resumed_save(const fs::path& dir,
                                              const fs::path& checkpoint,
                                              std::int64_t step,
                                              const LoadOptions& options = {}) {
  SimpleTrainer loaded;
  build_state(loaded.state(), world_rank(), world_size(), Partition::kDim0,
              0xcd);
  const Manifest manifest =
      make_test_engine(loaded, "hdf5", dir)->load(checkpoint, options);
  if (manifest.step != step) return ::testing::AssertionFailure() << "step";
  auto values = state_holds_expected(loaded.state());
  if (!values) return values;
  if (loaded.state().scalar("resumed") != Scalar{std::int64_t{step}} ||
      loaded.state().scalar("lr") != Scalar{0.00025}) {
    return ::testing::AssertionFailure() << "scalars of " << checkpoint;
  }
  if (loaded.state().metadata() != nlohmann::json{{"resumed_at", step}}) {
    return ::testing::AssertionFailure() << "metadata of " << checkpoint;
  }
  const VerifyReport report = verify_checkpoint(checkpoint, MPI_COMM_WORLD);
  if (!report.ok())
    return ::testing::AssertionFailure() << "verify " << checkpoint;
  return ::testing::AssertionSuccess();
}

TEST(Hdf5LoadedTemplate, FirstSaveAfterALoadIsWrittenFromTheLoadedFile) {
  TempDir dir;
  FirstRun(dir.path(), 1);
  {
    // A file made in full: the template is its structure as saved.
    Resumed resumed(dir.path(), dir.path() / "global_step_1");
    EXPECT_TRUE(resumed.save_expected_at(2));
  }
  EXPECT_TRUE(holds_resumed_save(dir.path(), dir.path() / "global_step_2", 2));
  {
    // A file written from a template (its attributes rewritten): its
    // manifest names the structure it ended with.
    Resumed resumed(dir.path(), dir.path() / "global_step_2");
    EXPECT_TRUE(resumed.save_expected_at(3));
    // Later saves keep using it.
    EXPECT_TRUE(resumed.save_expected_at(4));
  }
  for (std::int64_t step = 3; step <= 4; ++step) {
    EXPECT_TRUE(holds_resumed_save(
        dir.path(), dir.path() / ("global_step_" + std::to_string(step)),
        step));
  }
  // The loaded checkpoints are untouched by the saves that copied them.
  SimpleTrainer first;
  build_state(first.state(), world_rank(), world_size(), Partition::kDim0,
              0xcd);
  make_test_engine(first, "hdf5", dir.path())
      ->load(dir.path() / "global_step_1");
  for (const auto& shard : first.state().tensors()) {
    const auto* p = reinterpret_cast<const unsigned char*>(shard.data());
    for (std::uint64_t i = 0; i < shard.nbytes(); ++i) ASSERT_EQ(p[i], 0x5a);
  }
}

TEST(Hdf5LoadedTemplate, H5pyReadsTheFirstSaveAfterALoad) {
  TempDir dir;
  FirstRun(dir.path(), 1);
  Resumed resumed(dir.path(), dir.path() / "global_step_1");
  ASSERT_TRUE(resumed.save_expected_at(2));
  SimpleTrainer loaded;
  build_state(loaded.state(), world_rank(), world_size(), Partition::kDim0,
              0xcd);
  const Manifest manifest = make_test_engine(loaded, "hdf5", dir.path())
                                ->load(dir.path() / "global_step_2");
  if (world_rank() != 0) return;  // no collectives follow
  if (!have_h5py()) GTEST_SKIP() << "no /usr/bin/python3 with h5py";
  nlohmann::json expected = {
      {"tensors", h5py_expected_tensors(manifest)},
      {"scalars", {{"lr", 0.00025}, {"resumed", 2}, {"optimizer_steps", 1234}}},
      {"blobs", nlohmann::json::object()},
      {"world_size", world_size()}};
  const fs::path file = dir.path() / "global_step_2" / "checkpoint.h5";
  EXPECT_TRUE(h5py_reads(file, expected, dir.path()));
  // The resumed save's metadata, not the loaded checkpoint's.
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  EXPECT_EQ(nlohmann::json::parse(h5::read_string_attribute(
                f, "floe_metadata", file.string(), ErrorCode::kCorrupt)),
            (nlohmann::json{{"resumed_at", 2}}));
  H5Fclose(f);
}

TEST(Hdf5LoadedTemplate, AsynchronousFirstSaveUsesTheLoadedFile) {
  TempDir dir;
  FirstRun(dir.path(), 1);
  Resumed resumed(dir.path(), dir.path() / "global_step_1", {{"async", true}});
  EXPECT_TRUE(resumed.save_expected_at(2));
  EXPECT_TRUE(holds_resumed_save(dir.path(), dir.path() / "global_step_2", 2));
}

TEST(Hdf5LoadedTemplate, ACheckpointOfAnotherWorldSizeGivesAFullSave) {
  if (world_size() < 2) GTEST_SKIP() << "needs 2 ranks";
  TempDir dir;
  {
    SubComm one(1);
    if (one.member()) FirstRun(dir.path(), 1, one.get());
  }
  MPI_Barrier(MPI_COMM_WORLD);
  Resumed resumed(dir.path(), dir.path() / "global_step_1");
  EXPECT_FALSE(resumed.save_expected_at(2));
  EXPECT_TRUE(holds_resumed_save(dir.path(), dir.path() / "global_step_2", 2));
}

TEST(Hdf5LoadedTemplate,
     AChangedStructureGivesAFullSaveThatBecomesTheTemplate) {
  TempDir dir;
  FirstRun(dir.path(), 1);
  Resumed resumed(dir.path(), dir.path() / "global_step_1");
  resumed.trainer.state().add_model("model.extra", DType::kI32, {6},
                                    replicated_whole({6}));
  EXPECT_FALSE(resumed.save_expected_at(2));
  EXPECT_TRUE(resumed.save_expected_at(3));
  LoadOptions without_extra;
  without_extra.allow_extra_tensors = true;
  EXPECT_TRUE(holds_resumed_save(dir.path(), dir.path() / "global_step_2", 2,
                                 without_extra));
}

TEST(Hdf5LoadedTemplate, ABlobOfAnotherSizeGivesAFullSave) {
  // The same datasets, one of another size: only the structure's hash
  // tells (the file itself is intact).
  TempDir dir;
  FirstRun(dir.path(), 1);
  Resumed resumed(dir.path(), dir.path() / "global_step_1");
  if (resumed.rank == resumed.size - 1) {
    resumed.trainer.state().set_blob("rng", std::vector<std::uint8_t>(3000, 9));
  }
  EXPECT_FALSE(resumed.save_expected_at(2));
  EXPECT_TRUE(holds_resumed_save(dir.path(), dir.path() / "global_step_2", 2));
  SimpleTrainer loaded;
  build_state(loaded.state(), resumed.rank, resumed.size, Partition::kDim0,
              0xcd);
  make_test_engine(loaded, "hdf5", dir.path())
      ->load(dir.path() / "global_step_2");
  EXPECT_EQ(*loaded.state().blob("rng"), *resumed.trainer.state().blob("rng"));
}

TEST(Hdf5LoadedTemplate, AnMpiioCheckpointGivesAFullSave) {
  TempDir dir;
  FirstRun(dir.path(), 1, MPI_COMM_WORLD, "mpiio");
  Resumed resumed(dir.path(), dir.path() / "global_step_1");
  EXPECT_FALSE(resumed.save_expected_at(2));
  EXPECT_TRUE(holds_resumed_save(dir.path(), dir.path() / "global_step_2", 2));
}

TEST(Hdf5LoadedTemplate, AManifestWithoutTheStructureGivesAFullSave) {
  TempDir dir;
  FirstRun(dir.path(), 1);
  const fs::path checkpoint = dir.path() / "global_step_1";
  on_rank0_then_barrier([&] {
    // As an earlier Floe wrote it: no structure members, a valid checksum.
    Manifest manifest = Manifest::read(checkpoint);
    ASSERT_TRUE(manifest.engine_info.contains("template_xxh3"));
    for (const char* key :
         {"structure_xxh3", "template_xxh3", "blob_storage_offsets"})
      manifest.engine_info.erase(key);
    std::ofstream(checkpoint / "manifest.json") << manifest.dump();
  });
  Resumed resumed(dir.path(), checkpoint);
  EXPECT_FALSE(resumed.save_expected_at(2));
  EXPECT_TRUE(holds_resumed_save(dir.path(), dir.path() / "global_step_2", 2));
}

TEST(Hdf5LoadedTemplate, AFileDamagedAfterTheLoadGivesAFullSave) {
  TempDir dir;
  FirstRun(dir.path(), 1);
  const fs::path checkpoint = dir.path() / "global_step_1";
  Resumed resumed(dir.path(), checkpoint);
  if (world_rank() == 0) {
    // The byte before the first storage: outside every dataset's data, in
    // the structure bytes (or the zeros between them) a template copies.
    const Manifest manifest = Manifest::read(checkpoint);
    std::uint64_t first = ~std::uint64_t{0};
    for (const auto& tensor : manifest.tensors) {
      if (tensor.spec.nbytes() > 0)
        first = std::min(first, *tensor.storage_offset);
    }
    std::fstream file(checkpoint / "checkpoint.h5",
                      std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(static_cast<std::streamoff>(first - 1));
    const char byte = static_cast<char>(file.get() ^ 0x40);
    file.seekp(static_cast<std::streamoff>(first - 1));
    file.put(byte);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_FALSE(resumed.save_expected_at(2));
  EXPECT_TRUE(holds_resumed_save(dir.path(), dir.path() / "global_step_2", 2));
}

TEST(Hdf5LoadedTemplate, ACheckpointRemovedAfterTheLoadGivesAFullSave) {
  TempDir dir;
  FirstRun(dir.path(), 1);
  Resumed resumed(dir.path(), dir.path() / "global_step_1");
  if (world_rank() == 0) fs::remove_all(dir.path() / "global_step_1");
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_FALSE(resumed.save_expected_at(2));
  EXPECT_TRUE(holds_resumed_save(dir.path(), dir.path() / "global_step_2", 2));
}

TEST(Hdf5LoadedTemplate, OptionOffSavesInFull) {
  TempDir dir;
  FirstRun(dir.path(), 1);
  Resumed resumed(dir.path(), dir.path() / "global_step_1",
                  {{"reuse_structure", false}});
  EXPECT_FALSE(resumed.save_expected_at(2));
  // Nor does its manifest offer the file as a template (nothing was read
  // back to hash).
  if (world_rank() == 0) {
    EXPECT_FALSE(Manifest::read(dir.path() / "global_step_2")
                     .engine_info.contains("template_xxh3"));
  }
}

}  // namespace
}  // namespace floe::test
