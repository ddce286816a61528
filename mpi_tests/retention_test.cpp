// Retention off the save's critical path: a save renames the checkpoints it
// drops to .deleting-<tag> and returns; rank 0's background deleter removes
// them (commit/background_deleter.hpp). Slow and failing deletions come from
// the file-system seam's hold and fault rules, not from timing.
#include <mutex>
#include <thread>

#include "commit/background_deleter.hpp"
#include "commit/paths.hpp"
#include "engine_fixture.hpp"
#include "io/faulty_file_system.hpp"

namespace floe::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A file system that holds every removal of a .deleting-* directory on
// rank 0 (the only rank that deletes) until release().
std::shared_ptr<FaultyFileSystem> holding_deletions() {
  auto faulty = std::make_shared<FaultyFileSystem>();
  faulty->set_hold_limit(20s);
  if (world_rank() == 0) {
    FaultRule rule{FsOp::kRemoveAll, kDeletingPrefix, 0, 0, -1};
    rule.hold = true;
    faulty->add_rule(rule);
  }
  return faulty;
}

// Saves steps 1 and 2 (the rig keeps one), the second on a file system
// that holds its deletion of step 1 (holding_deletions); returns that file
// system. set_file_system() waits for save 1 first, async or not.
std::shared_ptr<FaultyFileSystem> save_two_holding_the_deletion(EngineRig& rig) {
  rig.save_at(1);
  auto faulty = holding_deletions();
  rig.engine->set_file_system(faulty);
  rig.save_at(2);
  return faulty;
}

// Releases the holds `delay` from now, on a thread of its own: a call that
// returns before then did not wait for the deletion.
std::thread release_after(std::shared_ptr<FaultyFileSystem> faulty,
                          std::chrono::milliseconds delay) {
  return std::thread([faulty, delay] {
    std::this_thread::sleep_for(delay);
    faulty->release();
  });
}

// Collects the warnings logged on any thread until destroyed.
class Warnings {
 public:
  Warnings() {
    set_log_sink([this](LogLevel, const std::string& m) {
      std::lock_guard<std::mutex> lock(mutex_);
      seen_.push_back(m);
    });
  }
  ~Warnings() { set_log_sink(nullptr); }
  std::vector<std::string> seen() {
    std::lock_guard<std::mutex> lock(mutex_);
    return seen_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> seen_;
};

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class Retention : public ::testing::TestWithParam<std::string> {};

TEST_P(Retention, SaveReturnsBeforeASlowDeletionFinishes) {
  TempDir tmp;
  const fs::path dir = tmp / "ckpt";
  EngineRig rig(dir, GetParam(), {{"keep_last_n", 1}});
  auto faulty = save_two_holding_the_deletion(rig);
  if (world_rank() == 0) {
    // No hold ran out inside save(): it returned while its deletion of
    // step 1 is still (or about to be) held.
    EXPECT_EQ(faulty->injected(), 0);
    EXPECT_TRUE(faulty->wait_held(1, 20s));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(listing(dir), ".deleting-global_step_1 global_step_2 latest ");
  EXPECT_EQ(slurp(dir / "latest"), "global_step_2\n");
  MPI_Barrier(MPI_COMM_WORLD);
  faulty->release();
  rig.engine->wait();
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(listing(dir), "global_step_2 latest ");
  // Retention still keeps exactly keep_last_n.
  for (int step = 3; step <= 5; ++step) {
    rig.save_at(step);
    rig.engine->wait();
    MPI_Barrier(MPI_COMM_WORLD);
    EXPECT_EQ(listing(dir), "global_step_" + std::to_string(step) + " latest ");
  }
}

TEST_P(Retention, FailedDeletionWarnsAndTheNextStartFinishesIt) {
  TempDir tmp;
  const fs::path dir = tmp / "ckpt";
  {
    EngineRig rig(dir, GetParam(), {{"keep_last_n", 1}});
    rig.save_at(1);
    auto faulty = std::make_shared<FaultyFileSystem>();
    if (world_rank() == 0) {
      faulty->add_rule({FsOp::kRemoveAll, kDeletingPrefix, EIO, 0, -1});
    }
    rig.engine->set_file_system(faulty);
    Warnings warnings;
    EXPECT_FALSE(catch_error([&] { rig.save_at(2); }).thrown);
    rig.engine->wait();
    on_rank0_then_barrier([&] {
      const auto seen = warnings.seen();
      ASSERT_EQ(seen.size(), 1u);
      EXPECT_TRUE(contains(seen[0], (dir / ".deleting-global_step_1").string()))
          << seen[0];
      EXPECT_TRUE(contains(seen[0], "Input/output error")) << seen[0];
    });
    EXPECT_EQ(listing(dir), ".deleting-global_step_1 global_step_2 latest ");
    EXPECT_EQ(slurp(dir / "latest"), "global_step_2\n");
    EXPECT_TRUE(verify_checkpoint(dir / "global_step_2", MPI_COMM_WORLD).ok());
  }
  EngineRig fresh(dir, GetParam(), {{"keep_last_n", 1}});
  const auto resumed = fresh.engine->resume();
  ASSERT_TRUE(resumed.has_value());
  EXPECT_EQ(resumed->step, 2);
  EXPECT_EQ(listing(dir), "global_step_2 latest ");
}

// Once `latest` names the new checkpoint the save has succeeded: a
// retention step that fails then (here the rename aside) is a warning, and
// the checkpoint it could not rename is kept, whole.
TEST_P(Retention, FailedRenameAsideWarnsAndKeepsTheCheckpoint) {
  TempDir tmp;
  const fs::path dir = tmp / "ckpt";
  EngineRig rig(dir, GetParam(), {{"keep_last_n", 1}});
  rig.save_at(1);
  auto faulty = std::make_shared<FaultyFileSystem>();
  if (world_rank() == 0) {
    faulty->add_rule({FsOp::kRename, kDeletingPrefix, EACCES, 0, 1});
  }
  rig.engine->set_file_system(faulty);
  Warnings warnings;
  EXPECT_FALSE(catch_error([&] { rig.save_at(2); }).thrown);
  rig.engine->wait();
  on_rank0_then_barrier([&] {
    const auto seen = warnings.seen();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_TRUE(contains(seen[0], "global_step_2 is committed")) << seen[0];
    EXPECT_TRUE(contains(seen[0], "Permission denied")) << seen[0];
  });
  EXPECT_EQ(listing(dir), "global_step_1 global_step_2 latest ");
  EXPECT_EQ(slurp(dir / "latest"), "global_step_2\n");
  EXPECT_TRUE(verify_checkpoint(dir / "global_step_1", MPI_COMM_WORLD).ok());
  rig.save_at(3);  // the next retention drops both
  rig.engine->wait();
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(listing(dir), "global_step_3 latest ");
}

// wait() and the destructor return only once the deletions are done.
TEST_P(Retention, WaitAndTheDestructorFinishPendingDeletions) {
  TempDir tmp;
  for (const bool destroy : {false, true}) {
    const fs::path dir = tmp / (destroy ? "destroyed" : "waited");
    EngineRig rig(dir, GetParam(), {{"keep_last_n", 1}});
    auto faulty = save_two_holding_the_deletion(rig);
    std::thread releaser;
    if (world_rank() == 0) releaser = release_after(faulty, 300ms);
    if (destroy) {
      rig.engine.reset();
    } else {
      rig.engine->wait();
    }
    if (world_rank() == 0) {  // before the releaser is joined
      EXPECT_EQ(listing(dir), "global_step_2 latest ")
          << (destroy ? "destructor" : "wait()");
      releaser.join();
    }
    MPI_Barrier(MPI_COMM_WORLD);
    EXPECT_EQ(listing(dir), "global_step_2 latest ");
  }
}

// The next save waits for the previous retention before it writes (the disk
// never holds more old checkpoints than when deletion was synchronous); an
// asynchronous save waits on its I/O thread, not in save().
TEST_P(Retention, TheNextSaveWaitsForThePreviousDeletions) {
  TempDir tmp;
  for (const bool async : {false, true}) {
    const fs::path dir = tmp / (async ? "async" : "sync");
    EngineRig rig(dir, GetParam(), {{"keep_last_n", 1}, {"async", async}});
    auto faulty = save_two_holding_the_deletion(rig);
    if (async) {
      rig.save_at(3);  // waits for save 2, whose deletion is held
      if (world_rank() == 0) {
        EXPECT_EQ(faulty->injected(), 0) << "save() waited for the deletion";
        EXPECT_TRUE(faulty->wait_held(1, 20s));
      }
      MPI_Barrier(MPI_COMM_WORLD);
      faulty->release();
      rig.engine->wait();
    } else {
      std::thread releaser;
      if (world_rank() == 0) releaser = release_after(faulty, 300ms);
      rig.save_at(3);
      if (world_rank() == 0) {
        EXPECT_FALSE(fs::exists(dir / ".deleting-global_step_1"))
            << "save 3 wrote before save 2's retention was done";
        releaser.join();
      }
      rig.engine->wait();
    }
    MPI_Barrier(MPI_COMM_WORLD);
    EXPECT_EQ(listing(dir), "global_step_3 latest ")
        << (async ? "async" : "sync");
  }
}

// Another engine's start in this process leaves a .deleting-* directory that
// a deleter is removing to that deleter: no second remove_all races it.
TEST_P(Retention, RecoverLeavesADeletionInProgressToItsDeleter) {
  TempDir tmp;
  const fs::path dir = tmp / "ckpt";
  EngineRig rig(dir, GetParam(), {{"keep_last_n", 1}});
  auto faulty = save_two_holding_the_deletion(rig);
  if (world_rank() == 0) {
    EXPECT_TRUE(faulty->wait_held(1, 20s));
  }
  EngineRig other(dir, GetParam());
  const auto resumed = other.engine->resume();  // recover() first
  ASSERT_TRUE(resumed.has_value());
  EXPECT_EQ(resumed->step, 2);
  EXPECT_EQ(listing(dir), ".deleting-global_step_1 global_step_2 latest ");
  MPI_Barrier(MPI_COMM_WORLD);
  faulty->release();
  rig.engine->wait();
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(listing(dir), "global_step_2 latest ");
}

INSTANTIATE_TEST_SUITE_P(Engines, Retention,
                         ::testing::ValuesIn(resumable_engines()),
                         [](const auto& info) { return info.param; });

// A trainer on a hung file system still exits: the deleter's destructor
// gives up after its limit, names what it leaves, and its thread finishes
// only the directory it was in.
TEST(BackgroundDeleter, DestructorGivesUpOnAHungDeletion) {
  TempDir tmp;
  const fs::path dir = tmp / ("rank" + std::to_string(world_rank()));
  const fs::path first = dir / ".deleting-global_step_1";
  const fs::path second = dir / ".deleting-global_step_2";
  fs::create_directories(first);
  fs::create_directories(second);
  auto faulty = std::make_shared<FaultyFileSystem>();
  faulty->set_hold_limit(20s);
  FaultRule rule{FsOp::kRemoveAll, kDeletingPrefix, 0, 0, -1};
  rule.hold = true;
  faulty->add_rule(rule);
  Warnings warnings;
  {
    BackgroundDeleter deleter(100ms);
    deleter.remove(faulty, first);
    deleter.remove(faulty, second);
    ASSERT_TRUE(faulty->wait_held(1, 20s));
  }
  EXPECT_EQ(faulty->held(), 1);  // returned with the removal still hung
  EXPECT_EQ(faulty->injected(), 0);
  const auto seen = warnings.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_TRUE(contains(seen[0], "left for the next start")) << seen[0];
  EXPECT_TRUE(contains(seen[0], first.string())) << seen[0];
  EXPECT_TRUE(contains(seen[0], second.string())) << seen[0];
  EXPECT_TRUE(being_deleted(first));    // still the thread's: recover skips it
  EXPECT_FALSE(being_deleted(second));  // given up: recover may take it
  faulty->release();
  for (int i = 0; i < 2000 && being_deleted(first); ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_FALSE(fs::exists(first));
  EXPECT_TRUE(fs::exists(second));
}

}  // namespace
}  // namespace floe::test
