// Save on k ranks, load on m ranks, for every engine that can resume and
// every pair of rank counts this job has; values come back bit-identical.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "engine_fixture.hpp"
#include "io/read_only_file.hpp"
#include "trace_lines.hpp"

namespace floe::test {
namespace {

// An engine, and whether its loads exchange (load_exchange): every load of
// this suite runs both ways.
class Resharding : public ::testing::TestWithParam<std::tuple<std::string, bool>> {
 protected:
  const std::string& engine() const { return std::get<0>(GetParam()); }
  bool exchange() const { return std::get<1>(GetParam()); }
  // The loading engine's extra config.
  nlohmann::json load_config() const { return {{"load_exchange", exchange()}}; }
};

// Saves with the first `k` ranks under `partition`, then loads with the
// first `m` under another partition (with `exchange` as load_exchange),
// and checks every value. An exchange asked for is made, one turned off is
// not: the load's phase trace tells.
void save_then_load(const std::string& engine, bool exchange,
                    const std::filesystem::path& dir, int k, Partition save_as, int m,
                    Partition load_as) {
  {
    SubComm comm(k);
    if (comm.member()) {
      const int rank = comm.rank();
      SimpleTrainer trainer(comm.get());
      build_test_state(trainer.state(), rank, k, save_as);
      trainer.progress_now.global_step = 10 * k + m;
      trainer.progress_now.epoch = 2;
      make_test_engine(trainer, engine, dir)->save();
    }
  }
  SubComm comm(m);
  if (!comm.member()) return;
  const int rank = comm.rank();
  SimpleTrainer trainer(comm.get());
  build_test_state(trainer.state(), rank, m, load_as);
  for (auto& shard : trainer.state().tensors()) {
    std::memset(shard.data(), 0xAB, shard.nbytes());  // must be overwritten
  }
  trainer.state().set_scalar("lr", 1.0);
  trainer.state().clear_blobs();
  Manifest manifest;
  std::vector<std::string> traces;
  {
    const TraceLines lines(traces);
    manifest = make_test_engine(trainer, engine, dir,
                                {{"load_exchange", exchange}, {"trace_phases", true}})
                   ->load();
  }
  ASSERT_EQ(traces.size(), 1u);
  EXPECT_EQ(traces[0].find(" exchange ") != std::string::npos, exchange) << traces[0];
  EXPECT_EQ(manifest.step, 10 * k + m);
  EXPECT_EQ(manifest.epoch, 2);
  EXPECT_EQ(manifest.world_size, k);
  EXPECT_EQ(manifest.engine, engine);
  EXPECT_TRUE(state_holds_expected(trainer.state()))
      << "saved on " << k << " ranks, loaded on " << m;
  EXPECT_EQ(std::get<double>(*trainer.state().scalar("lr")), 0.00025);
  EXPECT_EQ(std::get<std::int64_t>(*trainer.state().scalar("optimizer_steps")), 1234);
  EXPECT_EQ(std::get<std::string>(*trainer.state().scalar("scheduler")), "cosine");
  EXPECT_EQ(std::get<bool>(*trainer.state().scalar("warmup_done")), true);
  EXPECT_EQ(trainer.state().metadata()["layers"], nlohmann::json({1, 2, 3}));
  const auto* rng = trainer.state().blob("rng");
  if (rank < k) {
    ASSERT_NE(rng, nullptr);
    ASSERT_EQ(rng->size(), static_cast<std::size_t>(100 + rank));
    EXPECT_EQ((*rng)[5], static_cast<std::uint8_t>(35 + rank));
  } else {
    EXPECT_EQ(rng, nullptr) << "rank " << rank << " did not exist when saving";
  }
}

TEST_P(Resharding, EveryPairOfRankCounts) {
  TempDir tmp;
  const int n = world_size();
  for (int k = 1; k <= n; ++k) {
    for (int m = 1; m <= n; ++m) {
      const auto dir = tmp / ("k" + std::to_string(k) + "m" + std::to_string(m));
      run_within(std::chrono::seconds(120), [&] {
        save_then_load(engine(), exchange(), dir, k, Partition::kMixed, m,
                       m % 2 ? Partition::kFlat : Partition::kDim0);
      });
    }
  }
}

TEST_P(Resharding, SamePartitionRoundTrip) {
  TempDir tmp;
  const int n = world_size();
  for (Partition p : {Partition::kDim0, Partition::kFlat, Partition::kMixed}) {
    const auto dir = tmp / ("p" + std::to_string(static_cast<int>(p)));
    save_then_load(engine(), exchange(), dir, n, p, n, p);
  }
}

TEST_P(Resharding, ReadsCheckpointsOfAnotherEngine) {
  TempDir tmp;
  const int n = world_size();
  for (const auto& writer : resumable_engines()) {
    const auto dir = tmp / writer;
    {
      SimpleTrainer trainer;
      build_test_state(trainer.state(), world_rank(), n, Partition::kDim0);
      trainer.progress_now.global_step = 5;
      make_test_engine(trainer, writer, dir)->save();
    }
    SimpleTrainer trainer;
    build_test_state(trainer.state(), world_rank(), n, Partition::kFlat);
    for (auto& shard : trainer.state().tensors()) std::memset(shard.data(), 0, shard.nbytes());
    const Manifest m = make_test_engine(trainer, engine(), dir, load_config())->load();
    EXPECT_EQ(m.engine, writer);
    EXPECT_TRUE(state_holds_expected(trainer.state()))
        << engine() << " loading what " << writer << " wrote";
  }
}

// A state in which most ranks hold nothing of most tensors: "few" has 2
// rows (dim-0 shards: ranks 2 and up hold none), "owned" is held whole by
// rank 0 as a flat range (the others: empty ranges, as a ZeRO partition of
// the flat parameters leaves them), "none" has no elements at all.
void build_sparse_state(State& state, int rank, int size) {
  state.add_model("few", DType::kF32, {2, 3}, dim0_shard({2, 3}, rank, size));
  const std::uint64_t owned = rank == 0 ? 10 : 0;
  state.add_model("owned", DType::kI64, {10}, Region::flat(FlatRange{0, owned}));
  state.add_model("none", DType::kF32, {0, 4}, dim0_shard({0, 4}, rank, size));
  for (auto& shard : state.tensors()) fill_expected(shard);
}

// Ranks whose region is empty write nothing and are not listed: every piece
// in the manifest holds bytes, the pieces of a tensor add up to its size,
// and the checkpoint loads (and verifies) on every rank count.
TEST_P(Resharding, ManifestListsNoEmptyPieces) {
  TempDir tmp;
  const int n = world_size();
  {
    SimpleTrainer trainer;
    build_sparse_state(trainer.state(), world_rank(), n);
    trainer.progress_now.global_step = 3;
    make_test_engine(trainer, engine(), tmp / "sparse")->save();
  }
  const Manifest manifest = Manifest::read(tmp / "sparse" / "global_step_3");
  for (const TensorRecord& t : manifest.tensors) {
    std::uint64_t bytes = 0;
    for (const PieceRecord& p : t.pieces) {
      EXPECT_GT(p.nbytes, 0u) << t.spec.key() << " rank " << p.rank;
      bytes += p.nbytes;
    }
    EXPECT_EQ(bytes, t.spec.nbytes()) << t.spec.key();
  }
  const auto pieces = [&](const char* key) {
    const TensorRecord* t = manifest.find(key);
    return t == nullptr ? std::size_t{999} : t->pieces.size();
  };
  EXPECT_EQ(pieces("model/few"), static_cast<std::size_t>(std::min(n, 2)));
  EXPECT_EQ(pieces("model/owned"), 1u);
  EXPECT_EQ(pieces("model/none"), 0u);
  for (int m = 1; m <= n; ++m) {
    SubComm comm(m);
    if (!comm.member()) continue;
    const int rank = comm.rank();
    SimpleTrainer trainer(comm.get());
    State& state = trainer.state();
    for (const char* name : {"few", "owned", "none"}) {
      const TensorRecord* t = manifest.find(std::string("model/") + name);
      ASSERT_NE(t, nullptr) << name;
      state.add_model(name, t->spec.dtype, t->spec.shape,
                      zero_flat_shard(t->spec.shape, rank, m));
    }
    for (auto& shard : state.tensors()) std::memset(shard.data(), 0xAB, shard.nbytes());
    make_test_engine(trainer, engine(), tmp / "sparse", load_config())->load();
    EXPECT_TRUE(state_holds_expected(state)) << "saved on " << n << " ranks, loaded on " << m;
  }
}

// A pipeline-parallel state in `stages` stages: rank r is in stage r %
// stages and lists only that stage's layers (of 4), each weight split by
// rows among the stage's ranks and its Adam state held whole by one of them
// (a ZeRO partition: the others list it with an empty range).
void build_stage_state(State& state, int rank, int size, int stages) {
  const int stage = rank % stages, me = rank / stages;
  const int stage_ranks = (size - stage + stages - 1) / stages;
  for (int layer = stage; layer < 4; layer += stages) {
    const std::string name = "layers." + std::to_string(layer) + ".weight";
    const Shape shape{6, 4};
    state.add_model(name, DType::kF32, shape, dim0_shard(shape, me, stage_ranks));
    const std::uint64_t owned = (layer / stages) % stage_ranks == me ? 24 : 0;
    state.add_optimizer(name, "exp_avg", DType::kF32, shape, Region::flat(FlatRange{0, owned}));
  }
  for (auto& shard : state.tensors()) fill_expected(shard);
}

// Saved in 2 stages (1 at 1 rank), where the ranks of a stage repeat one
// tensor list that is not rank 0's, it loads on every rank count, in 2
// stages or in one (every rank lists every layer).
TEST_P(Resharding, PipelineStagesListOnlyTheirLayers) {
  TempDir tmp;
  const int n = world_size();
  {
    SimpleTrainer trainer;
    build_stage_state(trainer.state(), world_rank(), n, std::min(n, 2));
    trainer.progress_now.global_step = 4;
    make_test_engine(trainer, engine(), tmp / "pp")->save();
  }
  const Manifest manifest = Manifest::read(tmp / "pp" / "global_step_4");
  EXPECT_EQ(manifest.tensors.size(), 8u);
  for (int m = 1; m <= n; ++m) {
    for (const int stages : {1, 2}) {
      if (stages > m) continue;
      SubComm comm(m);
      if (!comm.member()) continue;
      const int rank = comm.rank();
      SimpleTrainer trainer(comm.get());
      build_stage_state(trainer.state(), rank, m, stages);
      for (auto& shard : trainer.state().tensors()) std::memset(shard.data(), 0xAB, shard.nbytes());
      make_test_engine(trainer, engine(), tmp / "pp", load_config())->load();
      EXPECT_TRUE(state_holds_expected(trainer.state()))
          << "saved on " << n << " ranks, loaded on " << m << " in " << stages << " stages";
    }
  }
}

// At 16 ranks (CTest runs this one test there): save on all, load on 5.
TEST_P(Resharding, ManyRanksToFewer) {
  TempDir tmp;
  const int n = world_size();
  const int m = std::max(1, n * 5 / 16);
  run_within(std::chrono::seconds(240), [&] {
    save_then_load(engine(), exchange(), tmp / "many", n, Partition::kFlat, m,
                   Partition::kDim0);
  });
}

// Pages of [offset, offset + bytes) of `path` in the page cache.
std::uint64_t cached_pages(const std::filesystem::path& path, std::uint64_t offset,
                           std::uint64_t bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t from = offset / page * page;
  const std::size_t length = bytes + (offset - from);
  void* map = ::mmap(nullptr, length, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(from));
  ::close(fd);
  if (map == MAP_FAILED) return 0;
  std::vector<unsigned char> resident((length + page - 1) / page);
  std::uint64_t n = 0;
  if (::mincore(map, length, resident.data()) == 0) {
    for (unsigned char r : resident) n += r & 1;
  }
  ::munmap(map, length);
  return n;
}

// direct_io: a load reads large shards around the page cache, straight
// into the state (4 KiB-aligned, as its own shards of 64 KiB or more are),
// and gets the same values; off, it reads through the cache. The data
// file's cache is dropped before each load, and what the load brought back
// into it tells the two apart.
TEST_P(Resharding, DirectReadsLoadAroundThePageCache) {
  if (exchange()) GTEST_SKIP() << "load_exchange reads through its own buffers";
  TempDir tmp;
  const int n = world_size(), rank = world_rank();
  // 2 MiB a rank: rows of 4 KiB, each rank's rows 4 KiB-aligned in the file
  // and in memory.
  const std::uint64_t rows = 512 * static_cast<std::uint64_t>(n), cols = 1024;
  const auto build = [&](State& state, float seed) {
    TensorShard& shard = state.add_model(
        "big", DType::kF32, {rows, cols},
        Region::box(Box{{rows / n * rank, 0}, {rows / n, cols}}));
    auto* f = shard.data_as<float>();
    for (std::uint64_t i = 0; i < shard.region().elements(); ++i) {
      f[i] = seed + static_cast<float>((i * 7919 + rank) % 100003);
    }
  };
  SimpleTrainer saver;
  build(saver.state(), 0.0f);
  make_test_engine(saver, engine(), tmp.path())->save();
  for (const bool direct : {true, false}) {
    SCOPED_TRACE(direct ? "direct_io" : "page cache");
    SimpleTrainer loader;
    build(loader.state(), 0.5f);  // every value differs from the saved one
    // The largest file of the one checkpoint is its data file.
    std::filesystem::path data;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(tmp.path())) {
      if (!entry.is_regular_file()) continue;
      if (data.empty() || entry.file_size() > std::filesystem::file_size(data)) {
        data = entry.path();
      }
    }
    const std::uint64_t pages = std::filesystem::file_size(data) / 4096;
    const bool can = ReadOnlyFile(data, true).reads_direct();
    {
      const int fd = ::open(data.c_str(), O_RDONLY | O_CLOEXEC);
      ASSERT_GE(fd, 0);
      ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
      ::close(fd);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    make_test_engine(loader, engine(), tmp.path(), {{"direct_io", direct}})->load();
    MPI_Barrier(MPI_COMM_WORLD);
    const TensorShard& got = loader.state().tensors().front();
    const TensorShard& want = saver.state().tensors().front();
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.nbytes()), 0);
    const std::uint64_t cached = cached_pages(data, 0, std::filesystem::file_size(data));
    if (direct && can) {
      // Headers and metadata only.
      EXPECT_LT(cached, pages / 8) << cached << " of " << pages << " pages of " << data;
    } else {
      // Each rank's reads came through the cache (the kernel's read-ahead
      // may bring in more).
      EXPECT_GE(cached, pages / 2) << cached << " of " << pages << " pages of " << data;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Engines, Resharding,
    ::testing::Combine(::testing::ValuesIn(resumable_engines()),
                       ::testing::Bool()),
    [](const auto& info) {
      return std::get<0>(info.param) + (std::get<1>(info.param) ? "_exchange" : "");
    });

}  // namespace
}  // namespace floe::test
