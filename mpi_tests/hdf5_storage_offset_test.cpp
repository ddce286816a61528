// The manifest's storage_offset (docs/manifest.md, docs/hdf5_layout.md "How
// it reads"): the hdf5 writer records where each dataset's bytes lie, the
// reader then opens no dataset to read them; checkpoints without it (as
// Floe wrote them before) are still read by checking each dataset; an
// offset that does not fit the data file is refused naming the tensor and
// the field; a wrong offset inside the file fails the checksums; a data
// file rewritten by another program is refused by its size. With the
// offsets every read is a pread alone, so load() reads on its read-ahead
// thread; a read that fails there fails the load the same on every rank.
#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <hdf5.h>

#include "commit/restore.hpp"
#include "core/comm.hpp"
#include "hdf5_test_support.hpp"
#include "hf_test_util.hpp"

namespace floe::test {
namespace {

using nlohmann::json;

// `manifest` as Floe wrote it before it recorded storage offsets.
Manifest without_offsets(Manifest manifest) {
  for (auto& t : manifest.tensors) t.storage_offset.reset();
  return manifest;
}

// Once every rank is done reading it, rank 0 rewrites `dir`'s manifest as
// `manifest` (a valid self-checksum: dump() computes it); then every rank
// goes on. Collective.
void rewrite_manifest(const fs::path& dir, const Manifest& manifest) {
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) write_bytes(dir / "manifest.json", manifest.dump());
  MPI_Barrier(MPI_COMM_WORLD);
}

std::uint64_t sum_over_ranks(std::uint64_t value) {
  MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  return value;
}

// What serial HDF5 reports as the start of each tensor's storage
// (H5Dget_offset), or nothing for a dataset without storage. Rank 0 only.
std::map<std::string, std::optional<std::uint64_t>> hdf5_offsets(const fs::path& file,
                                                                  const Manifest& manifest) {
  std::map<std::string, std::optional<std::uint64_t>> out;
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  EXPECT_GE(f, 0) << file;
  for (const auto& t : manifest.tensors) {
    const hid_t d = H5Dopen2(f, t.dataset.c_str(), H5P_DEFAULT);
    EXPECT_GE(d, 0) << t.dataset;
    const haddr_t at = H5Dget_offset(d);
    out[t.spec.key()] = at == HADDR_UNDEF ? std::nullopt : std::optional<std::uint64_t>(at);
    H5Dclose(d);
  }
  H5Fclose(f);
  return out;
}

// Every tensor, batched or written by its own H5Dwrite, gets the address
// HDF5 gave its dataset (0 for the zero-size one, which has none), and the
// manifest on disk carries it.
TEST(Hdf5StorageOffset, TheManifestRecordsWhereEveryDatasetsBytesLie) {
  for (const json& options : {json::object(), json{{"small_tensor_bytes", 0}}}) {
    SCOPED_TRACE(options.dump());
    RegionKindsCheckpoint c;
    const Manifest& manifest = c.write(options);
    ASSERT_EQ(manifest.tensors.size(), 6u);
    if (c.rank == 0) {
      const auto stored = hdf5_offsets(c.file(), manifest);
      // No ASSERT here: the other ranks go on to collective calls.
      for (const auto& t : manifest.tensors) {
        EXPECT_TRUE(t.storage_offset.has_value()) << t.spec.key();
        if (!t.storage_offset) continue;
        if (t.spec.nbytes() == 0) {
          EXPECT_EQ(*t.storage_offset, 0u) << t.spec.key();
        } else {
          EXPECT_EQ(t.storage_offset, stored.at(t.spec.key())) << t.spec.key();
          EXPECT_GT(*t.storage_offset, 0u) << t.spec.key();
        }
      }
    }
  }
  TempDir tmp;
  EngineRig rig(tmp / "ckpt", "hdf5");
  rig.save_at(1);
  MPI_Barrier(MPI_COMM_WORLD);
  const fs::path dir = tmp / "ckpt" / "global_step_1";
  const std::string text = read_bytes(dir / "manifest.json");
  const Manifest read = Manifest::read(dir);
  for (const auto& t : read.tensors) {
    EXPECT_TRUE(t.storage_offset.has_value()) << t.spec.key();
    if (!t.storage_offset) continue;
    EXPECT_NE(text.find("\"shape\":" + json(t.spec.shape).dump() +
                        ",\"storage_offset\":" + std::to_string(*t.storage_offset) + "}"),
              std::string::npos)
        << t.spec.key();
  }
  EXPECT_EQ(read.format_version, 2);
}

// With the offsets the reader opens no dataset; without them (an older
// checkpoint) the ranks check every dataset between them, as before. Both
// read the same values.
TEST(Hdf5StorageOffset, TheReaderOpensNoDatasetWhenTheManifestGivesOffsets) {
  RegionKindsCheckpoint c;
  const Manifest& manifest = c.write();
  const Manifest old = without_offsets(manifest);
  for (const Manifest* m : {&manifest, &old}) {
    const bool recorded = m == &manifest;
    SCOPED_TRACE(recorded ? "with storage offsets" : "without storage offsets");
    h5::Hdf5Reader reader(c.read_context(*m));
    EXPECT_EQ(sum_over_ranks(reader.stats().checked), recorded ? 0u : m->tensors.size());
    std::uint64_t reads = 0;
    for (const auto& t : m->tensors) {
      // The whole tensor, and a column block that no piece was.
      EXPECT_TRUE(reads_expected(reader, *m, t.spec.key(), {full_box(t.spec.shape)}));
      ++reads;
      if (t.spec.shape.size() == 2 && t.spec.shape[1] > 1) {
        EXPECT_TRUE(reads_expected(reader, *m, t.spec.key(),
                                   {Box{{0, u(c.rank) % t.spec.shape[1]}, {t.spec.shape[0], 1}}}));
        ++reads;
      }
    }
    EXPECT_EQ(reader.stats().batched, reads);  // every read direct, with no collective
    EXPECT_EQ(reader.stats().transfers, 0u);
    EXPECT_EQ(reader.stats().direct, 0u);
  }
}

// Saves the test state on the first `k` ranks into `out` (step 10 * k).
// Collective over MPI_COMM_WORLD.
fs::path save_on(int k, const fs::path& out) {
  {
    SubComm comm(k);
    if (comm.member()) {
      int rank = 0;
      MPI_Comm_rank(comm.get(), &rank);
      SimpleTrainer trainer(comm.get());
      build_test_state(trainer.state(), rank, k, Partition::kMixed);
      trainer.progress_now.global_step = 10 * k;
      make_test_engine(trainer, "hdf5", out)->save();
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return out / ("global_step_" + std::to_string(10 * k));
}

// Calls check(dir, k, recorded), within 120 s, for the test state saved
// (save_on) on every rank count k of this job: with the storage offsets
// (recorded), and with its manifest rewritten as Floe wrote it before them.
void for_each_saved(const std::function<void(const fs::path&, int, bool)>& check) {
  TempDir tmp;
  for (int k = 1; k <= world_size(); ++k) {
    for (const bool recorded : {true, false}) {
      SCOPED_TRACE("saved on " + std::to_string(k) + " ranks, " +
                   (recorded ? "with" : "without") + " storage offsets");
      const fs::path out = tmp / ("k" + std::to_string(k) + (recorded ? "new" : "old"));
      run_within(std::chrono::seconds(120), [&] {
        const fs::path dir = save_on(k, out);
        const Manifest saved = Manifest::read(dir);
        for (const auto& t : saved.tensors) EXPECT_TRUE(t.storage_offset) << t.spec.key();
        if (!recorded) rewrite_manifest(dir, without_offsets(saved));
        EXPECT_EQ(Manifest::read(dir).tensors[0].storage_offset.has_value(), recorded);
        check(dir, k, recorded);
      });
    }
  }
}

// Saved on every rank count of this job, with and without the offsets,
// loaded on all ranks of it under another partition; verify passes.
TEST(Hdf5StorageOffset, BothFormatsLoadReshardedAndVerify) {
  for_each_saved([](const fs::path& dir, int k, bool) {
    SimpleTrainer trainer;
    build_test_state(trainer.state(), world_rank(), world_size(),
                     k % 2 ? Partition::kDim0 : Partition::kFlat);
    for (auto& s : trainer.state().tensors()) std::memset(s.data(), 0xAB, s.nbytes());
    trainer.state().clear_blobs();
    const Manifest loaded = make_test_engine(trainer, "hdf5", dir.parent_path())->load(dir);
    EXPECT_EQ(loaded.world_size, k);
    EXPECT_TRUE(state_holds_expected(trainer.state()));
    const VerifyReport report = verify_checkpoint(dir, MPI_COMM_WORLD);
    EXPECT_TRUE(report.ok()) << (report.ok() ? "" : report.problems[0]);
  });
}

// A storage_offset whose bytes would end beyond the data file's recorded
// size, one that overflows, and one on a tensor without a dataset: the
// parser refuses each naming the tensor and the field; on disk load and
// verify refuse it on every rank and nothing changes.
TEST(Hdf5StorageOffset, AnOffsetThatDoesNotFitIsCorruptNamingTensorAndField) {
  TempDir tmp;
  const fs::path out = tmp / "ckpt";
  EngineRig rig(out, "hdf5");
  rig.save_at(1);
  rig.save_at(2);
  MPI_Barrier(MPI_COMM_WORLD);
  const fs::path dir = out / "global_step_2";
  const Manifest good = Manifest::read(dir);
  MPI_Barrier(MPI_COMM_WORLD);  // every rank has read it before rank 0 edits it
  // The last tensor with bytes: its end moved one byte past the file's end.
  std::size_t i = good.tensors.size() - 1;
  while (good.tensors[i].spec.nbytes() == 0) --i;
  const TensorRecord& t = good.tensors[i];
  const std::uint64_t size = good.files.at(0).size;
  const std::string field = "field tensors[" + std::to_string(i) + "].storage_offset: ";
  const std::string tensor = "tensor \"" + t.spec.key() + "\": ";
  struct Case {
    const char* name;
    std::uint64_t offset;
    std::vector<std::string> parts;
  };
  const std::vector<Case> cases = {
      {"one byte beyond", size - t.spec.nbytes() + 1,
       {field + tensor, "end at byte " + std::to_string(size + 1),
        "beyond the " + std::to_string(size) + " bytes files records for \"checkpoint.h5\""}},
      {"overflowing", ~std::uint64_t{0} - 2, {field + tensor, "bytes overflows"}},
  };
  const std::string before = world_rank() == 0 ? tree_listing(tmp.path()) : "";
  for (const Case& bad : cases) {
    SCOPED_TRACE(bad.name);
    Manifest edited = good;
    edited.tensors[i].storage_offset = bad.offset;
    const std::string text = edited.dump();  // self-checksum right: the field check speaks
    const fs::path path = dir / "manifest.json";
    const Caught parse = catch_error([&] { (void)Manifest::parse(text, path); });
    EXPECT_TRUE(is_error(parse, ErrorCode::kCorrupt, {path.string() + ": " + bad.parts[0]}));
    for (const auto& part : bad.parts) EXPECT_NE(parse.message.find(part), std::string::npos) << part;
    if (world_rank() == 0) write_bytes(path, text);
    MPI_Barrier(MPI_COMM_WORLD);
    const Caught load = catch_error([&] { rig.engine->load(dir); });
    EXPECT_TRUE(is_error(load, ErrorCode::kCorrupt, {path.string(), field + tensor}));
    EXPECT_TRUE(same_on_all_ranks(load.message));
    const Caught verify = catch_error([&] { (void)verify_checkpoint(dir, MPI_COMM_WORLD); });
    EXPECT_TRUE(is_error(verify, ErrorCode::kCorrupt, {field + tensor}));
    EXPECT_TRUE(same_on_all_ranks(verify.message));
    MPI_Barrier(MPI_COMM_WORLD);
  }
  rewrite_manifest(dir, good);
  if (world_rank() == 0) {
    EXPECT_EQ(tree_listing(tmp.path()), before);
  }
  // Other bad values, through the parser: the JSON edited directly.
  const json original = json::parse(good.dump());
  const std::vector<std::pair<std::function<void(json&)>, std::string>> edits = {
      {[&](json& m) { m["tensors"][i].erase("dataset"); },
       field + "given for a tensor without a dataset"},
      {[&](json& m) { m["tensors"][i]["storage_offset"] = -4096; },
       field + "expected an integer >= 0"},
      {[&](json& m) { m["tensors"][i]["storage_offset"] = "4096"; },
       field + "expected an integer >= 0"},
      {[&](json& m) { m["files"][0]["path"] = "other.h5"; },  // the first tensor speaks
       "field tensors[0].storage_offset: tensor \"" + good.tensors[0].spec.key() +
           "\": its data file \"checkpoint.h5\" is not listed in files"},
  };
  for (const auto& [edit, rule] : edits) {
    json m = original;
    edit(m);
    EXPECT_TRUE(throws_error([&] { (void)Manifest::parse(m.dump(), dir / "manifest.json"); },
                             ErrorCode::kCorrupt, {rule}))
        << rule;
  }
  // The intact checkpoint still loads.
  EXPECT_NO_THROW(rig.engine->load(dir));
  EXPECT_TRUE(state_holds_expected(rig.trainer.state()));
}

// Points model.bias's storage offset in `manifest` at the last byte of a
// data file of `size` bytes, so its 12 bytes leave the file; returns the
// record (null when the manifest has none). Reading it fails with
// bias_beyond_the_end(size).
TensorRecord* offset_bias_beyond_the_end(Manifest& manifest, std::uint64_t size) {
  for (auto& t : manifest.tensors) {
    if (t.spec.key() != "model/model.bias") continue;
    t.storage_offset = size - 1;
    return &t;
  }
  return nullptr;
}

std::string bias_beyond_the_end(std::uint64_t size) {
  return "tensor \"model/model.bias\": field storage_offset: its 12 bytes at offset " +
         std::to_string(size - 1);
}

// The reader holds an offset to the data file itself when the manifest
// was not parsed (a ReadContext made by other means): kCorrupt naming the
// tensor and the field, on the tensor's read only.
TEST(Hdf5StorageOffset, TheReaderHoldsOffsetsToTheFileItself) {
  RegionKindsCheckpoint c;
  Manifest edited = c.write();
  const std::uint64_t size = fs::file_size(c.file());
  const TensorRecord* bias = offset_bias_beyond_the_end(edited, size);
  ASSERT_NE(bias, nullptr);
  h5::Hdf5Reader reader(c.read_context(edited));
  std::vector<unsigned char> buffer(bias->spec.nbytes());
  EXPECT_TRUE(throws_error(
      [&] { reader.read(*bias, {full_box(bias->spec.shape)}, buffer.data()); },
      ErrorCode::kCorrupt,
      {bias_beyond_the_end(size), "beyond the end of " + c.file().string()}));
  EXPECT_TRUE(reads_expected(reader, edited, "optimizer/model.layers.0.mlp.weight/exp_avg",
                             {Box{{0, 0, 0}, {4, 3, 5}}}));
}

// The test state saved once by the hdf5 engine (step 1) into a fresh
// directory. Collective.
struct SavedAtStep1 {
  TempDir tmp;
  EngineRig rig{tmp / "ckpt", "hdf5"};
  fs::path dir = tmp / "ckpt" / "global_step_1";
  SavedAtStep1() {
    rig.save_at(1);
    MPI_Barrier(MPI_COMM_WORLD);
  }
};

// An offset inside the file but wrong (another tensor's): the checksums
// catch it on load and in verify, naming the tensor.
TEST(Hdf5StorageOffset, AWrongOffsetInsideTheFileFailsTheChecksum) {
  SavedAtStep1 saved;
  EngineRig& rig = saved.rig;
  const fs::path& dir = saved.dir;
  Manifest edited = Manifest::read(dir);
  TensorRecord* embed = nullptr;
  const TensorRecord* adam = edited.find("optimizer/model.embed.weight/exp_avg");
  for (auto& t : edited.tensors) {
    if (t.spec.key() == "model/model.embed.weight") embed = &t;
  }
  ASSERT_TRUE(embed && adam);
  ASSERT_EQ(embed->spec.nbytes(), adam->spec.nbytes());
  embed->storage_offset = adam->storage_offset;
  rewrite_manifest(dir, edited);
  const Caught load = catch_error([&] { rig.engine->load(dir); });
  EXPECT_TRUE(is_error(load, ErrorCode::kCorrupt,
                       {"checksum mismatch in checkpoint.h5 for tensor \"model/model.embed.weight\""}));
  EXPECT_TRUE(same_on_all_ranks(load.message));
  // Verify opens every dataset as well, and says which record is wrong.
  const VerifyReport report = verify_checkpoint(dir, MPI_COMM_WORLD);
  ASSERT_FALSE(report.ok());
  EXPECT_NE(report.problems[0].find("tensor \"model/model.embed.weight\": field "
                                    "storage_offset: the manifest records " +
                                    std::to_string(*adam->storage_offset) + ", but dataset "
                                    "/model/model.embed.weight in "),
            std::string::npos)
      << report.problems[0];
}

// The data file changed by another program (serial HDF5 adds an attribute
// and a dataset, as h5py would): its size no longer matches, and load and
// verify say so before reading a byte through the recorded offsets.
TEST(Hdf5StorageOffset, ADataFileRewrittenByAnotherProgramIsRefusedByItsSize) {
  SavedAtStep1 saved;
  EngineRig& rig = saved.rig;
  const fs::path& dir = saved.dir;
  const fs::path file = dir / "checkpoint.h5";
  const std::uint64_t recorded = Manifest::read(dir).files.at(0).size;
  if (world_rank() == 0) {
    const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    EXPECT_GE(f, 0);  // no ASSERT: the other ranks wait at the barrier below
    const hsize_t dims[1] = {1000};
    const hid_t space = H5Screate_simple(1, dims, nullptr);
    const hid_t d = H5Dcreate2(f, "/notes", H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT,
                               H5P_DEFAULT);
    std::vector<unsigned char> bytes(1000, 7);
    H5Dwrite(d, H5T_STD_U8LE, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data());
    H5Dclose(d);
    H5Sclose(space);
    H5Fclose(f);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const std::uint64_t now = fs::file_size(file);
  ASSERT_NE(now, recorded);
  const std::string says = "checkpoint.h5 is " + std::to_string(now) +
                           " bytes but the manifest records " + std::to_string(recorded);
  const Caught load = catch_error([&] { rig.engine->load(dir); });
  EXPECT_TRUE(is_error(load, ErrorCode::kCorrupt, {says}));
  EXPECT_TRUE(same_on_all_ranks(load.message));
  EXPECT_TRUE(throws_error([&] { (void)verify_checkpoint(dir, MPI_COMM_WORLD); },
                           ErrorCode::kCorrupt, {says}));
}

// Forwards to the reader it wraps, noting which tensors were read (or
// asked for in a read_some batch) on the thread that made it and which on
// another (load()'s read-ahead thread).
class ThreadNotingReader : public CheckpointReader {
 public:
  explicit ThreadNotingReader(std::unique_ptr<CheckpointReader> inner)
      : inner_(std::move(inner)) {}

  void read(const TensorRecord& tensor, const std::vector<Box>& boxes, void* out) override {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      (std::this_thread::get_id() == maker_ ? on_maker_ : elsewhere_).insert(tensor.spec.key());
    }
    inner_->read(tensor, boxes, out);
  }
  // The read-ahead thread's batches go to the wrapped reader's read_some.
  std::size_t read_some(const ReadRequest* requests, std::size_t count) override {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      auto& keys = std::this_thread::get_id() == maker_ ? on_maker_ : elsewhere_;
      for (std::size_t i = 0; i < count; ++i) keys.insert(requests[i].tensor->spec.key());
    }
    return inner_->read_some(requests, count);
  }
  std::vector<std::uint8_t> read_blob(const BlobRecord& blob) override {
    return inner_->read_blob(blob);
  }
  bool reads_independently() const override { return inner_->reads_independently(); }

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
  auto noting = std::make_unique<ThreadNotingReader>(std::move(checkpoint.reader));
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
  for (auto& s : trainer.state().tensors()) std::memset(s.data(), 0xAB, s.nbytes());
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
    restore_state(opened, trainer.state(), comm, /*verify=*/true, LoadOptions{});
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
TEST(Hdf5StorageOffset, AReadThatFailsOnTheReadAheadThreadFailsTheLoadOnEveryRank) {
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
    opened.reader = std::make_unique<h5::Hdf5Reader>(
        ReadContext{dir, opened.manifest, MPI_COMM_WORLD, *posix_file_system()});
    EXPECT_TRUE(opened.reader->reads_independently());
    ThreadNotingReader& noted = note_threads(opened);
    const std::string before = world_rank() == 0 ? tree_listing(saved.tmp.path()) : "";
    SimpleTrainer trainer;
    build_blank_state(trainer, Partition::kDim0);
    const Caught load = catch_error(
        [&] { restore_state(opened, trainer.state(), comm, true, LoadOptions{}); });
    EXPECT_TRUE(is_error(load, ErrorCode::kCorrupt,
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
    const std::string before = world_rank() == 0 ? tree_listing(saved.tmp.path()) : "";
    SimpleTrainer trainer;
    build_blank_state(trainer, Partition::kFlat);
    const Caught load = catch_error(
        [&] { restore_state(opened, trainer.state(), comm, true, LoadOptions{}); });
    EXPECT_TRUE(is_error(load, ErrorCode::kCorrupt,
                         {file.string() + ": the file ended at ",
                          "before its expected " + std::to_string(size) + " bytes (truncated)"}));
    EXPECT_TRUE(same_on_all_ranks(load.message));
    if (world_rank() == 0) {
      EXPECT_EQ(tree_listing(saved.tmp.path()), before);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  });
  // Opened again, the truncated file is refused by its size before any read.
  EXPECT_TRUE(throws_error([&] { saved.rig.engine->load(dir); }, ErrorCode::kCorrupt,
                           {"(truncated)"}));
}

// One read_some request per (tensor, boxes) of `plan`, into buffers of its
// own filled with 0xAB; compare() checks them against the expected bytes.
struct Requests {
  Requests(const Manifest& manifest,
           const std::vector<std::pair<std::string, std::vector<Box>>>& plan) {
    for (const auto& [key, boxes] : plan) {
      const TensorRecord& record = record_of(manifest, key);
      want.push_back(expected_bytes(record.spec, boxes));
      got.emplace_back(want.back().size(), 0xAB);
      list.push_back({&record, boxes, got.back().data()});
    }
  }
  // Calls read_some from request `from` on until every request is read or
  // one throws (rethrown); returns how many calls it made.
  std::size_t read_all(CheckpointReader& reader, std::size_t from = 0) {
    std::size_t calls = 0;
    while (from < list.size()) {
      const std::size_t n = reader.read_some(list.data() + from, list.size() - from);
      EXPECT_GE(n, 1u);
      from += n;
      ++calls;
    }
    return calls;
  }
  ::testing::AssertionResult holds(std::size_t i) const {
    if (got[i] == want[i]) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << list[i].tensor->spec.key() << " (request " << i
                                         << ") differs";
  }
  std::vector<std::vector<unsigned char>> want, got;
  std::vector<CheckpointReader::ReadRequest> list;
};

// Every tensor whole, a column block of each 2-d one (runs with gaps), and
// this rank's row of the 3-d one, out of file order: read_some reads them
// all in one call (runs sorted by offset, gaps read into scratch), exactly.
std::vector<std::pair<std::string, std::vector<Box>>> mixed_plan(const Manifest& manifest,
                                                                 int rank) {
  std::vector<std::pair<std::string, std::vector<Box>>> plan;
  for (auto t = manifest.tensors.rbegin(); t != manifest.tensors.rend(); ++t) {
    const Shape& shape = t->spec.shape;
    plan.push_back({t->spec.key(), {full_box(shape)}});
    if (shape.size() == 2 && shape[1] > 1) {
      plan.push_back({t->spec.key(), {Box{{0, u(rank) % shape[1]}, {shape[0], 1}}}});
    }
    if (shape.size() == 3) {
      plan.push_back({t->spec.key(), {Box{{u(rank) % shape[0], 0, 0}, {1, shape[1], shape[2]}},
                                      Box{{0, 0, 1}, {shape[0], shape[1], 2}}}});
    }
  }
  return plan;
}

TEST(Hdf5StorageOffset, ReadSomeReadsManyRequestsInOneCallExactly) {
  RegionKindsCheckpoint c;
  const Manifest& manifest = c.write();
  h5::Hdf5Reader reader(c.read_context(manifest));
  ASSERT_TRUE(reader.reads_independently());
  Requests requests(manifest, mixed_plan(manifest, c.rank));
  EXPECT_EQ(requests.read_all(reader), 1u);
  for (std::size_t i = 0; i < requests.list.size(); ++i) EXPECT_TRUE(requests.holds(i));
  EXPECT_EQ(reader.stats().batched, requests.list.size());
  EXPECT_EQ(reader.stats().transfers, 0u);
  // One batch read by read_gathered, none request by request.
  EXPECT_EQ(reader.read_some_stats().batches, 1u);
  EXPECT_EQ(reader.read_some_stats().batched_requests, requests.list.size());
  EXPECT_EQ(reader.read_some_stats().fallbacks, 0u);
  // A request for nothing (an empty box) among them, and one request alone.
  Requests few(manifest, {{"model/model.bias", {Box{{2}, {0}}}},
                          {"model/model.bias", {Box{{1}, {4}}}}});
  EXPECT_EQ(few.read_all(reader), 1u);
  EXPECT_TRUE(few.holds(1));
  Requests one(manifest, {{"model/model.bias", {Box{{0}, {6}}}}});
  EXPECT_EQ(one.read_all(reader), 1u);
  EXPECT_TRUE(one.holds(0));
  // The request alone is read() (counted in neither); the pair a batch.
  EXPECT_EQ(reader.read_some_stats().batches, 2u);
  EXPECT_EQ(reader.read_some_stats().fallbacks, 0u);
}

// Every tensor whole, in file order: read_some reads them with one preadv
// per stretch of tensors whose gaps are at most 16 KiB (read through), a
// new one after each longer gap; counted by the reader.
TEST(Hdf5StorageOffset, ReadSomeReadsTensorsThatLieTogetherInOneRead) {
  RegionKindsCheckpoint c;
  const Manifest& manifest = c.write();
  h5::Hdf5Reader reader(c.read_context(manifest));
  ASSERT_TRUE(reader.reads_independently());
  std::vector<const TensorRecord*> by_offset;
  for (const auto& t : manifest.tensors) {
    if (t.spec.nbytes() > 0) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorRecord* a, const TensorRecord* b) {
    return *a->storage_offset < *b->storage_offset;
  });
  ASSERT_GE(by_offset.size(), 2u);
  std::vector<std::pair<std::string, std::vector<Box>>> plan;
  std::uint64_t stretches = 1;
  for (std::size_t i = 0; i < by_offset.size(); ++i) {
    const TensorRecord& t = *by_offset[i];
    plan.push_back({t.spec.key(), {full_box(t.spec.shape)}});
    if (i == 0) continue;
    const TensorRecord& before = *by_offset[i - 1];
    const std::uint64_t end = *before.storage_offset + before.spec.nbytes();
    ASSERT_GE(*t.storage_offset, end);
    if (*t.storage_offset - end > (16u << 10)) ++stretches;
  }
  Requests requests(manifest, plan);
  EXPECT_EQ(requests.read_all(reader), 1u);
  for (std::size_t i = 0; i < requests.list.size(); ++i) EXPECT_TRUE(requests.holds(i));
  const GatheredReadStats stats = reader.read_some_stats();
  EXPECT_EQ(stats.batches, 1u);
  EXPECT_EQ(stats.batched_requests, plan.size());
  EXPECT_EQ(stats.gathered_reads, stretches);
  EXPECT_EQ(stats.fallbacks, 0u);
  // The first and last tensors alone, whatever lies between them: one read
  // if the gap is at most 16 KiB, else two.
  const TensorRecord& first = *by_offset.front();
  const TensorRecord& last = *by_offset.back();
  Requests ends(manifest, {plan.front(), plan.back()});
  EXPECT_EQ(ends.read_all(reader), 1u);
  EXPECT_TRUE(ends.holds(0));
  EXPECT_TRUE(ends.holds(1));
  const std::uint64_t gap =
      *last.storage_offset - (*first.storage_offset + first.spec.nbytes());
  EXPECT_EQ(reader.read_some_stats().gathered_reads - stats.gathered_reads,
            gap > (16u << 10) ? 2u : 1u);
}

// A request whose offset does not fit the file (a manifest not checked by
// the parser) ends the prefix before it; the next call, starting with it,
// throws read()'s error naming the tensor and the field. A data file cut
// after the reader opened it: the tensors before the cut are read, and
// the call that reaches the cut tensor throws read()'s "truncated" error.
TEST(Hdf5StorageOffset, ReadSomeStopsAtTheFirstRequestThatFails) {
  RegionKindsCheckpoint c;
  Manifest edited = c.write();
  const std::uint64_t size = fs::file_size(c.file());
  {
    ASSERT_NE(offset_bias_beyond_the_end(edited, size), nullptr);
    h5::Hdf5Reader reader(c.read_context(edited));
    const Box column{{0, 0}, {3, 1}};
    Requests requests(edited, {{"model/model.layers.0.mlp.weight", {column}},
                               {"model/encoder/block.0/scale", {column}},
                               {"model/model.bias", {Box{{0}, {6}}}},
                               {"model/encoder/block.0/scale", {Box{{0, 0}, {3, 5}}}}});
    EXPECT_EQ(reader.read_some(requests.list.data(), requests.list.size()), 2u);
    EXPECT_TRUE(requests.holds(0));
    EXPECT_TRUE(requests.holds(1));
    // Not read as a batch: request by request, counted as such.
    EXPECT_EQ(reader.read_some_stats().batches, 0u);
    EXPECT_EQ(reader.read_some_stats().fallbacks, 1u);
    EXPECT_EQ(reader.read_some_stats().fallback_requests, requests.list.size());
    EXPECT_TRUE(throws_error([&] { (void)requests.read_all(reader, 2); }, ErrorCode::kCorrupt,
                             {bias_beyond_the_end(size)}));
    EXPECT_EQ(requests.read_all(reader, 3), 1u);
    EXPECT_TRUE(requests.holds(3));
  }
  // The cut: in the last tensor by offset (the first one in it keeps its
  // bytes before the cut).
  const Manifest& manifest = c.manifest;
  std::vector<const TensorRecord*> by_offset;
  for (const auto& t : manifest.tensors) {
    if (t.spec.nbytes() > 0) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorRecord* a, const TensorRecord* b) {
    return *a->storage_offset < *b->storage_offset;
  });
  const TensorRecord& last = *by_offset.back();
  h5::Hdf5Reader reader(c.read_context(manifest));
  MPI_Barrier(MPI_COMM_WORLD);
  if (c.rank == 0) fs::resize_file(c.file(), *last.storage_offset + 1);
  MPI_Barrier(MPI_COMM_WORLD);
  std::vector<std::pair<std::string, std::vector<Box>>> plan;
  for (const TensorRecord* t : by_offset) plan.push_back({t->spec.key(), {full_box(t->spec.shape)}});
  Requests requests(manifest, plan);
  EXPECT_EQ(reader.read_some(requests.list.data(), requests.list.size()),
            requests.list.size() - 1);
  // The batch's preadv met the cut: read again request by request.
  EXPECT_EQ(reader.read_some_stats().batches, 0u);
  EXPECT_EQ(reader.read_some_stats().fallbacks, 1u);
  EXPECT_EQ(reader.read_some_stats().fallback_requests, requests.list.size());
  for (std::size_t i = 0; i + 1 < requests.list.size(); ++i) EXPECT_TRUE(requests.holds(i));
  EXPECT_TRUE(throws_error(
      [&] { (void)requests.read_all(reader, requests.list.size() - 1); }, ErrorCode::kCorrupt,
      {c.file().string() + ": the file ended at " + std::to_string(*last.storage_offset + 1),
       "(truncated)"}));
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace floe::test
