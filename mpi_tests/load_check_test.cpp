// Checksums of large pieces on load. restore_state hashes a piece a rank
// loaded in place as it arrives from the read-ahead thread (both engines
// read on one by default): a piece of more than ReadAhead::kChunkBytes
// chunk by chunk, one of 1 MiB or more once read (a reader without a
// read-ahead thread hands those to a checker thread), and the mpiio engine
// hashes what it writes on a thread of its own. The shared test state's
// tensors are all under 1 MiB, so these tests give every rank pieces of
// just over 1 MiB and one of just over two chunks (no more: the sanitizer
// stages run them) between small ones: values load exactly, damage in any
// chunk of a large piece is found, a load whose regions are no saved piece
// (resharded) still checks every piece, the first damaged tensor in
// manifest order is the one named, whichever path found it, and `floe
// verify` finds damage in any chunk of a large piece. The ThreadSanitizer
// stage runs this suite.
#include <algorithm>
#include <cstring>
#include <fstream>

#include "commit/piece_check.hpp"
#include "commit/read_ahead.hpp"
#include "engine_fixture.hpp"

namespace floe::test {
namespace {

namespace fs = std::filesystem;

// Rows of 1024 F32 per rank: 260 rows are 1.02 MiB, 1 row 4 KiB.
constexpr std::uint64_t kCols = 1024;
constexpr std::uint64_t kLargeRows = 260;
constexpr std::uint64_t kSmallRows = 1;
// Two chunks and 4 rows: read (and hashed) in three chunks.
constexpr std::uint64_t kRowBytes = kCols * sizeof(float);
constexpr std::uint64_t kChunkedRows = 2 * ReadAhead::kChunkBytes / kRowBytes + 4;
constexpr std::uint64_t kChunkedBytes = kChunkedRows * kRowBytes;

// In manifest order (the order rank 0 adds them): large and small tensors
// alternate, so a problem found by the thread sits between inline ones.
const std::vector<std::pair<std::string, std::uint64_t>>& tensors() {
  static const std::vector<std::pair<std::string, std::uint64_t>> list = {
      {"large.a", kLargeRows}, {"small.b", kSmallRows}, {"large.c", kLargeRows},
      {"small.d", kSmallRows}, {"large.e", kLargeRows}, {"chunked.f", kChunkedRows}};
  return list;
}

std::string key_of(const std::string& name) { return "model/" + name; }

// Each rank holds a dim-0 shard of `rows` rows of every tensor, or with
// `shrink`, all of that but its last `shrink` rows: then no rank's region
// is a saved piece, as in a load at another world size.
void build_state(State& state, bool fill, std::uint64_t shrink = 0) {
  for (const auto& [name, rows] : tensors()) {
    const Shape shape{rows * static_cast<std::uint64_t>(world_size()), kCols};
    Region region = dim0_shard(shape, world_rank(), world_size());
    if (shrink > 0) {
      Box box = region.as_box();
      box.extent[0] -= std::min(shrink, box.extent[0] - 1);
      region = Region::box(box);
    }
    auto& shard = state.add_model(name, DType::kF32, shape, region);
    if (fill) fill_expected(shard);
  }
}

struct LargeRig {
  LargeRig(const fs::path& dir, const std::string& engine) : dir(dir) {
    build_state(trainer.state(), true);
    this->engine = make_test_engine(trainer, engine, dir);
  }
  // Saves the state as step 1; returns the checkpoint's directory.
  fs::path save_step_1() {
    trainer.progress_now.global_step = 1;
    engine->save();
    return dir / "global_step_1";
  }
  fs::path dir;
  SimpleTrainer trainer;
  std::unique_ptr<CheckpointEngine> engine;
};

// Where the `n` bytes at `needle` first occur in `bytes` from `from` on,
// or npos: one memmem, where std::string::find compares at every match of
// the first byte (under ThreadSanitizer, a checked memcmp each: most of
// this suite's time there before).
std::size_t find_bytes(const std::string& bytes, const char* needle, std::size_t n,
                       std::size_t from) {
  if (from > bytes.size()) return std::string::npos;
  const void* at = ::memmem(bytes.data() + from, bytes.size() - from, needle, n);
  return at ? static_cast<std::size_t>(static_cast<const char*>(at) - bytes.data())
            : std::string::npos;
}

// Flips the byte at `at_byte` (default: the first) of rank 0's piece of
// each tensor in `names`, found in the piece's data file by the piece's
// first 64 bytes (the test values are a hash of key and index: they occur
// once). Rank 0 edits; collective.
void damage(const fs::path& checkpoint, const State& saved,
            const std::vector<std::string>& names, std::uint64_t at_byte = 0) {
  std::string failure;
  if (world_rank() == 0) {
    const Manifest manifest = Manifest::read(checkpoint);
    for (const auto& name : names) {
      const TensorRecord* record = manifest.find(key_of(name));
      if (!record) {
        failure = "no record of " + name;
        break;
      }
      const auto piece = std::find_if(record->pieces.begin(), record->pieces.end(),
                                      [](const PieceRecord& p) { return p.rank == 0; });
      if (piece == record->pieces.end()) {
        failure = name + " has no piece of rank 0";
        break;
      }
      const fs::path file = checkpoint / piece->file;
      std::string bytes = slurp(file);
      const TensorShard* shard = saved.find(key_of(name));
      const char* const needle = reinterpret_cast<const char*>(shard->data());
      const std::size_t first = find_bytes(bytes, needle, 64, 0);
      if (first == std::string::npos ||
          find_bytes(bytes, needle, 64, first + 1) != std::string::npos) {
        failure = "the first bytes of " + name + " are not in " + file.string() + " once";
        break;
      }
      if (at_byte >= shard->nbytes()) {
        failure = "byte " + std::to_string(at_byte) + " is outside " + name + "'s piece";
        break;
      }
      const std::size_t at = first + at_byte;
      bytes[at] = static_cast<char>(bytes[at] ^ 0x01);
      std::ofstream(file, std::ios::binary | std::ios::in | std::ios::out)
          .seekp(static_cast<std::streamoff>(at))
          .put(bytes[at]);
    }
  }
  ASSERT_TRUE(same_on_all_ranks(failure)) << failure;
  ASSERT_EQ(failure, "");
}

class LoadCheck : public ::testing::TestWithParam<std::string> {};

TEST_P(LoadCheck, LargePiecesLoadExactly) {
  run_within(std::chrono::seconds(600), [&] {
    TempDir tmp;
    LargeRig rig(tmp / "ckpt", GetParam());
    rig.save_step_1();
    SimpleTrainer fresh;
    build_state(fresh.state(), false);
    const Manifest m = make_test_engine(fresh, GetParam(), tmp / "ckpt")->load();
    EXPECT_EQ(m.step, 1);
    EXPECT_TRUE(state_holds_expected(fresh.state()));
    const TensorShard* large = fresh.state().find(key_of("large.a"));
    ASSERT_NE(large, nullptr);
    EXPECT_GE(large->nbytes(), std::uint64_t{1} << 20);  // the checker thread's path
    const TensorShard* chunked = fresh.state().find(key_of("chunked.f"));
    ASSERT_NE(chunked, nullptr);
    EXPECT_GT(chunked->nbytes(), 2 * ReadAhead::kChunkBytes);  // read in 3 chunks
  });
}

// Damages `names`, loads with checksums on, and returns what the load threw
// with the checkpoint's listing before and after (a load changes nothing).
struct DamagedLoad {
  Caught caught;
  std::string listing_before, listing_after;
};

// Collective: what every damaged load must give, on every rank: kCorrupt
// with each of `parts` in its message, the same message on every rank, and
// the checkpoint directory as it was before the load.
::testing::AssertionResult refused_as_corrupt(const DamagedLoad& r,
                                              std::initializer_list<std::string> parts) {
  // same_on_all_ranks first: it is collective, so every rank calls it.
  ::testing::AssertionResult same = same_on_all_ranks(r.caught.message);
  ::testing::AssertionResult error = is_error(r.caught, ErrorCode::kCorrupt, parts);
  if (!error) return error;
  if (!same) return same;
  if (r.listing_after != r.listing_before) {
    return ::testing::AssertionFailure() << "the load changed the checkpoint directory:\n"
                                         << r.listing_before << "-> now:\n" << r.listing_after;
  }
  return ::testing::AssertionSuccess();
}

// Rewrites an hdf5 checkpoint's manifest without storage offsets, as an
// older Floe wrote it: its reader then reads collectively. Collective.
void drop_storage_offsets(const fs::path& checkpoint) {
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) {
    Manifest manifest = Manifest::read(checkpoint);
    for (auto& t : manifest.tensors) t.storage_offset.reset();
    std::ofstream(checkpoint / "manifest.json", std::ios::binary | std::ios::trunc)
        << manifest.dump();
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// With `shrink`, the load's regions are no saved piece (build_state).
// With `without_offsets`, the manifest is rewritten as Floe wrote it
// before it recorded hdf5 storage offsets: the hdf5 reader then reads
// collectively, with no read-ahead thread.
DamagedLoad load_damaged(const std::string& engine, const std::vector<std::string>& names,
                         std::uint64_t at_byte = 0, std::uint64_t shrink = 0,
                         bool without_offsets = false) {
  DamagedLoad out;
  TempDir tmp;
  LargeRig rig(tmp / "ckpt", engine);
  const fs::path checkpoint = rig.save_step_1();
  if (without_offsets) drop_storage_offsets(checkpoint);
  damage(checkpoint, rig.trainer.state(), names, at_byte);
  out.listing_before = listing(tmp / "ckpt");
  SimpleTrainer fresh;
  build_state(fresh.state(), false, shrink);
  out.caught = catch_error([&] { make_test_engine(fresh, engine, tmp / "ckpt")->load(); });
  out.listing_after = listing(tmp / "ckpt");
  return out;
}

TEST_P(LoadCheck, DamagedLargePieceIsFound) {
  run_within(std::chrono::seconds(600), [&] {
    const DamagedLoad r = load_damaged(GetParam(), {"large.e"});
    const std::string file = GetParam() == "mpiio" ? "data.bin" : "checkpoint.h5";
    EXPECT_TRUE(refused_as_corrupt(
        r, {"checksum mismatch in " + file, "\"model/large.e\"", "written by rank 0"}));
  });
}

// The last byte of a large piece: the whole piece is hashed, not a prefix
// of it.
TEST_P(LoadCheck, DamageInALargePiecesLastByteIsFound) {
  run_within(std::chrono::seconds(600), [&] {
    const std::uint64_t last = kLargeRows * kCols * sizeof(float) - 1;
    const DamagedLoad r = load_damaged(GetParam(), {"large.c"}, last);
    EXPECT_TRUE(refused_as_corrupt(
        r, {"checksum mismatch in", "\"model/large.c\"", "written by rank 0"}));
  });
}

// A piece read in chunks is hashed chunk by chunk as it arrives: damage in
// its first, a middle and its last chunk each fails the load with the
// piece's own message, and the load changes nothing on disk.
TEST_P(LoadCheck, DamageInAnyChunkOfAPieceReadInChunksIsFound) {
  run_within(std::chrono::seconds(600), [&] {
    const std::string file = GetParam() == "mpiio" ? "data.bin" : "checkpoint.h5";
    for (const std::uint64_t at : {std::uint64_t{0}, ReadAhead::kChunkBytes + 5,
                                   kChunkedBytes - 1}) {
      const DamagedLoad r = load_damaged(GetParam(), {"chunked.f"}, at);
      EXPECT_TRUE(refused_as_corrupt(
          r, {"checksum mismatch in " + file, "\"model/chunked.f\"", "(piece ",
              "written by rank 0"}))
          << "byte " << at;
      EXPECT_EQ(r.caught.message.find("more)"), std::string::npos) << r.caught.message;
    }
  });
}

// `floe verify` reads a large piece again a chunk at a time, with a reader
// whose reads are independent or collective (hdf5 without storage
// offsets): either way an intact checkpoint verifies with every byte
// counted, damage in the first, a middle or the last chunk of the piece is
// reported naming it, and the repaired file verifies again.
TEST_P(LoadCheck, VerifyFindsDamageInAnyChunkOfALargePiece) {
  run_within(std::chrono::seconds(600), [&] {
    for (const bool without_offsets : {false, true}) {
      if (without_offsets && GetParam() != "hdf5") continue;
      SCOPED_TRACE(without_offsets ? "collective reads" : "independent reads");
      TempDir tmp;
      LargeRig rig(tmp / "ckpt", GetParam());
      const fs::path checkpoint = rig.save_step_1();
      if (without_offsets) drop_storage_offsets(checkpoint);
      std::uint64_t state_bytes = 0;
      for (const auto& shard : rig.trainer.state().tensors()) state_bytes += shard.nbytes();
      state_bytes = static_cast<std::uint64_t>(world_size()) * state_bytes;
      VerifyReport report = verify_checkpoint(checkpoint, MPI_COMM_WORLD);
      EXPECT_TRUE(report.ok()) << report.problems.front();
      EXPECT_GE(report.bytes_checked, state_bytes);
      const fs::path intact = tmp / "intact";
      if (world_rank() == 0) fs::copy(checkpoint, intact);
      for (const std::uint64_t at : {std::uint64_t{0}, kCheckReadBytes + 5,
                                     kChunkedBytes - 1}) {
        damage(checkpoint, rig.trainer.state(), {"chunked.f"}, at);
        report = verify_checkpoint(checkpoint, MPI_COMM_WORLD);
        ASSERT_EQ(report.problems.size(), 1u) << "byte " << at;
        EXPECT_NE(report.problems[0].find("checksum mismatch"), std::string::npos)
            << report.problems[0];
        EXPECT_NE(report.problems[0].find("\"model/chunked.f\""), std::string::npos)
            << report.problems[0];
        if (world_rank() == 0) {  // repaired
          fs::remove_all(checkpoint);
          fs::copy(intact, checkpoint);
        }
        MPI_Barrier(MPI_COMM_WORLD);
      }
      report = verify_checkpoint(checkpoint, MPI_COMM_WORLD);
      EXPECT_TRUE(report.ok()) << report.problems.front();
    }
  });
}

// Forwards to another reader and records the bytes each read() asks for.
class RecordingReader : public CheckpointReader {
 public:
  explicit RecordingReader(CheckpointReader& inner) : inner_(inner) {}
  void read(const TensorRecord& tensor, const std::vector<Box>& boxes, void* out) override {
    std::uint64_t n = 0;
    for (const Box& box : boxes) n += box.elements() * dtype_size(tensor.spec.dtype);
    sizes.push_back(n);
    inner_.read(tensor, boxes, out);
  }
  std::vector<std::uint8_t> read_blob(const BlobRecord& blob) override {
    return inner_.read_blob(blob);
  }
  bool reads_independently() const override { return inner_.reads_independently(); }

  std::vector<std::uint64_t> sizes;  // of the reads since the last clear()

 private:
  CheckpointReader& inner_;
};

// check_pieces reads what a rank checks in reads of at most
// kCheckReadBytes whatever the reader: pieces larger are split, smaller
// ones joined (several pieces in one read), and each piece is hashed
// across the reads it spans. Rank 0 checks every piece of every tensor;
// with a collective reader (hdf5 in verify's mode) the other ranks join
// each of its reads with nothing to read, as collective_check_reads counts.
TEST_P(LoadCheck, PiecesAreCheckedInBoundedReads) {
  run_within(std::chrono::seconds(600), [&] {
    for (const bool check_structure : {false, true}) {
      if (check_structure && GetParam() != "hdf5") continue;
      SCOPED_TRACE(check_structure ? "verify's reader" : "load's reader");
      TempDir tmp;
      LargeRig rig(tmp / "ckpt", GetParam());
      const fs::path checkpoint = rig.save_step_1();
      const auto check_all = [&](std::vector<std::string>& problems) {
        OpenCheckpoint open =
            open_checkpoint(checkpoint, MPI_COMM_WORLD, *posix_file_system(), check_structure);
        RecordingReader reader(*open.reader);
        const Manifest& manifest = open.manifest;
        Assignment who(manifest.tensors.size(), 0);
        for (const TensorRecord& t : manifest.tensors) {
          for (std::size_t k = 0; k < t.pieces.size(); ++k) who.add_piece(0);
          who.end_tensor();
        }
        const std::vector<std::uint32_t> calls = collective_check_reads(
            reader, manifest.tensors, who, Comm(MPI_COMM_WORLD), [](std::size_t) { return true; });
        EXPECT_EQ(calls.empty(), !check_structure);
        PageBytes buffer;
        for (std::size_t t = 0; t < manifest.tensors.size(); ++t) {
          const TensorRecord& record = manifest.tensors[t];
          SCOPED_TRACE(record.spec.key());
          reader.sizes.clear();
          std::uint64_t pieces = 0, bytes = 0;
          std::uint32_t reads = 0;
          check_pieces(reader, record, who[t], world_rank(), calls.empty() ? 0 : calls[t],
                       buffer, problems, pieces, bytes, reads);
          EXPECT_EQ(reads, reader.sizes.size());
          if (!calls.empty()) {
            EXPECT_TRUE(same_on_all_ranks(std::to_string(calls[t])));
            EXPECT_EQ(reads, calls[t]);
          }
          const std::uint64_t piece_bytes = record.pieces.front().nbytes;
          std::uint64_t read_bytes = 0;
          for (const std::uint64_t n : reader.sizes) {
            EXPECT_LE(n, kCheckReadBytes);
            read_bytes += n;
          }
          if (world_rank() != 0) {
            EXPECT_EQ(read_bytes, 0u);
            EXPECT_EQ(pieces, 0u);
            if (calls.empty()) {
              EXPECT_EQ(reads, 0u);
            }
            continue;
          }
          const std::uint64_t n = record.pieces.size();
          EXPECT_EQ(pieces, n);
          EXPECT_EQ(read_bytes, n * piece_bytes);
          EXPECT_EQ(bytes, read_bytes);
          // One piece of 4 KiB a rank: all in one read. Just over 1 MiB:
          // two do not fit one read. Two chunks and 4 rows: three reads.
          const std::uint64_t expected = piece_bytes == kSmallRows * kRowBytes ? 1
                                         : piece_bytes == kLargeRows * kRowBytes ? n
                                                                                 : 3 * n;
          EXPECT_EQ(reader.sizes.size(), expected);
        }
      };
      std::vector<std::string> problems;
      check_all(problems);
      EXPECT_TRUE(problems.empty()) << problems.front();
      // Rank 0's 4 KiB piece of small.b shares its read with the others';
      // chunked.f's middle chunk is damaged in a piece read in three.
      damage(checkpoint, rig.trainer.state(), {"small.b"}, 7);
      damage(checkpoint, rig.trainer.state(), {"chunked.f"}, kCheckReadBytes + 5);
      problems.clear();
      check_all(problems);
      // EXPECT, not ASSERT: rank 0 must not leave the loop alone.
      if (world_rank() == 0) {
        EXPECT_EQ(problems.size(), 2u);
        problems.resize(2);
        EXPECT_NE(problems[0].find("\"model/small.b\" (piece"), std::string::npos) << problems[0];
        EXPECT_NE(problems[0].find("written by rank 0"), std::string::npos) << problems[0];
        EXPECT_NE(problems[1].find("\"model/chunked.f\""), std::string::npos) << problems[1];
      } else {
        EXPECT_TRUE(problems.empty());
      }
    }
  });
}

// A load whose regions are no saved piece reads the large shards in
// chunks without hashing them as they arrive; the pieces are then read
// again and checked whole. Values load exactly, and damage in rows no rank
// loads is still found.
TEST_P(LoadCheck, ALoadOfOtherRegionsStillChecksEveryPiece) {
  run_within(std::chrono::seconds(600), [&] {
    constexpr std::uint64_t kShrink = 8;
    TempDir tmp;
    LargeRig rig(tmp / "ckpt", GetParam());
    rig.save_step_1();
    SimpleTrainer fresh;
    build_state(fresh.state(), false, kShrink);
    EXPECT_NO_THROW(make_test_engine(fresh, GetParam(), tmp / "ckpt")->load());
    EXPECT_TRUE(state_holds_expected(fresh.state()));
    EXPECT_GT(fresh.state().find(key_of("chunked.f"))->nbytes(), ReadAhead::kChunkBytes);

    const DamagedLoad r = load_damaged(GetParam(), {"chunked.f"}, kChunkedBytes - 1, kShrink);
    EXPECT_TRUE(refused_as_corrupt(
        r, {"checksum mismatch in", "\"model/chunked.f\"", "written by rank 0"}));
  });
}

// Without a read-ahead thread (hdf5 without storage offsets reads
// collectively), large pieces go to the checker thread: damage in one, in
// any chunk, is still found and named.
TEST(LoadCheckWithoutReadAhead, TheCheckerThreadFindsDamagedLargePieces) {
  run_within(std::chrono::seconds(600), [&] {
    for (const auto& [name, at] : std::vector<std::pair<std::string, std::uint64_t>>{
             {"large.c", 0}, {"chunked.f", kChunkedBytes - 1}}) {
      const DamagedLoad r = load_damaged("hdf5", {name}, at, 0, /*without_offsets=*/true);
      EXPECT_TRUE(refused_as_corrupt(
          r, {"checksum mismatch in checkpoint.h5", "\"model/" + name + "\"",
              "written by rank 0"}))
          << name;
    }
  });
}

TEST_P(LoadCheck, FirstDamagedTensorInManifestOrderIsNamed) {
  run_within(std::chrono::seconds(600), [&] {
    // Found by the thread (large.c) before one found inline (small.d) ...
    const DamagedLoad thread_first = load_damaged(GetParam(), {"small.d", "large.c"});
    EXPECT_TRUE(is_error(thread_first.caught, ErrorCode::kCorrupt,
                         {"\"model/large.c\"", "(and 1 more)"}));
    EXPECT_EQ(thread_first.caught.message.find("small.d"), std::string::npos)
        << thread_first.caught.message;
    // ... and one found inline (small.b) before one found by the thread.
    const DamagedLoad inline_first = load_damaged(GetParam(), {"large.e", "small.b"});
    EXPECT_TRUE(is_error(inline_first.caught, ErrorCode::kCorrupt,
                         {"\"model/small.b\"", "(and 1 more)"}));
    EXPECT_EQ(inline_first.caught.message.find("large.e"), std::string::npos)
        << inline_first.caught.message;
    EXPECT_TRUE(same_on_all_ranks(thread_first.caught.message + inline_first.caught.message));
  });
}

INSTANTIATE_TEST_SUITE_P(Engines, LoadCheck, ::testing::ValuesIn(resumable_engines()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace floe::test
