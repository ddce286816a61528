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
#include <algorithm>
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
    // Back to front with a tensor the checkpoint lacks in the middle: the
    // error names it, whatever order the finder met the others in.
    ManyTensors loaded(MPI_COMM_WORLD, Hold::kRows, Memory::kOwned, false, backward);
    loaded.trainer.state().add_model("w.extra", DType::kF32, kShape, Region::whole(kShape));
    auto engine = make_test_engine(loaded.trainer, "mpiio", tmp / "ckpt");
    EXPECT_TRUE(throws_error([&] { engine->load(); }, ErrorCode::kMismatch,
                             {"tensor \"model/w.extra\" is not in checkpoint"}));
  });
}

// A reader of another engine, for mpiio_read_stats to refuse.
struct NotMpiio : CheckpointReader {
  void read(const TensorRecord&, const std::vector<Box>&, void*) override {}
  std::vector<std::uint8_t> read_blob(const BlobRecord&) override { return {}; }
};

// Requests for tensors t in `which`, each of `boxes`, into `loaded`'s shards.
std::vector<CheckpointReader::ReadRequest> requests_for(const Manifest& manifest,
                                                        ManyTensors& loaded,
                                                        const std::vector<std::size_t>& which,
                                                        const std::vector<Box>& boxes) {
  std::vector<CheckpointReader::ReadRequest> requests;
  for (std::size_t t : which) {
    const TensorRecord& record = manifest.tensors.at(t);
    requests.push_back({&record, boxes, loaded.trainer.state().find(record.spec.key())->data()});
  }
  return requests;
}

std::vector<std::size_t> range(std::size_t begin, std::size_t end, std::size_t step = 1) {
  std::vector<std::size_t> out;
  for (std::size_t t = begin; t < end; t += step) out.push_back(t);
  return out;
}

// read_some batches what lies together in the file (GatheredReadStats,
// counted by the reader): tensors saved back to back by one rank take one
// gathered read (one preadv) however many they are, up to IOV_MAX parts;
// the gaps between a column block's runs (16 bytes here) are read through
// in the same preadv; tensors 1,000 apart (64 KB, beyond the 16 KiB a gap
// may be) are a read each; a single request is read() alone, counted in
// neither.
TEST(MpiioReadSome, TensorsThatLieTogetherTakeOneGatheredRead) {
  TempDir tmp;
  SubComm one(1);
  if (one.member()) {
    run_within(std::chrono::seconds(120), [&] {
      save_many(one.get(), tmp / "ckpt");
      const fs::path dir = tmp / "ckpt" / "global_step_1";
      const Manifest manifest = Manifest::read(dir);
      const std::uint64_t tensor_bytes = num_elements(kShape) * sizeof(float);
      // The premise: one piece per tensor, back to back in the file.
      for (std::size_t t = 0; t < kTensors; ++t) {
        ASSERT_EQ(manifest.tensors[t].pieces.size(), 1u);
        ASSERT_EQ(manifest.tensors[t].pieces[0].offset,
                  manifest.tensors[0].pieces[0].offset + t * tensor_bytes);
      }
      auto reader = open_mpiio_reader(
          ReadContext{dir, manifest, MPI_COMM_SELF, *posix_file_system()});
      ManyTensors loaded(MPI_COMM_SELF, Hold::kWhole, Memory::kOwned, false);
      const std::vector<Box> whole{full_box(kShape)};
      GatheredReadStats before = mpiio_read_stats(*reader);
      EXPECT_EQ(before.batches, 0u);
      // Reads the requests in one read_some call and returns the change
      // in the reader's counts.
      const auto read = [&](std::vector<CheckpointReader::ReadRequest> requests) {
        EXPECT_EQ(reader->read_some(requests.data(), requests.size()), requests.size());
        const GatheredReadStats after = mpiio_read_stats(*reader);
        GatheredReadStats delta;
        delta.batches = after.batches - before.batches;
        delta.batched_requests = after.batched_requests - before.batched_requests;
        delta.gathered_reads = after.gathered_reads - before.gathered_reads;
        delta.fallbacks = after.fallbacks - before.fallbacks;
        delta.fallback_requests = after.fallback_requests - before.fallback_requests;
        before = after;
        return delta;
      };

      GatheredReadStats d = read(requests_for(manifest, loaded, range(0, 100), whole));
      EXPECT_EQ(d.batches, 1u);
      EXPECT_EQ(d.batched_requests, 100u);
      EXPECT_EQ(d.gathered_reads, 1u);
      EXPECT_EQ(d.fallbacks, 0u);
      // Out of order in the batch: sorted by offset first.
      std::vector<std::size_t> shuffled = range(100, 200);
      std::reverse(shuffled.begin(), shuffled.end());
      d = read(requests_for(manifest, loaded, shuffled, whole));
      EXPECT_EQ(d.gathered_reads, 1u);
      // Every tensor: a preadv holds at most IOV_MAX (1024) parts, of which
      // one stays free for a gap: 1023 tensors a read.
      d = read(requests_for(manifest, loaded, range(0, kTensors), whole));
      EXPECT_EQ(d.batched_requests, kTensors);
      EXPECT_EQ(d.gathered_reads, (kTensors + 1022) / 1023);
      EXPECT_EQ(d.fallbacks, 0u);
      EXPECT_TRUE(loaded.holds_expected());

      // Columns 0-3 of both rows: runs of 16 bytes with 16-byte gaps
      // between them, one preadv for all.
      ManyTensors columns(MPI_COMM_SELF, Hold::kColumns, Memory::kOwned, false);
      const std::vector<Box> left{Box{{0, 0}, {kShape[0], kShape[1] / 2}}};
      d = read(requests_for(manifest, columns, range(0, 100), left));
      EXPECT_EQ(d.batched_requests, 100u);
      EXPECT_EQ(d.gathered_reads, 1u);
      // A gap longer than 16 KiB starts a new read: tensors 0, 1000, 2000,
      // 3000 are 64,000 bytes apart.
      d = read(requests_for(manifest, loaded, range(0, 4000, 1000), whole));
      EXPECT_EQ(d.batches, 1u);
      EXPECT_EQ(d.gathered_reads, 4u);
      // Five tensors every 257th (gaps of 256 * 64 = 16,384 bytes, the
      // most bridged): one read; every 258th (16,448): five.
      d = read(requests_for(manifest, loaded, range(0, 257 * 4 + 1, 257), whole));
      EXPECT_EQ(d.gathered_reads, 1u);
      d = read(requests_for(manifest, loaded, range(0, 258 * 4 + 1, 258), whole));
      EXPECT_EQ(d.gathered_reads, 5u);
      // One request: read() alone.
      d = read(requests_for(manifest, loaded, {7}, whole));
      EXPECT_EQ(d.batches, 0u);
      EXPECT_EQ(d.fallbacks, 0u);
      EXPECT_TRUE(loaded.holds_expected());
      EXPECT_TRUE(throws_error([&] { (void)mpiio_read_stats(NotMpiio{}); },
                               ErrorCode::kInvalidArgument, {"not one of open_mpiio_reader"}));
    });
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// A load reads through read_some in batches (load()'s read-ahead thread:
// at most 4,096 tensors a batch), with no request-by-request fallback.
TEST(MpiioReadSome, ALoadReadsItsTensorsInBatches) {
  TempDir tmp;
  save_many(MPI_COMM_WORLD, tmp / "ckpt");
  const fs::path dir = tmp / "ckpt" / "global_step_1";
  run_within(std::chrono::seconds(120), [&] {
    OpenCheckpoint opened = open_checkpoint(dir, MPI_COMM_WORLD);
    ASSERT_TRUE(opened.reader->reads_independently());
    ManyTensors loaded(MPI_COMM_WORLD, Hold::kColumns, Memory::kOwned, false);
    const Comm comm(MPI_COMM_WORLD);
    EXPECT_NO_THROW(restore_state(opened, loaded.trainer.state(), comm, true, LoadOptions{}));
    EXPECT_TRUE(loaded.holds_expected());
    const GatheredReadStats stats = mpiio_read_stats(*opened.reader);
    EXPECT_EQ(stats.batches, (kTensors + 4095) / 4096);
    EXPECT_EQ(stats.batched_requests, kTensors);
    EXPECT_EQ(stats.fallbacks, 0u);
    // Each saving rank's extent holds its rows of every tensor back to
    // back: a few reads per extent and batch, not one per tensor (a run and
    // the gap before it take two of a preadv's 1,024 parts).
    const std::uint64_t reads_per_extent = (2 * kTensors + 1021) / 1022 + 1;
    EXPECT_LE(stats.gathered_reads,
              stats.batches * reads_per_extent * static_cast<std::uint64_t>(world_size()));
    MPI_Barrier(MPI_COMM_WORLD);
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
      EXPECT_EQ(mpiio_read_stats(*reader).batches, 1u);
      EXPECT_EQ(mpiio_read_stats(*reader).fallbacks, 0u);

      const std::size_t k = 3001;
      const PieceRecord& cut_piece = manifest.tensors[k].pieces.at(0);
      const std::uint64_t cut = cut_piece.offset + 20;
      ASSERT_LT(cut, size);
      for (auto& shard : loaded.trainer.state().tensors()) {
        std::memset(shard.data(), 0, shard.nbytes());
      }
      fs::resize_file(data, cut);
      EXPECT_EQ(reader->read_some(requests.data(), requests.size()), k);
      // The batch failed and was read again request by request.
      EXPECT_EQ(mpiio_read_stats(*reader).batches, 1u);
      EXPECT_EQ(mpiio_read_stats(*reader).fallbacks, 1u);
      EXPECT_EQ(mpiio_read_stats(*reader).fallback_requests, kTensors);
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
