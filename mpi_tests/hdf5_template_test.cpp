// Later saves of the same structure (hdf5_template.hpp): written from the
// previous save's file structure, they load exactly, h5py reads them like a
// file made in full, a changed structure is saved in full, and the option
// turns it off.
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "engines/hdf5/h5_types.hpp"
#include "engines/hdf5/hdf5_loaded_template.hpp"
#include "floe/checkpoint.hpp"
#include "hdf5_test_support.hpp"
#include "io/checksum.hpp"
#include "io/faulty_file_system.hpp"

namespace floe::test {
namespace {

// The test state plus 24 small tensors for the batched write and one large
// one (build_template_state), at their expected values.
void build_state(State& state, int rank, int size, Partition partition) {
  build_template_state(state, rank, size, partition, 24);
}

// Every byte of every shard is `byte`; scalars, metadata and the blob
// differ from build_test_state's (the blob keeps its size).
void make_first_save_differ(State& state, int rank) {
  for (auto& shard : state.tensors())
    std::memset(shard.data(), 0x5a, shard.nbytes());
  state.set_scalar("lr", 1.0);
  state.metadata() = {{"save", 1}};
  state.set_blob("rng", std::vector<std::uint8_t>(100 + rank, 0x11));
}

// Back to what build_state made: expected values, build_test_state's
// scalars, metadata and blob.
void make_state_expected(State& state, int rank) {
  for (auto& shard : state.tensors()) fill_expected(shard);
  state.set_scalar("lr", 0.00025);
  state.metadata() = {{"run", "test"}, {"layers", {1, 2, 3}}};
  std::vector<std::uint8_t> rng(100 + rank);
  for (std::size_t i = 0; i < rng.size(); ++i)
    rng[i] = static_cast<std::uint8_t>(i * 7 + rank);
  state.set_blob("rng", std::move(rng));
}

bool all_bytes_are(const State& state, unsigned char byte) {
  for (const auto& shard : state.tensors()) {
    const auto* p = reinterpret_cast<const unsigned char*>(shard.data());
    for (std::uint64_t i = 0; i < shard.nbytes(); ++i) {
      if (p[i] != byte) return false;
    }
  }
  return true;
}

// A trainer holding build_state's state (mixed partition) and an hdf5
// engine with options `extra` saving it into `dir`.
struct Saving {
  explicit Saving(const fs::path& dir, nlohmann::json extra = {}) {
    build_state(trainer.state(), rank, size, Partition::kMixed);
    engine = make_test_engine(trainer, "hdf5", dir, std::move(extra));
  }
  // Collective: saves the state as the checkpoint of `step`.
  void save_at(std::int64_t step) {
    trainer.progress_now.global_step = step;
    engine->save();
  }
  // Whether the last save was written from the template (after wait() when
  // it was asynchronous).
  bool reused() const {
    return dynamic_cast<const Hdf5Engine&>(*engine)
        .last_save_reused_structure();
  }
  const int rank = world_rank();
  const int size = world_size();
  SimpleTrainer trainer;
  std::unique_ptr<CheckpointEngine> engine;
};

// A fresh trainer loading `checkpoint` under another partition.
struct Loaded {
  explicit Loaded(const fs::path& dir, const fs::path& checkpoint) {
    build_state(trainer.state(), world_rank(), world_size(), Partition::kFlat);
    for (auto& shard : trainer.state().tensors()) {
      std::memset(shard.data(), 0xab, shard.nbytes());
    }
    manifest = make_test_engine(trainer, "hdf5", dir)->load(checkpoint);
  }
  SimpleTrainer trainer;
  Manifest manifest;
};

// The image hash a checkpoint's manifest should record (template_xxh3),
// worked out from the file alone (reference_image): the storage is every
// tensor's and blob's as the manifest places it. Sets `outside` to how many
// bytes lie outside the storage.
std::uint64_t expected_image_xxh3(const fs::path& checkpoint,
                                  const Manifest& manifest,
                                  std::uint64_t& outside) {
  const std::string file = slurp(checkpoint / "checkpoint.h5");
  std::vector<bool> storage(file.size(), false);
  const auto mark = [&](std::uint64_t offset, std::uint64_t bytes) {
    for (std::uint64_t i = offset; i < offset + bytes; ++i)
      storage.at(i) = true;
  };
  for (const TensorRecord& tensor : manifest.tensors) {
    if (tensor.spec.nbytes() > 0)
      mark(tensor.storage_offset.value(), tensor.spec.nbytes());
  }
  const nlohmann::json& blob_offsets =
      manifest.engine_info.at(h5::kBlobOffsetsKey);
  EXPECT_EQ(blob_offsets.size(), manifest.blobs.size());
  for (std::size_t b = 0; b < manifest.blobs.size(); ++b) {
    mark(blob_offsets.at(b).get<std::uint64_t>(), manifest.blobs[b].nbytes);
  }
  return reference_image_xxh3(reference_image(file, storage, &outside),
                              file.size());
}

TEST(Hdf5Template, LaterSaveOfTheSameStructureIsWrittenFromItAndLoadsExactly) {
  TempDir dir;
  Saving s(dir.path());
  make_first_save_differ(s.trainer.state(), s.rank);
  s.save_at(1);
  EXPECT_FALSE(s.reused());
  // The state a trainer has one step later: new values, a scalar more,
  // longer metadata, another blob of the same size.
  make_state_expected(s.trainer.state(), s.rank);
  s.trainer.state().set_scalar("added_later", std::int64_t{77});
  s.trainer.state().metadata()["notes"] = std::string(5000, 'n');
  s.save_at(2);
  EXPECT_TRUE(s.reused());

  {
    Loaded second(dir.path(), dir.path() / "global_step_2");
    EXPECT_EQ(second.manifest.step, 2);
    EXPECT_TRUE(state_holds_expected(second.trainer.state()));
    const State& state = second.trainer.state();
    EXPECT_EQ(state.scalar("lr"), Scalar{0.00025});
    EXPECT_EQ(state.scalar("added_later"), Scalar{std::int64_t{77}});
    EXPECT_EQ(state.scalar("scheduler"), Scalar{std::string("cosine")});
    EXPECT_EQ(state.metadata(), s.trainer.state().metadata());
    ASSERT_NE(state.blob("rng"), nullptr);
    EXPECT_EQ(*state.blob("rng"), *s.trainer.state().blob("rng"));
  }
  EXPECT_TRUE(
      verify_checkpoint(dir.path() / "global_step_2", MPI_COMM_WORLD).ok());
  // The first checkpoint is untouched by the second, which copied its
  // structure.
  Loaded first(dir.path(), dir.path() / "global_step_1");
  EXPECT_TRUE(all_bytes_are(first.trainer.state(), 0x5a));
  EXPECT_EQ(first.trainer.state().scalar("lr"), Scalar{1.0});
  EXPECT_EQ(first.trainer.state().metadata(), (nlohmann::json{{"save", 1}}));
}

TEST(Hdf5Template, H5pyReadsAFileWrittenFromTheTemplate) {
  TempDir dir;
  Saving s(dir.path());
  make_first_save_differ(s.trainer.state(), s.rank);
  s.save_at(1);
  make_state_expected(s.trainer.state(), s.rank);
  s.trainer.state().set_scalar("added_later", std::int64_t{77});
  s.save_at(2);
  ASSERT_TRUE(s.reused());
  const Manifest manifest =
      Loaded(dir.path(), dir.path() / "global_step_2").manifest;
  if (s.rank != 0) return;  // no collectives follow
  if (!have_h5py()) GTEST_SKIP() << "no /usr/bin/python3 with h5py";
  nlohmann::json expected = {
      {"tensors", h5py_expected_tensors(manifest)},
      {"scalars",
       {{"lr", 0.00025}, {"added_later", 77}, {"optimizer_steps", 1234}}},
      {"blobs", nlohmann::json::object()},
      {"world_size", s.size}};
  for (int r = 0; r < s.size; ++r) {
    nlohmann::json rng = nlohmann::json::array();
    for (int i = 0; i < 100 + r; ++i)
      rng.push_back(static_cast<std::uint8_t>(i * 7 + r));
    expected["blobs"]["/ranks/" + std::to_string(r) + "/rng"] = rng;
  }
  const fs::path file = dir.path() / "global_step_2" / "checkpoint.h5";
  EXPECT_TRUE(h5py_reads(file, expected, dir.path()));
  // Exactly the second save's scalars: the first's were replaced.
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  const hid_t scalars = H5Gopen2(f, "/scalars", H5P_DEFAULT);
  H5O_info_t info;
  ASSERT_GE(H5Oget_info2(scalars, &info, H5O_INFO_NUM_ATTRS), 0);
  EXPECT_EQ(info.num_attrs, s.trainer.state().scalars().size());
  H5Gclose(scalars);
  // And the second save's metadata: floe_metadata was replaced too (a load
  // takes the metadata from the manifest, so only the file shows it).
  EXPECT_EQ(nlohmann::json::parse(h5::read_string_attribute(
                f, "floe_metadata", file.string(), ErrorCode::kCorrupt)),
            s.trainer.state().metadata());
  H5Fclose(f);
}

TEST(Hdf5Template, AChangedStructureIsSavedInFullAndBecomesTheTemplate) {
  TempDir dir;
  Saving s(dir.path());
  const auto reused_at = [&](std::int64_t step) {
    s.save_at(step);
    return s.reused();
  };
  EXPECT_FALSE(reused_at(1));
  EXPECT_TRUE(reused_at(2));
  // One tensor more.
  s.trainer.state().add_model("model.extra", DType::kI32, {6},
                              replicated_whole({6}));
  fill_expected(*s.trainer.state().find("model/model.extra"));
  EXPECT_FALSE(reused_at(3));
  EXPECT_TRUE(reused_at(4));
  // A blob of another size (on one rank: every rank must see it).
  if (s.rank == s.size - 1) {
    s.trainer.state().set_blob("rng", std::vector<std::uint8_t>(3, 9));
  }
  EXPECT_FALSE(reused_at(5));
  EXPECT_TRUE(reused_at(6));

  SimpleTrainer loaded;
  build_state(loaded.state(), s.rank, s.size, Partition::kFlat);
  loaded.state().add_model("model.extra", DType::kI32, {6},
                           replicated_whole({6}));
  for (auto& shard : loaded.state().tensors())
    std::memset(shard.data(), 0xab, shard.nbytes());
  make_test_engine(loaded, "hdf5", dir.path())
      ->load(dir.path() / "global_step_6");
  EXPECT_TRUE(state_holds_expected(loaded.state()));
  ASSERT_NE(loaded.state().blob("rng"), nullptr);
  EXPECT_EQ(loaded.state().blob("rng")->size(),
            s.rank == s.size - 1 ? 3u : 100u + s.rank);
}

TEST(Hdf5Template, OptionOffSavesInFullEveryTime) {
  TempDir dir;
  Saving s(dir.path(), {{"reuse_structure", false}});
  for (std::int64_t step = 1; step <= 2; ++step) {
    s.save_at(step);
    EXPECT_FALSE(s.reused());
  }
  Loaded second(dir.path(), dir.path() / "global_step_2");
  EXPECT_TRUE(state_holds_expected(second.trainer.state()));
}

TEST(Hdf5Template, AsynchronousSavesUseItAndLoadExactly) {
  TempDir dir;
  Saving s(dir.path(), {{"async", true}});
  make_first_save_differ(s.trainer.state(), s.rank);
  s.save_at(1);
  make_state_expected(s.trainer.state(), s.rank);
  s.save_at(2);
  // Changed right after save() returned: not what the checkpoint holds.
  for (auto& shard : s.trainer.state().tensors())
    std::memset(shard.data(), 0, shard.nbytes());
  s.engine->wait();
  EXPECT_TRUE(s.reused());
  Loaded second(dir.path(), dir.path() / "global_step_2");
  EXPECT_TRUE(state_holds_expected(second.trainer.state()));
}

TEST(Hdf5Template, AFailedSaveLeavesCommittedCheckpointsAndTheTemplateUsable) {
  TempDir dir;
  Saving s(dir.path());
  auto faulty = std::make_shared<FaultyFileSystem>();
  s.engine->set_file_system(faulty);
  s.save_at(1);
  // A full disk on the last rank's data write of step 2.
  if (s.rank == s.size - 1)
    faulty->add_rule({FsOp::kDataWrite, "checkpoint.h5"});
  const Caught caught = catch_error([&] { s.save_at(2); });
  EXPECT_TRUE(is_error(caught, ErrorCode::kIo, {"No space left on device"}));
  EXPECT_TRUE(same_on_all_ranks(caught.message));
  EXPECT_EQ(slurp(dir.path() / "latest"), "global_step_1\n");
  EXPECT_FALSE(fs::exists(dir.path() / "global_step_2"));
  EXPECT_TRUE(
      verify_checkpoint(dir.path() / "global_step_1", MPI_COMM_WORLD).ok());
  s.save_at(3);
  EXPECT_TRUE(s.reused());
  Loaded third(dir.path(), dir.path() / "global_step_3");
  EXPECT_TRUE(state_holds_expected(third.trainer.state()));
}

// The hash of the file's structure bytes that the manifest records (and
// that the first save after a load compares with the file) is of exactly
// the bytes hdf5_template.hpp names, in a file whose structure spans more
// than one of the reads the image is made of (1 MiB), from the full save
// and from the template.
TEST(Hdf5Template, TheRecordedImageHashIsOfTheFilesStructureBytes) {
  TempDir dir;
  SimpleTrainer trainer;
  build_template_state(trainer.state(), world_rank(), world_size(),
                       Partition::kMixed, 4000);
  auto engine = make_test_engine(trainer, "hdf5", dir.path());
  for (std::int64_t step = 1; step <= 2; ++step) {
    trainer.progress_now.global_step = step;
    engine->save();
    EXPECT_EQ(
        dynamic_cast<const Hdf5Engine&>(*engine).last_save_reused_structure(),
        step == 2);
    const fs::path checkpoint =
        dir.path() / ("global_step_" + std::to_string(step));
    const Manifest manifest =
        open_checkpoint(checkpoint, MPI_COMM_WORLD).manifest;
    std::uint64_t outside = 0;
    const std::uint64_t expected =
        expected_image_xxh3(checkpoint, manifest, outside);
    EXPECT_GT(outside, 1u << 20) << "step " << step;
    EXPECT_EQ(manifest.engine_info.at(h5::kTemplateXxh3Key).get<std::string>(),
              format_xxh3(expected))
        << "step " << step;
  }
}

}  // namespace
}  // namespace floe::test
