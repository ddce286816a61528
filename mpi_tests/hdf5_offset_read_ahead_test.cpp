// Loads through the manifest's storage offsets read on load()'s read-ahead
// thread (every read is a pread alone); a read that fails there fails the
// load the same on every rank and changes no file.
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "commit/restore.hpp"
#include "core/comm.hpp"
#include "hdf5_storage_offset_support.hpp"

namespace floe::test {
namespace {

// Forwards to the reader it wraps, noting which tensors were read (or
// asked for in a read_some batch) on the thread that made it and which on
// another (load()'s read-ahead thread).
class ThreadNotingReader : public CheckpointReader {
 public:
  explicit ThreadNotingReader(std::unique_ptr<CheckpointReader> inner)
      : inner_(std::move(inner)) {}

  void read(const TensorRecord& tensor, const std::vector<Box>& boxes,
            void* out) override {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      (std::this_thread::get_id() == maker_ ? on_maker_ : elsewhere_)
          .insert(tensor.spec.key());
    }
    inner_->read(tensor, boxes, out);
  }
  // The read-ahead thread's batches go to the wrapped reader's read_some.
  std::size_t read_some(const ReadRequest* requests,
                        std::size_t count) override {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      auto& keys =
          std::this_thread::get_id() == maker_ ? on_maker_ : elsewhere_;
      for (std::size_t i = 0; i < count; ++i)
        keys.insert(requests[i].tensor->spec.key());
    }
    return inner_->read_some(requests, count);
  }
  std::vector<std::uint8_t> read_blob(const BlobRecord& blob) override {
    return inner_->read_blob(blob);
  }
  bool reads_independently() const override {
    return inner_->reads_independently();
  }

  std::set<std::string> on_maker() {
    const std::lock_guard<std::mutex> lock(mutex_);
    return on_maker_;
  }
  std::set<std::string> elsewhere() {
    const std::lock_guard<std::mutex> lock(mutex_);
    return elsewhere_;
  }

 private:
  std::unique_ptr<CheckpointReader> inner_;
  const std::thread::id maker_ = std::this_thread::get_id();
  std::mutex mutex_;
  std::set<std::string> on_maker_, elsewhere_;
};

// `checkpoint`'s reader, wrapped in a ThreadNotingReader (returned).
ThreadNotingReader& note_threads(OpenCheckpoint& checkpoint) {
  auto noting =
      std::make_unique<ThreadNotingReader>(std::move(checkpoint.reader));
  ThreadNotingReader& out = *noting;
  checkpoint.reader = std::move(noting);
  return out;
}

std::set<std::string> keys_of(const State& state) {
  std::set<std::string> keys;
  for (const auto& shard : state.tensors()) keys.insert(shard.spec().key());
  return keys;
}

// A fresh test state for this job under `partition`, its tensors filled
// with 0xAB and no blobs: what a load must overwrite.
void build_blank_state(SimpleTrainer& trainer, Partition partition) {
  build_test_state(trainer.state(), world_rank(), world_size(), partition);
  for (auto& s : trainer.state().tensors())
    std::memset(s.data(), 0xAB, s.nbytes());
  trainer.state().clear_blobs();
}

// Saved on every rank count of this job and loaded on all ranks of it
// under another partition, as load() does (open_checkpoint, the engine's
// registered reader, restore_state with verification): with the offsets
// the reader reads independently on every rank and every tensor this rank
// holds is read on the read-ahead thread; without them (an older
// checkpoint), or to check the structure (verify), it does not, and every
// read is the caller's. The values are exact either way.
TEST(Hdf5StorageOffset, ALoadWithOffsetsReadsOnTheReadAheadThread) {
  const Comm comm(MPI_COMM_WORLD);
  for_each_saved([&](const fs::path& dir, int k, bool recorded) {
    {
      const OpenCheckpoint checked =
          open_checkpoint(dir, MPI_COMM_WORLD, *posix_file_system(), true);
      EXPECT_FALSE(checked.reader->reads_independently());
    }
    OpenCheckpoint opened = open_checkpoint(dir, MPI_COMM_WORLD);
    EXPECT_EQ(opened.reader->reads_independently(), recorded);
    ThreadNotingReader& noted = note_threads(opened);
    SimpleTrainer trainer;
    build_blank_state(trainer, k % 2 ? Partition::kDim0 : Partition::kFlat);
    restore_state(opened, trainer.state(), comm, /*verify=*/true,
                  LoadOptions{});
    EXPECT_TRUE(state_holds_expected(trainer.state()));
    EXPECT_EQ(trainer.state().blobs().size(), world_rank() < k ? 1u : 0u);
    if (recorded) {
      EXPECT_EQ(noted.elsewhere(), keys_of(trainer.state()));
    } else {
      EXPECT_TRUE(noted.elsewhere().empty());
      EXPECT_EQ(noted.on_maker(), keys_of(trainer.state()));
    }
  });
}

// Reads that fail on the read-ahead thread, after the checkpoint was
// opened: an offset beyond the end of the data file (a manifest not checked
// by the parser, as a reader made by other means gets it), and a data file
// truncated since it was opened. Every rank throws the same kCorrupt, which
// names the tensor and the field (the offset) or the file (the
// truncation), as a load on the caller's thread did; loading changes no
// file.
TEST(Hdf5StorageOffset,
     AReadThatFailsOnTheReadAheadThreadFailsTheLoadOnEveryRank) {
  SavedAtStep1 saved;
  const fs::path& dir = saved.dir;
  const fs::path file = dir / "checkpoint.h5";
  const Comm comm(MPI_COMM_WORLD);
  const std::uint64_t size = fs::file_size(file);
  run_within(std::chrono::seconds(120), [&] {
    // The offset: the last tensor with bytes ends one byte past the end.
    OpenCheckpoint opened = open_checkpoint(dir, MPI_COMM_WORLD);
    std::size_t i = opened.manifest.tensors.size() - 1;
    while (opened.manifest.tensors[i].spec.nbytes() == 0) --i;
    TensorRecord& bad = opened.manifest.tensors[i];
    const std::uint64_t nbytes = bad.spec.nbytes();
    bad.storage_offset = size - nbytes + 1;
    opened.reader = std::make_unique<h5::Hdf5Reader>(ReadContext{
        dir, opened.manifest, MPI_COMM_WORLD, *posix_file_system()});
    EXPECT_TRUE(opened.reader->reads_independently());
    ThreadNotingReader& noted = note_threads(opened);
    const std::string before =
        world_rank() == 0 ? tree_listing(saved.tmp.path()) : "";
    SimpleTrainer trainer;
    build_blank_state(trainer, Partition::kDim0);
    const Caught load = catch_error([&] {
      restore_state(opened, trainer.state(), comm, true, LoadOptions{});
    });
    EXPECT_TRUE(is_error(
        load, ErrorCode::kCorrupt,
        {"tensor \"" + bad.spec.key() + "\": field storage_offset: its " +
             std::to_string(nbytes) + " bytes at offset " +
             std::to_string(size - nbytes + 1),
         "beyond the end of " + file.string()}));
    EXPECT_TRUE(same_on_all_ranks(load.message));
    // Read (and failed) on the read-ahead thread, not the caller's.
    EXPECT_EQ(noted.elsewhere().count(bad.spec.key()), 1u);
    EXPECT_EQ(noted.on_maker().count(bad.spec.key()), 0u);
    if (world_rank() == 0) {
      EXPECT_EQ(tree_listing(saved.tmp.path()), before);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  });
  run_within(std::chrono::seconds(120), [&] {
    // The truncation: opened (sizes checked) first, then cut to half.
    OpenCheckpoint opened = open_checkpoint(dir, MPI_COMM_WORLD);
    EXPECT_TRUE(opened.reader->reads_independently());
    MPI_Barrier(MPI_COMM_WORLD);
    if (world_rank() == 0) fs::resize_file(file, size / 2);
    MPI_Barrier(MPI_COMM_WORLD);
    const std::string before =
        world_rank() == 0 ? tree_listing(saved.tmp.path()) : "";
    SimpleTrainer trainer;
    build_blank_state(trainer, Partition::kFlat);
    const Caught load = catch_error([&] {
      restore_state(opened, trainer.state(), comm, true, LoadOptions{});
    });
    EXPECT_TRUE(is_error(load, ErrorCode::kCorrupt,
                         {file.string() + ": the file ended at ",
                          "before its expected " + std::to_string(size) +
                              " bytes (truncated)"}));
    EXPECT_TRUE(same_on_all_ranks(load.message));
    if (world_rank() == 0) {
      EXPECT_EQ(tree_listing(saved.tmp.path()), before);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  });
  // Opened again, the truncated file is refused by its size before any read.
  EXPECT_TRUE(throws_error([&] { saved.rig.engine->load(dir); },
                           ErrorCode::kCorrupt, {"(truncated)"}));
}

}  // namespace
}  // namespace floe::test
