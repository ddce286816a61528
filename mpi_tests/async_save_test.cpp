// Asynchronous save (`async: true`) seen from the trainer and the disk: what
// is saved is the state at save(), errors of the background write surface at
// the next call on every rank with the previous checkpoint intact, the
// destructor waits, and a staging pool that cannot be allocated fails the
// save cleanly. Crashes during the background write: async_crash.sh.
#include <atomic>
#include <cstring>
#include <fstream>

#include "core/async_save.hpp"
#include "core/page_memory.hpp"
#include "core/staging_pool.hpp"
#include "core/state_snapshot.hpp"
#include "engine_fixture.hpp"
#include "floe/registry.hpp"
#include "io/faulty_file_system.hpp"

namespace floe::test {
namespace {

namespace fs = std::filesystem;

// The byte scribble() writes: a valid value of every dtype.
unsigned char scribble_byte(DType dtype) { return dtype == DType::kBool ? 0x01 : 0xA5; }

// Overwrites every tensor, scalar, blob and the metadata of `state`.
void scribble(State& state) {
  for (auto& shard : state.tensors()) {
    std::memset(shard.data(), scribble_byte(shard.spec().dtype), shard.nbytes());
  }
  state.set_scalar("lr", 99.0);
  state.set_scalar("optimizer_steps", std::int64_t{-1});
  state.set_blob("rng", std::vector<std::uint8_t>(3, 0xEE));
  state.metadata() = {{"run", "scribbled"}};
}

// Loads `dir`'s latest checkpoint into a fresh state with a synchronous
// engine and checks every value against the test state's.
::testing::AssertionResult latest_holds_expected(const fs::path& dir,
                                                 const std::string& engine) {
  SimpleTrainer fresh;
  build_test_state(fresh.state(), world_rank(), world_size(), Partition::kMixed);
  scribble(fresh.state());
  auto reader = make_test_engine(fresh, engine, dir);
  reader->load();
  auto values = state_holds_expected(fresh.state());
  if (!values) return values;
  if (fresh.state().scalar("lr") != Scalar(0.00025)) {
    return ::testing::AssertionFailure() << "scalar lr was not the saved one";
  }
  const auto* rng = fresh.state().blob("rng");
  if (!rng || rng->size() != 100u + world_rank()) {
    return ::testing::AssertionFailure() << "blob rng was not the saved one";
  }
  return ::testing::AssertionSuccess();
}

struct AsyncRig {
  explicit AsyncRig(const fs::path& dir, const std::string& engine,
                    nlohmann::json extra = nlohmann::json::object()) {
    build_test_state(trainer.state(), world_rank(), world_size(), Partition::kMixed);
    extra["async"] = true;
    this->engine = make_test_engine(trainer, engine, dir, extra);
  }
  void save_at(std::int64_t step) {
    trainer.progress_now.global_step = step;
    engine->save();
  }
  SimpleTrainer trainer;
  std::unique_ptr<CheckpointEngine> engine;
};

class AsyncSave : public ::testing::TestWithParam<std::string> {};

TEST_P(AsyncSave, ChangesAfterSaveReturnsDoNotReachTheCheckpoint) {
  run_within(std::chrono::seconds(120), [&] {
    TempDir tmp;
    AsyncRig rig(tmp / "ckpt", GetParam());
    rig.save_at(1);
    scribble(rig.trainer.state());  // the background write may still run
    rig.engine->wait();
    EXPECT_EQ(slurp(tmp / "ckpt" / "latest"), "global_step_1\n");
    EXPECT_EQ(listing(tmp / "ckpt"), "global_step_1 latest ");
    EXPECT_TRUE(latest_holds_expected(tmp / "ckpt", GetParam()));
    // The staged copy is reused: a second save from the scribbled state
    // saves the scribbled values, not the first snapshot's.
    rig.save_at(2);
    rig.engine->wait();
    SimpleTrainer fresh;
    build_test_state(fresh.state(), world_rank(), world_size(), Partition::kMixed);
    make_test_engine(fresh, GetParam(), tmp / "ckpt")->load();
    for (const auto& shard : fresh.state().tensors()) {
      for (std::uint64_t i = 0; i < shard.nbytes(); ++i) {
        ASSERT_EQ(static_cast<unsigned char>(shard.data()[i]),
                  scribble_byte(shard.spec().dtype))
            << shard.spec().key();
      }
    }
    EXPECT_EQ(fresh.state().scalar("lr"), Scalar(99.0));
  });
}

TEST_P(AsyncSave, LoadAndResumeWaitForTheSaveInFlight) {
  run_within(std::chrono::seconds(120), [&] {
    TempDir tmp;
    AsyncRig rig(tmp / "ckpt", GetParam());
    rig.save_at(3);
    scribble(rig.trainer.state());
    const Manifest m = rig.engine->load();  // waits, then loads step 3
    EXPECT_EQ(m.step, 3);
    EXPECT_TRUE(state_holds_expected(rig.trainer.state()));
    rig.save_at(4);
    scribble(rig.trainer.state());
    const auto resumed = rig.engine->resume();
    ASSERT_TRUE(resumed.has_value());
    EXPECT_EQ(resumed->step, 4);
    EXPECT_TRUE(state_holds_expected(rig.trainer.state()));
  });
}

TEST_P(AsyncSave, DestructorWaitsForTheCommit) {
  run_within(std::chrono::seconds(120), [&] {
    TempDir tmp;
    {
      SimpleTrainer trainer;
      build_test_state(trainer.state(), world_rank(), world_size(), Partition::kMixed);
      // The registry's engine, as a trainer gets it: its own destructor
      // must join the I/O thread before its part is gone.
      auto engine = make_engine(
          trainer, parse_config({{"type", GetParam()},
                                 {"output_dir", (tmp / "ckpt").string()},
                                 {"async", true}}));
      trainer.progress_now.global_step = 5;
      engine->save();
      scribble(trainer.state());
    }  // no wait(): the destructor joins the I/O thread
    EXPECT_EQ(slurp(tmp / "ckpt" / "latest"), "global_step_5\n");
    EXPECT_EQ(listing(tmp / "ckpt"), "global_step_5 latest ");
    EXPECT_TRUE(latest_holds_expected(tmp / "ckpt", GetParam()));
  });
}

// A background write that fails on `faulty_rank` surfaces at `next` (the
// next call) as the same Error on every rank, leaves step 1 as `latest` and
// no trace of step 2; the call after it works again.
void expect_background_failure(const std::string& engine, int faulty_rank,
                               const std::string& next) {
  TempDir tmp;
  AsyncRig rig(tmp / "ckpt", engine);
  rig.save_at(1);
  rig.engine->wait();
  const std::string before = listing(tmp / "ckpt");
  auto faulty = std::make_shared<FaultyFileSystem>();
  if (world_rank() == faulty_rank) faulty->add_rule({FsOp::kDataWrite, "", ENOSPC, 0, 1});
  rig.engine->set_file_system(faulty);
  const Caught at_save = catch_error([&] { rig.save_at(2); });
  EXPECT_FALSE(at_save.thrown) << "save() itself threw: " << at_save.message;
  const Caught caught = catch_error([&] {
    if (next == "wait") rig.engine->wait();
    if (next == "save") rig.save_at(3);
    if (next == "load") rig.engine->load();
    if (next == "latest_checkpoint_exists") rig.engine->latest_checkpoint_exists();
  });
  EXPECT_TRUE(is_error(caught, ErrorCode::kIo, {"No space left on device"})) << next;
  EXPECT_TRUE(same_on_all_ranks(caught.message)) << next;
  EXPECT_EQ(listing(tmp / "ckpt"), before) << next;
  EXPECT_EQ(slurp(tmp / "ckpt" / "latest"), "global_step_1\n") << next;
  // Surfaced once: the engine works again, and step 1 is intact.
  EXPECT_FALSE(catch_error([&] { rig.engine->wait(); }).thrown);
  EXPECT_TRUE(latest_holds_expected(tmp / "ckpt", engine));
  rig.save_at(6);
  rig.engine->wait();
  EXPECT_EQ(slurp(tmp / "ckpt" / "latest"), "global_step_6\n");
}

TEST_P(AsyncSave, BackgroundWriteErrorSurfacesAtTheNextCallOnEveryRank) {
  for (const char* next : {"wait", "save", "load", "latest_checkpoint_exists"}) {
    const int faulty_rank = world_size() - 1;  // not the coordinator when np > 1
    run_within(std::chrono::seconds(120),
               [&] { expect_background_failure(GetParam(), faulty_rank, next); });
  }
}

TEST_P(AsyncSave, CommitErrorOnRankZeroSurfacesOnEveryRank) {
  run_within(std::chrono::seconds(120), [&] {
    TempDir tmp;
    AsyncRig rig(tmp / "ckpt", GetParam());
    rig.save_at(1);
    rig.engine->wait();
    auto faulty = std::make_shared<FaultyFileSystem>();
    faulty->add_rule({FsOp::kWriteFile, "manifest.json", EIO, 0, 1});
    rig.engine->set_file_system(faulty);
    rig.save_at(2);
    const Caught caught = catch_error([&] { rig.engine->wait(); });
    EXPECT_TRUE(is_error(caught, ErrorCode::kIo, {"manifest.json"}));
    EXPECT_TRUE(same_on_all_ranks(caught.message));
    EXPECT_EQ(listing(tmp / "ckpt"), "global_step_1 latest ");
    EXPECT_EQ(slurp(tmp / "ckpt" / "latest"), "global_step_1\n");
  });
}

TEST_P(AsyncSave, PostSaveCallbacksRunAtTheCallThatSeesTheCommit) {
  run_within(std::chrono::seconds(120), [&] {
    TempDir tmp;
    AsyncRig rig(tmp / "ckpt", GetParam());
    std::vector<std::string> events;
    rig.engine->add_callback(CallbackEvent::kPreSave, [&](auto&) { events.push_back("pre"); });
    rig.engine->add_callback(CallbackEvent::kPostSave, [&](CheckpointEngine& e) {
      // Committed by the time it runs.
      events.push_back("post:" + slurp(e.config().output_dir / "latest"));
    });
    rig.save_at(1);
    EXPECT_EQ(events, (std::vector<std::string>{"pre"}));
    rig.engine->wait();
    EXPECT_EQ(events, (std::vector<std::string>{"pre", "post:global_step_1\n"}));
    rig.engine->wait();  // nothing in flight: no second post-save
    EXPECT_EQ(events.size(), 2u);
  });
}

// wait() is not collective: one rank may wait for the save in flight alone
// (to log its outcome, say); its post-save callbacks run there, without an
// agreement that would wait for the other ranks.
TEST_P(AsyncSave, OneRankMayWaitAlone) {
  run_within(std::chrono::seconds(120), [&] {
    TempDir tmp;
    AsyncRig rig(tmp / "ckpt", GetParam());
    int post_saves = 0;
    rig.engine->add_callback(CallbackEvent::kPostSave, [&](auto&) { ++post_saves; });
    rig.save_at(1);
    if (world_rank() == 0) {
      rig.engine->wait();
      EXPECT_EQ(post_saves, 1);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    rig.engine->wait();
    EXPECT_EQ(post_saves, 1);
  });
}

// The staging pool: a rank whose state does not fit (here: rank `rank`
// alone, through staging_pool_limit) fails the save on every rank at
// save(), with nothing written and the previous checkpoint still `latest`.
TEST_P(AsyncSave, StagingPoolThatCannotBeAllocatedFailsEveryRankCleanly) {
  for (int rank = 0; rank < world_size(); ++rank) {
    run_within(std::chrono::seconds(120), [&] {
      TempDir tmp;
      {
        AsyncRig first(tmp / "ckpt", GetParam());
        first.save_at(1);
        first.engine->wait();
      }
      const std::string before = listing(tmp / "ckpt");
      nlohmann::json limit = {{"staging_pool_limit", world_rank() == rank ? 1000 : 0}};
      AsyncRig rig(tmp / "ckpt", GetParam(), limit);
      const Caught caught = catch_error([&] { rig.save_at(2); });
      EXPECT_TRUE(is_error(caught, ErrorCode::kIo,
                           {"cannot allocate the staging pool", "staging_pool_limit"}));
      if (world_size() > 1) {
        EXPECT_NE(caught.message.find("rank " + std::to_string(rank) + ": "),
                  std::string::npos)
            << caught.message;
      }
      EXPECT_TRUE(same_on_all_ranks(caught.message));
      EXPECT_FALSE(catch_error([&] { rig.engine->wait(); }).thrown);
      EXPECT_EQ(listing(tmp / "ckpt"), before);
      EXPECT_EQ(slurp(tmp / "ckpt" / "latest"), "global_step_1\n");
    });
  }
}

// Many small tensors with two 12 MiB ones among them, saved three ways: from
// one buffer that holds them back to back (the runs of the data file join
// into writes of up to 32 MiB straight from it), from separate allocations
// (packed into a 16 MiB buffer, several times over), and asynchronously
// (from the staging pool, whose 64-byte slots are back to back for the half
// of the tensors whose size is a multiple of 64). Every byte must come back,
// on every rank.
TEST_P(AsyncSave, ManySmallTensorsComeBackExactlyHoweverTheyLieInMemory) {
  run_within(std::chrono::seconds(300), [&] {
    TempDir tmp;
    const std::uint64_t rank = static_cast<std::uint64_t>(world_rank());
    const std::uint64_t size = static_cast<std::uint64_t>(world_size());
    std::vector<std::uint64_t> cols;  // each tensor is [size, cols]; a rank has a row
    for (std::uint64_t i = 0; i < 1000; ++i) {
      cols.push_back(1024 * (1 + i % 9) + (i % 2) * 5);
    }
    cols.insert(cols.begin() + 300, std::uint64_t{3} << 20);
    cols.insert(cols.begin() + 700, std::uint64_t{3} << 20);
    std::uint64_t total = 0;
    for (auto c : cols) total += c;
    std::vector<float> memory(total);
    for (std::uint64_t i = 0; i < total; ++i) {
      memory[i] = static_cast<float>((i * 2654435761u + rank) % 100003);
    }
    // Adds the tensors to `state`: borrowing `memory` when `borrow`, else
    // in memory of the state's own, filled from `memory`.
    const auto build = [&](State& state, bool borrow) {
      std::uint64_t at = 0;
      for (std::size_t t = 0; t < cols.size(); ++t) {
        TensorSpec spec;
        spec.name = "layer." + std::to_string(t);
        spec.shape = {size, cols[t]};
        TensorShard& shard = state.add(spec, Region::box(Box{{rank, 0}, {1, cols[t]}}),
                                       borrow ? memory.data() + at : nullptr);
        if (!borrow) std::memcpy(shard.data(), memory.data() + at, shard.nbytes());
        at += cols[t];
      }
    };
    struct Way {
      const char* name;
      bool borrow, async;
    };
    for (const Way way : {Way{"back_to_back", true, false}, Way{"apart", false, false},
                          Way{"async", true, true}}) {
      SCOPED_TRACE(way.name);
      const fs::path dir = tmp / way.name;
      {
        SimpleTrainer trainer;
        build(trainer.state(), way.borrow);
        auto engine = make_test_engine(trainer, GetParam(), dir, {{"async", way.async}});
        trainer.progress_now.global_step = 1;
        engine->save();
        engine->wait();
      }
      SimpleTrainer fresh;
      build(fresh.state(), false);
      for (auto& shard : fresh.state().tensors()) std::memset(shard.data(), 0, shard.nbytes());
      make_test_engine(fresh, GetParam(), dir)->load();
      std::uint64_t at = 0, wrong = 0;
      for (const auto& shard : fresh.state().tensors()) {
        wrong += std::memcmp(shard.data(), memory.data() + at, shard.nbytes()) != 0;
        at += shard.region().elements();
      }
      EXPECT_EQ(wrong, 0u) << "tensors that came back different on rank " << rank;
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Engines, AsyncSave, ::testing::ValuesIn(resumable_engines()),
                         [](const auto& info) { return info.param; });

TEST(AsyncConfig, ExportEngineRejectsAsyncNamingTheKey) {
  const nlohmann::json json = {{"type", "hf"}, {"output_dir", "/tmp/x"}, {"async", true}};
  EXPECT_TRUE(throws_error([&] { parse_config(json); }, ErrorCode::kInvalidConfig,
                           {"\"async\"", "hf", "hdf5, mpiio"}));
}

TEST(AsyncConfig, StagingPoolLimitTakesByteSizes) {
  const nlohmann::json json = {
      {"type", "mpiio"}, {"output_dir", "/tmp/x"}, {"staging_pool_limit", "64MiB"}};
  EXPECT_EQ(parse_config(json).staging_pool_limit, 64u << 20);
  const nlohmann::json bad = {
      {"type", "mpiio"}, {"output_dir", "/tmp/x"}, {"staging_pool_limit", "lots"}};
  EXPECT_TRUE(throws_error([&] { parse_config(bad); }, ErrorCode::kInvalidConfig,
                           {"\"staging_pool_limit\""}));
}

TEST(AsyncConfig, ThreadLevelBelowMultipleNamesMpiInitThread) {
  for (int level : {MPI_THREAD_SINGLE, MPI_THREAD_FUNNELED, MPI_THREAD_SERIALIZED}) {
    EXPECT_TRUE(throws_error([&] { check_async_thread_level(level); },
                             ErrorCode::kUnsupported,
                             {"\"async\"", "MPI_THREAD_MULTIPLE", "MPI_Init_thread"}));
  }
  EXPECT_FALSE(catch_error([] { check_async_thread_level(MPI_THREAD_MULTIPLE); }).thrown);
  // This test binary initializes MPI with MPI_Init_thread(MULTIPLE).
  EXPECT_EQ(mpi_thread_level(), MPI_THREAD_MULTIPLE);
}

// The pool is allocated once and reused; it moves only when the state grows.
TEST(StagingPool, AllocatedOnceAndGrownOnlyWhenTheStateGrows) {
  State state;
  build_test_state(state, 0, 1, Partition::kMixed);
  StagingPool pool;
  StateSnapshot snapshot;
  State* first = &snapshot.capture(state, pool, nullptr, 0);
  const std::byte* data = pool.data();
  const std::uint64_t generation = pool.generation();
  EXPECT_GE(pool.capacity(), staging_bytes(state));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(data) % kPageBytes, 0u);
  EXPECT_EQ(&snapshot.capture(state, pool, nullptr, 0), first);
  EXPECT_EQ(pool.data(), data);
  EXPECT_EQ(pool.generation(), generation);
  EXPECT_TRUE(state_holds_expected(*first));
  fill_expected(state.add_model("model.extra", DType::kF32, {4096}, replicated_whole({4096})));
  State& grown = snapshot.capture(state, pool, nullptr, 0);
  EXPECT_GT(pool.generation(), generation);
  EXPECT_GE(pool.capacity(), staging_bytes(state));
  ASSERT_NE(grown.find("model/model.extra"), nullptr);
  EXPECT_TRUE(state_holds_expected(grown));
}

TEST(StagingPool, LimitBelowTheStateIsAClearErrorAndLeavesThePoolEmpty) {
  State state;
  build_test_state(state, 0, 1, Partition::kMixed);
  StagingPool pool;
  StateSnapshot snapshot;
  const std::string need = std::to_string(staging_bytes(state));
  EXPECT_TRUE(throws_error([&] { snapshot.capture(state, pool, nullptr, 64); },
                           ErrorCode::kIo,
                           {"cannot allocate the staging pool", need, "staging_pool_limit"}));
  EXPECT_EQ(pool.data(), nullptr);
  EXPECT_EQ(pool.capacity(), 0u);
}

}  // namespace
}  // namespace floe::test
