// The two-phase load (commit/exchange_read): every rank reads one part of
// the data file and MPI moves the bytes to the ranks that asked for them.
// Checked here, for both resumable engines: every partition (dim-0 rows,
// flat ranges, replicated tensors) comes back exact through rounds of
// every size (a round of 97 bytes splits runs, tensors and parts), with
// each part read once; no exchange (and no read) where the reader cannot
// make one; and a read that fails in one rank's part fails on every rank
// with the reader's error, the checkpoint untouched.
// engine_resharding_test runs its load matrix with the exchange on and off.
#include "commit/exchange_read.hpp"

#include <cstring>
#include <fstream>

#include "commit/load_match.hpp"
#include "engine_fixture.hpp"
#include "floe/checkpoint.hpp"
#include "trace_lines.hpp"

namespace floe::test {
namespace {

namespace fs = std::filesystem;

class ExchangeRead : public ::testing::TestWithParam<std::string> {};

// Saves the test state, split as `partition` at this job's world size, as
// checkpoint global_step_1 in `dir`; returns that checkpoint's directory.
fs::path save_state(const std::string& engine, const fs::path& dir,
                    Partition partition) {
  SimpleTrainer trainer;
  build_test_state(trainer.state(), world_rank(), world_size(), partition);
  trainer.progress_now.global_step = 1;
  make_test_engine(trainer, engine, dir)->save();
  return dir / "global_step_1";
}

// This rank's part of the test state under `partition`, every byte 0xAB,
// and its shards in the order of the manifest's tensors.
struct Loading {
  Loading(const OpenCheckpoint& opened, Partition partition) {
    build_test_state(trainer.state(), world_rank(), world_size(), partition);
    for (auto& shard : trainer.state().tensors()) {
      std::memset(shard.data(), 0xAB, shard.nbytes());
    }
    shards = match_state(opened, trainer.state(), Comm(MPI_COMM_WORLD), false,
                         LoadOptions{})
                 .shards;
  }
  ExchangeStats exchange(const OpenCheckpoint& opened,
                         std::uint64_t round_bytes = kExchangeRoundBytes) {
    return exchange_read(*opened.reader, opened.manifest.tensors, shards,
                         Comm(MPI_COMM_WORLD), round_bytes);
  }
  SimpleTrainer trainer;
  std::vector<TensorShard*> shards;
};

std::uint64_t sum(std::uint64_t value) {
  return Comm(MPI_COMM_WORLD).allreduce_sum(value);
}

TEST_P(ExchangeRead, EveryPartitionComesBackThroughRoundsOfEverySize) {
  TempDir tmp;
  const fs::path dir = save_state(GetParam(), tmp / "ckpt", Partition::kMixed);
  run_within(std::chrono::seconds(120), [&] {
    const OpenCheckpoint opened = open_checkpoint(dir, MPI_COMM_WORLD);
    const std::uint64_t file_size = opened.manifest.files.at(0).size;
    for (Partition p :
         {Partition::kDim0, Partition::kFlat, Partition::kMixed}) {
      for (const std::uint64_t round :
           {std::uint64_t{97}, std::uint64_t{4096}, kExchangeRoundBytes}) {
        SCOPED_TRACE("partition " + std::to_string(static_cast<int>(p)) +
                     ", rounds of " + std::to_string(round) + " bytes");
        Loading loading(opened, p);
        const ExchangeStats stats = loading.exchange(opened, round);
        ASSERT_TRUE(stats.used);
        EXPECT_TRUE(state_holds_expected(loading.trainer.state()));
        // The same rounds on every rank; small rounds make many.
        const Comm comm(MPI_COMM_WORLD);
        EXPECT_EQ(comm.allreduce_max(stats.rounds),
                  comm.allreduce_min(stats.rounds));
        EXPECT_GE(stats.rounds, 1u);
        if (round == 97) {
          EXPECT_GT(stats.rounds, 10u);
        }
        // Each byte of the file is read at most once (the parts do not
        // overlap), however many ranks asked for it.
        const std::uint64_t read = sum(stats.read_bytes);
        EXPECT_GT(read, 0u);
        EXPECT_LE(read, file_size);
        EXPECT_GE(sum(stats.reads), 1u);
        if (world_size() > 1) {
          EXPECT_GT(sum(stats.sent_bytes), 0u);
        }
      }
    }
  });
}

// Where the reader does not allow an exchange on some rank, every rank
// returns having read nothing, with no round: an hdf5 checkpoint whose
// manifest lacks the storage offsets (written before Floe recorded them:
// its tensors are read through HDF5), and a state whose shards hold no
// bytes. The caller then reads as without it.
TEST_P(ExchangeRead, NoExchangeWhereTheReaderCannotMakeOne) {
  TempDir tmp;
  const fs::path dir = save_state(GetParam(), tmp / "ckpt", Partition::kDim0);
  run_within(std::chrono::seconds(120), [&] {
    if (GetParam() == "hdf5") {
      Manifest old = Manifest::read(dir);
      for (auto& t : old.tensors) t.storage_offset.reset();
      MPI_Barrier(MPI_COMM_WORLD);
      if (world_rank() == 0)
        std::ofstream(dir / "manifest.json", std::ios::binary) << old.dump();
      MPI_Barrier(MPI_COMM_WORLD);
      const OpenCheckpoint opened = open_checkpoint(dir, MPI_COMM_WORLD);
      Loading loading(opened, Partition::kDim0);
      const ExchangeStats none = loading.exchange(opened);
      EXPECT_FALSE(none.used);
      EXPECT_EQ(none.rounds + none.read_bytes + none.reads + none.sent_bytes,
                0u);
      for (const TensorShard* shard : loading.shards) {
        if (shard == nullptr || shard->nbytes() == 0) continue;
        EXPECT_EQ(static_cast<unsigned char>(shard->data()[0]), 0xAB)
            << shard->spec().key();
      }
    }
    const OpenCheckpoint opened = open_checkpoint(dir, MPI_COMM_WORLD);
    Loading loading(opened, Partition::kDim0);
    std::vector<TensorShard*> none(loading.shards.size(), nullptr);
    const ExchangeStats stats = exchange_read(
        *opened.reader, opened.manifest.tensors, none, Comm(MPI_COMM_WORLD));
    EXPECT_FALSE(stats.used);
    EXPECT_EQ(stats.rounds, 0u);
  });
}

// One byte into the tensor whose bytes lie last in the data file.
std::uint64_t inside_last_tensor(const Manifest& manifest) {
  std::uint64_t last = 0;
  for (const TensorRecord& t : manifest.tensors) {
    if (t.spec.nbytes() < 2) continue;
    if (t.storage_offset) last = std::max(last, *t.storage_offset);  // hdf5
    for (const PieceRecord& p : t.pieces)
      last = std::max(last, p.offset);  // mpiio
  }
  return last + 1;
}

// The data file cut (after the readers opened it) inside its last tensor:
// the rank whose part holds the cut fails to read it, and every rank
// throws that rank's error once the rounds are over; nothing committed
// changes.
TEST_P(ExchangeRead, AReadThatFailsInOnePartFailsOnEveryRank) {
  TempDir tmp;
  const fs::path dir = save_state(GetParam(), tmp / "ckpt", Partition::kFlat);
  run_within(std::chrono::seconds(120), [&] {
    const OpenCheckpoint opened = open_checkpoint(dir, MPI_COMM_WORLD);
    Loading loading(opened, Partition::kDim0);
    // Every rank's reader opens the file now (the mpiio reader opens it at
    // its first read).
    const TensorRecord& tensor = opened.manifest.tensors.at(0);
    std::vector<char> whole(tensor.spec.nbytes());
    opened.reader->read(
        tensor, Region::whole(tensor.spec.shape).boxes(tensor.spec.shape),
        whole.data());
    const fs::path data = dir / opened.manifest.files.at(0).path;
    const std::uint64_t size = opened.manifest.files.at(0).size;
    const std::string manifest_before = slurp(dir / "manifest.json");
    MPI_Barrier(MPI_COMM_WORLD);
    const std::uint64_t cut = inside_last_tensor(opened.manifest);
    ASSERT_LT(cut, size);
    if (world_rank() == 0) fs::resize_file(data, cut);
    MPI_Barrier(MPI_COMM_WORLD);
    const Caught caught = catch_error([&] { loading.exchange(opened, 4096); });
    EXPECT_TRUE(is_error(caught, ErrorCode::kCorrupt,
                         {data.string() + ": the file ended at " +
                          std::to_string(cut) + ", before its expected " +
                          std::to_string(size) + " bytes (truncated)"}))
        << caught.message;
    EXPECT_TRUE(same_on_all_ranks(caught.message));
    EXPECT_EQ(slurp(dir / "manifest.json"), manifest_before);
    EXPECT_EQ(slurp(tmp / "ckpt" / "latest"), "global_step_1\n");
    MPI_Barrier(MPI_COMM_WORLD);
  });
}

// A load through the exchange (its phase trace lists it) still checks
// every piece's checksum: a
// byte flipped inside the data file's last tensor fails the load on every
// rank with kCorrupt naming the file and that tensor; nothing committed
// changes.
TEST_P(ExchangeRead, AFlippedByteFailsTheLoadOnEveryRank) {
  TempDir tmp;
  const fs::path dir = save_state(GetParam(), tmp / "ckpt", Partition::kMixed);
  const Manifest manifest = Manifest::read(dir);
  const fs::path data = dir / manifest.files.at(0).path;
  const std::uint64_t at = inside_last_tensor(manifest);
  std::string last;  // the key of the tensor holding byte `at`
  for (const TensorRecord& t : manifest.tensors) {
    if (t.spec.nbytes() < 2) continue;
    if (t.storage_offset && *t.storage_offset + 1 == at) last = t.spec.key();
    for (const PieceRecord& p : t.pieces) {
      if (p.offset + 1 == at) last = t.spec.key();
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) {
    std::fstream f(data, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(at));
    const char byte = static_cast<char>(f.get() ^ 0x10);
    f.seekp(static_cast<std::streamoff>(at));
    f.put(byte);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const std::string manifest_before = slurp(dir / "manifest.json");
  run_within(std::chrono::seconds(120), [&] {
    SimpleTrainer trainer;
    build_test_state(trainer.state(), world_rank(), world_size(),
                     Partition::kDim0);
    auto engine =
        make_test_engine(trainer, GetParam(), tmp / "ckpt",
                         {{"load_exchange", true}, {"trace_phases", true}});
    std::vector<std::string> traces;
    Caught caught;
    {
      const TraceLines lines(traces);
      caught = catch_error([&] { engine->load(); });
    }
    // The bytes came through the exchange, and were still checked.
    ASSERT_EQ(traces.size(), 1u);
    EXPECT_NE(traces[0].find(" exchange "), std::string::npos) << traces[0];
    EXPECT_TRUE(is_error(caught, ErrorCode::kCorrupt,
                         {"checksum mismatch in " + manifest.files.at(0).path,
                          "\"" + last + "\""}))
        << caught.message;
    EXPECT_TRUE(same_on_all_ranks(caught.message));
    EXPECT_EQ(slurp(dir / "manifest.json"), manifest_before);
    EXPECT_EQ(slurp(tmp / "ckpt" / "latest"), "global_step_1\n");
  });
}

INSTANTIATE_TEST_SUITE_P(Engines, ExchangeRead,
                         ::testing::ValuesIn(resumable_engines()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace floe::test
