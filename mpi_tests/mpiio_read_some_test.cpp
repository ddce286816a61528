// The mpiio reader reads many tensors per system call (read_some: one
// preadv for the runs that follow each other in the file, small gaps read
// into scratch), and load() hands it a batch at a time from its read-ahead
// thread. Checked here: 5,000 small tensors (more than IOV_MAX iovecs and
// more than one read-ahead batch) come back exact whether the loading ranks
// hold rows (runs back to back), columns (a gap between every two runs) or
// whole tensors saved by several ranks (runs from several extents, sorted),
// in memory of their own, back to back in one buffer, or back to front; a
// file truncated after it was opened, in the middle of a batch, fails at
// the same tensor with the same error as read() of it, and fails a load
// with that error on every rank, nothing committed changed. Also: a state
// that lists its tensors in another order than the manifest, or only some
// of them, is matched as one in the manifest's order is (load_match.cpp
// tries the next shard in order before State::find).
#include <cstring>

#include "commit/restore.hpp"
#include "engine_fixture.hpp"
#include "engines/mpiio/mpiio_engine.hpp"
#include "floe/checkpoint.hpp"

namespace floe::test {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kTensors = 5000;  // > IOV_MAX (1024), > one batch (4096)
const Shape kShape{2, 8};               // F32: 64 bytes a tensor

std::string name_of(std::size_t t) { return "w." + std::to_string(t); }

// What of each tensor a rank holds.
enum class Hold { kRows, kColumns, kWhole };
// Where its shards' memory lies.
enum class Memory { kOwned, kBackToBack, kBackToFront };

Region region_for(Hold hold, int rank, int size) {
  switch (hold) {
    case Hold::kRows:
      return dim0_shard(kShape, rank, size);
    case Hold::kColumns: {
      const auto [begin, end] = even_split(kShape[1], rank, size);
      return Region::box(Box{{0, begin}, {kShape[0], end - begin}});
    }
    case Hold::kWhole:
      break;
  }
  return Region::whole(kShape);
}

// Tensors "w.<t>" of kShape (by default all kTensors, in order; else those
// of `which`, in its order) as `hold` and `memory` say, for this rank of
// `comm`, filled with their expected values or zeroed.
struct ManyTensors {
  ManyTensors(MPI_Comm comm, Hold hold, Memory memory, bool fill,
              std::vector<std::size_t> which = {})
      : trainer(comm) {
    if (which.empty()) {
      for (std::size_t t = 0; t < kTensors; ++t) which.push_back(t);
    }
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    const Region region = region_for(hold, rank, size);
    const std::uint64_t bytes = region.elements() * sizeof(float);
    const std::size_t n = which.size();
    if (memory != Memory::kOwned) buffer.assign(n * bytes, std::byte{0});
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t t = which[i];
      const std::size_t slot = memory == Memory::kBackToFront ? n - 1 - i : i;
      void* data = memory == Memory::kOwned ? nullptr : buffer.data() + slot * bytes;
      TensorShard& shard =
          trainer.state().add_model(name_of(t), DType::kF32, kShape, region, data);
      if (fill) fill_expected(shard);
    }
  }

  ::testing::AssertionResult holds_expected() {
    for (const TensorShard& shard : trainer.state().tensors()) {
      auto result = test::holds_expected(shard);
      if (!result) return result;
    }
    return ::testing::AssertionSuccess();
  }

  std::vector<std::byte> buffer;
  SimpleTrainer trainer;
};

// Saves ManyTensors (rows) over `comm` as output_dir/global_step_1.
void save_many(MPI_Comm comm, const fs::path& output_dir) {
  ManyTensors saved(comm, Hold::kRows, Memory::kOwned, true);
  auto engine = make_test_engine(saved.trainer, "mpiio", output_dir);
  saved.trainer.progress_now.global_step = 1;
  engine->save();
}

TEST(MpiioReadSome, ManySmallTensorsComeBackExactHoweverTheyAreHeld) {
  TempDir tmp;
  save_many(MPI_COMM_WORLD, tmp / "ckpt");
  run_within(std::chrono::seconds(240), [&] {
    for (Hold hold : {Hold::kRows, Hold::kColumns}) {
      for (Memory memory : {Memory::kOwned, Memory::kBackToBack, Memory::kBackToFront}) {
        ManyTensors loaded(MPI_COMM_WORLD, hold, memory, false);
        auto engine = make_test_engine(loaded.trainer, "mpiio", tmp / "ckpt",
                                       {{"verify_on_load", true}});
        EXPECT_NO_THROW(engine->load());
        EXPECT_TRUE(loaded.holds_expected())
            << "hold " << static_cast<int>(hold) << ", memory " << static_cast<int>(memory);
      }
    }
    // One rank loads every tensor whole: each is assembled from the pieces
    // of every saving rank, which lie in extents far apart.
    SubComm one(1);
    if (one.member()) {
      ManyTensors loaded(one.get(), Hold::kWhole, Memory::kOwned, false);
      auto engine = make_test_engine(loaded.trainer, "mpiio", tmp / "ckpt",
                                     {{"verify_on_load", true}});
      EXPECT_NO_THROW(engine->load());
      EXPECT_TRUE(loaded.holds_expected());
    }
    MPI_Barrier(MPI_COMM_WORLD);
  });
}

// The state's tensors back to front, and every third one back to front
// (the rest of the manifest skipped: allow_extra_tensors): matched by name
// whatever the order, loaded exactly.
TEST(MpiioReadSome, AStateInAnotherOrderOrWithSomeTensorsLoadsExact) {
  TempDir tmp;
  save_many(MPI_COMM_WORLD, tmp / "ckpt");
  run_within(std::chrono::seconds(120), [&] {
    std::vector<std::size_t> backward, third;
    for (std::size_t t = kTensors; t-- > 0;) {
      backward.push_back(t);
      if (t % 3 == 1) third.push_back(t);
    }
    for (const auto* which : {&backward, &third}) {
      ManyTensors loaded(MPI_COMM_WORLD, Hold::kRows, Memory::kOwned, false, *which);
      auto engine = make_test_engine(loaded.trainer, "mpiio", tmp / "ckpt",
                                     {{"verify_on_load", true}});
      LoadOptions options;
      options.allow_extra_tensors = which == &third;
      EXPECT_NO_THROW(engine->load(std::nullopt, options));
      EXPECT_EQ(loaded.trainer.state().tensors().size(), which->size());
      EXPECT_TRUE(loaded.holds_expected());
    }
  });
}

// One rank's reader, straight: read_some reads every request it is given;
// once the data file is cut (after the reader opened it) in the middle of
// tensor k, read_some stops before k, what it read is exact, and the call
// that starts at k throws what read() of k throws.
TEST(MpiioReadSome, AFileCutAfterOpeningEndsThePrefixAtTheTensorItCuts) {
  TempDir tmp;
  SubComm one(1);
  if (one.member()) {
    run_within(std::chrono::seconds(120), [&] {
      save_many(one.get(), tmp / "ckpt");
      const fs::path dir = tmp / "ckpt" / "global_step_1";
      const Manifest manifest = Manifest::read(dir);
      ASSERT_EQ(manifest.files.size(), 1u);
      const fs::path data = dir / manifest.files[0].path;
      const std::uint64_t size = manifest.files[0].size;
      auto reader = open_mpiio_reader(
          ReadContext{dir, manifest, MPI_COMM_SELF, *posix_file_system()});
      ASSERT_TRUE(reader->reads_independently());

      ManyTensors loaded(MPI_COMM_SELF, Hold::kWhole, Memory::kOwned, false);
      std::vector<CheckpointReader::ReadRequest> requests;
      for (std::size_t t = 0; t < kTensors; ++t) {
        const TensorRecord& record = manifest.tensors[t];
        ASSERT_EQ(record.spec.name, name_of(t));
        requests.push_back({&record, {full_box(kShape)},
                            loaded.trainer.state().find(record.spec.key())->data()});
      }
      EXPECT_EQ(reader->read_some(requests.data(), requests.size()), kTensors);
      EXPECT_TRUE(loaded.holds_expected());

      const std::size_t k = 3001;
      const PieceRecord& cut_piece = manifest.tensors[k].pieces.at(0);
      const std::uint64_t cut = cut_piece.offset + 20;
      ASSERT_LT(cut, size);
      for (auto& shard : loaded.trainer.state().tensors()) {
        std::memset(shard.data(), 0, shard.nbytes());
      }
      fs::resize_file(data, cut);
      EXPECT_EQ(reader->read_some(requests.data(), requests.size()), k);
      for (std::size_t t = 0; t < k; ++t) {
        ASSERT_TRUE(test::holds_expected(*loaded.trainer.state().find("model/" + name_of(t))));
      }
      std::vector<float> scratch(num_elements(kShape));
      const Caught by_read = catch_error(
          [&] { reader->read(manifest.tensors[k], requests[k].boxes, scratch.data()); });
      EXPECT_TRUE(is_error(by_read, ErrorCode::kCorrupt,
                           {data.string() + ": the file ended at " + std::to_string(cut) +
                            ", before its expected " + std::to_string(size) +
                            " bytes (truncated)"}));
      const Caught by_batch = catch_error(
          [&] { reader->read_some(requests.data() + k, requests.size() - k); });
      EXPECT_TRUE(is_error(by_batch, ErrorCode::kCorrupt));
      EXPECT_EQ(by_batch.message, by_read.message);
      // The last request alone, wholly beyond the cut: read()'s error too.
      const std::size_t last = kTensors - 1;
      const Caught last_by_read = catch_error(
          [&] { reader->read(manifest.tensors[last], requests[last].boxes, scratch.data()); });
      const Caught last_by_batch =
          catch_error([&] { reader->read_some(requests.data() + last, 1); });
      EXPECT_TRUE(is_error(last_by_batch, ErrorCode::kCorrupt, {data.string(), "(truncated)"}));
      EXPECT_EQ(last_by_batch.message, last_by_read.message);
    });
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// A load whose data file is cut after the reader opened it, in the middle
// of a read-ahead batch: every rank throws the error of the read that met
// the cut on the lowest rank (rank 0, whose extent comes first), and
// nothing committed changes.
TEST(MpiioReadSome, ALoadOfAFileCutInTheMiddleOfABatchFailsOnEveryRank) {
  TempDir tmp;
  save_many(MPI_COMM_WORLD, tmp / "ckpt");
  const fs::path dir = tmp / "ckpt" / "global_step_1";
  run_within(std::chrono::seconds(120), [&] {
    OpenCheckpoint opened = open_checkpoint(dir, MPI_COMM_WORLD);
    ASSERT_EQ(opened.manifest.files.size(), 1u);
    const fs::path data = dir / opened.manifest.files[0].path;
    const std::uint64_t size = opened.manifest.files[0].size;
    // Every rank's reader opens the file (a first element of tensor 0).
    float first = 0;
    opened.reader->read(opened.manifest.tensors[0], {Box{{0, 0}, {1, 1}}}, &first);
    const std::size_t k = 2500;
    const std::uint64_t cut = opened.manifest.tensors[k].pieces.at(0).offset + 20;
    ASSERT_EQ(opened.manifest.tensors[k].pieces.at(0).rank, 0);
    MPI_Barrier(MPI_COMM_WORLD);
    if (world_rank() == 0) fs::resize_file(data, cut);
    MPI_Barrier(MPI_COMM_WORLD);
    const std::string manifest_before = slurp(dir / "manifest.json");
    const std::string before = world_rank() == 0 ? tree_listing(tmp.path()) : "";

    ManyTensors loaded(MPI_COMM_WORLD, Hold::kRows, Memory::kOwned, false);
    const Comm comm(MPI_COMM_WORLD);
    const Caught load = catch_error(
        [&] { restore_state(opened, loaded.trainer.state(), comm, true, LoadOptions{}); });
    EXPECT_TRUE(is_error(load, ErrorCode::kCorrupt,
                         {data.string() + ": the file ended at " + std::to_string(cut) +
                          ", before its expected " + std::to_string(size) +
                          " bytes (truncated)"}))
        << load.message;
    EXPECT_TRUE(same_on_all_ranks(load.message));
    EXPECT_EQ(slurp(dir / "manifest.json"), manifest_before);
    EXPECT_EQ(slurp(tmp / "ckpt" / "latest"), "global_step_1\n");
    if (world_rank() == 0) {
      EXPECT_EQ(tree_listing(tmp.path()), before);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  });
}

}  // namespace
}  // namespace floe::test
