// Storage faults through the file-system seam, site by site. A clean save
// (and a clean load, resume and verify) is first recorded call by call on
// every rank; then each recorded call is made to fail on its own, on the
// rank that made it: ENOSPC for writes, fsyncs, reservations and directory
// creation, a write that stops short, a rename refused with EXDEV, EIO for
// reads and listings. Every fault must give the same floe::Error on every rank within
// a bounded time (run_within aborts a hung job), leave no staging
// directory, keep the previous checkpoint committed and verifiable, and let
// the next save go through. commit_protocol_test.cpp checks a few named
// sites; this suite derives the sites from what the code really calls, so a
// new call in the save path is covered without editing the test.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "engine_fixture.hpp"
#include "io/faulty_file_system.hpp"
#ifdef FLOE_TEST_HF
#include "engines/hf/safetensors_index.hpp"
#endif

namespace floe::test {
namespace {

namespace fs = std::filesystem;

constexpr const char* kOut = "floe-out";  // the output_dir under each TempDir
constexpr auto kLimit = std::chrono::seconds(120);

// One call of the seam: which operation, on which path (relative to the
// test's TempDir, so it names the same file in a later run), and how many
// earlier calls of that operation had a path containing it (the rule's skip).
struct Site {
  FsOp op = FsOp::kList;
  std::string path;
  int skip = 0;
};

std::string describe(const Site& s) {
  return std::string(fs_op_name(s.op)) + " " + s.path + " #" + std::to_string(s.skip);
}

// Passes every call to the real file system and records the calls that
// FaultyFileSystem can fail, in order.
class RecordingFileSystem : public FileSystem {
 public:
  explicit RecordingFileSystem(fs::path root) : root_(std::move(root)) {}

  std::vector<Site> sites;

  bool exists(const fs::path& p) override { return base_->exists(p); }
  bool is_directory(const fs::path& p) override { return base_->is_directory(p); }
  void create_directories(const fs::path& p) override {
    note(FsOp::kCreateDirectories, p);
    base_->create_directories(p);
  }
  void remove_all(const fs::path& p) override {
    note(FsOp::kRemoveAll, p);
    base_->remove_all(p);
  }
  void rename(const fs::path& from, const fs::path& to) override {
    note(FsOp::kRename, to);  // FaultyFileSystem matches a rename by its target
    base_->rename(from, to);
  }
  std::vector<std::string> list(const fs::path& d) override {
    note(FsOp::kList, d);
    return base_->list(d);
  }
  std::uint64_t file_size(const fs::path& p) override { return base_->file_size(p); }
  std::string read_file(const fs::path& p, std::uint64_t max) override {
    note(FsOp::kReadFile, p);
    return base_->read_file(p, max);
  }
  void write_file(const fs::path& p, std::string_view bytes) override {
    note(FsOp::kWriteFile, p);
    base_->write_file(p, bytes);
  }
  void fsync_file(const fs::path& p) override {
    note(FsOp::kFsyncFile, p);
    base_->fsync_file(p);
  }
  void fsync_dir(const fs::path& d) override {
    note(FsOp::kFsyncDir, d);
    base_->fsync_dir(d);
  }
  void before_data_write(const fs::path& p, std::uint64_t bytes) override {
    note(FsOp::kDataWrite, p);
    base_->before_data_write(p, bytes);
  }
  void reserve(const fs::path& p, std::uint64_t offset, std::uint64_t bytes) override {
    note(FsOp::kReserve, p);
    base_->reserve(p, offset, bytes);
  }

 private:
  void note(FsOp op, const fs::path& p) {
    const std::string rel = p.lexically_relative(root_).string();
    int skip = 0;
    for (const auto& [seen_op, full] : calls_) {
      if (seen_op == op && full.find(rel) != std::string::npos) ++skip;
    }
    calls_.emplace_back(op, p.string());
    sites.push_back(Site{op, rel, skip});
  }

  fs::path root_;
  std::shared_ptr<FileSystem> base_ = posix_file_system();
  std::vector<std::pair<FsOp, std::string>> calls_;
};

// The errno a real file system gives at each kind of call.
int errno_for(FsOp op) {
  switch (op) {
    case FsOp::kRename: return EXDEV;
    case FsOp::kReadFile:
    case FsOp::kList: return EIO;
    default: return ENOSPC;
  }
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += n + " ";
  return out;
}

bool resumable(const std::string& engine) {
  const auto r = resumable_engines();
  return std::find(r.begin(), r.end(), engine) != r.end();
}

// Collective: whether checkpoint `dir` is complete and its data intact, as
// every rank sees it. Resumable engines: verify_checkpoint. hf: the
// manifest is there and the safe reader accepts the export.
::testing::AssertionResult verifiable(const std::string& engine, const fs::path& dir) {
  if (resumable(engine)) {
    const Caught c = catch_error([&] {
      const VerifyReport report = verify_checkpoint(dir, MPI_COMM_WORLD);
      if (!report.ok()) throw Error(ErrorCode::kCorrupt, report.problems.at(0));
    });
    if (c.thrown) return ::testing::AssertionFailure() << dir << ": " << c.message;
    return ::testing::AssertionSuccess();
  }
#ifdef FLOE_TEST_HF
  if (!fs::exists(dir / "manifest.json")) {
    return ::testing::AssertionFailure() << dir << " has no manifest.json";
  }
  const Caught c = catch_error([&] { hf::HfDirectory opened(dir); });
  if (c.thrown) return ::testing::AssertionFailure() << dir << ": " << c.message;
  return ::testing::AssertionSuccess();
#else
  return ::testing::AssertionFailure() << "no check for engine " << engine;
#endif
}

using Rig = EngineRig;

// Every rank's recorded sites of a save of step 2 after a save of step 1.
std::vector<Site> record_save(const std::string& engine) {
  TempDir tmp;
  Rig rig(tmp / kOut, engine);
  rig.save_at(1);
  auto recorder = std::make_shared<RecordingFileSystem>(tmp.path());
  rig.engine->set_file_system(recorder);
  rig.save_at(2);
  return recorder->sites;
}

// Site `index` of rank `owner`'s recording, on every rank. Collective.
Site shared_site(const std::vector<Site>& mine, int owner, int index) {
  Site site = world_rank() == owner ? mine[static_cast<std::size_t>(index)] : Site{};
  int op = static_cast<int>(site.op);
  MPI_Bcast(&op, 1, MPI_INT, owner, MPI_COMM_WORLD);
  MPI_Bcast(&site.skip, 1, MPI_INT, owner, MPI_COMM_WORLD);
  site.op = static_cast<FsOp>(op);
  site.path = allgather_text(site.path)[static_cast<std::size_t>(owner)];
  return site;
}

// How many sites each rank recorded (every rank learns every count).
std::vector<int> site_counts(const std::vector<Site>& mine) {
  int n = static_cast<int>(mine.size());
  std::vector<int> all(static_cast<std::size_t>(world_size()));
  MPI_Allgather(&n, 1, MPI_INT, all.data(), 1, MPI_INT, MPI_COMM_WORLD);
  return all;
}

int injected_everywhere(const FaultyFileSystem& faulty) {
  int mine = faulty.injected(), total = 0;
  MPI_Allreduce(&mine, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  return total;
}

// One fault at `site` on `faulty_rank` while saving step 2 over a committed
// step 1. Returns how many faults were injected (1 when the site was
// reached as recorded).
int save_fault_trial(const std::string& engine, const Site& site, int faulty_rank,
                     bool short_write) {
  TempDir tmp;
  Rig rig(tmp / kOut, engine);
  rig.save_at(1);
  const fs::path out = tmp / kOut;
  auto faulty = std::make_shared<FaultyFileSystem>();
  const int err = errno_for(site.op);
  if (world_rank() == faulty_rank) {
    FaultRule rule{site.op, site.path, err, site.skip, 1};
    rule.short_write = short_write;
    faulty->add_rule(rule);
  }
  rig.engine->set_file_system(faulty);
  const Caught caught = catch_error([&] { rig.save_at(2); });
  const int injected = injected_everywhere(*faulty);
  const std::string where = engine + ": " + describe(site) + " on rank " +
                            std::to_string(faulty_rank) +
                            (short_write ? " (short write)" : "");
  EXPECT_EQ(injected, 1) << where << ": the site was not reached as recorded";
  EXPECT_TRUE(is_error(caught, ErrorCode::kIo, {std::strerror(err), "(injected)"})) << where;
  EXPECT_TRUE(same_on_all_ranks(caught.message)) << where;

  // What is on disk: no staging left; `latest` names step 1, or step 2 when
  // the fault came after `latest` was replaced; both verify.
  std::string latest;
  std::vector<std::string> names;
  if (world_rank() == 0) {
    latest = read_text(out / "latest");
    names = names_in(out);
  }
  latest = allgather_text(latest)[0];
  for (const auto& n : names) {
    EXPECT_NE(n.rfind(".staging-", 0), 0u) << where << ": left " << n;
  }
  EXPECT_TRUE(latest == "global_step_1\n" || latest == "global_step_2\n")
      << where << ": latest=" << latest;
  EXPECT_TRUE(verifiable(engine, out / "global_step_1")) << where;
  if (latest == "global_step_2\n") {
    EXPECT_TRUE(verifiable(engine, out / "global_step_2")) << where;
  }

  // The fault was transient: the next save commits.
  rig.engine->set_file_system(posix_file_system());
  rig.save_at(3);
  if (world_rank() == 0) {
    EXPECT_EQ(read_text(out / "latest"), "global_step_3\n") << where;
    const auto after = names_in(out);
    // A write that stopped short leaves its temp file beside `latest`
    // until the next save overwrites it; nothing else may remain.
    for (const auto& n : after) {
      EXPECT_TRUE(n == "latest" || n.rfind("global_step_", 0) == 0)
          << where << ": after the next save, output_dir holds " << joined(after);
    }
  }
  EXPECT_TRUE(verifiable(engine, out / "global_step_3")) << where;
  return injected;
}

std::vector<std::string> engines_under_test() {
  std::vector<std::string> out = resumable_engines();
#ifdef FLOE_TEST_HF
  out.push_back("hf");
#endif
  return out;
}

class StorageFaults : public ::testing::TestWithParam<std::string> {};

TEST_P(StorageFaults, EveryWriteSiteOfASaveFailsCleanlyOnEveryRank) {
  const std::string engine = GetParam();
  const std::vector<Site> mine = record_save(engine);
  const std::vector<int> counts = site_counts(mine);
  int trials = 0, writes = 0;
  for (int rank = 0; rank < world_size(); ++rank) {
    for (int i = 0; i < counts[static_cast<std::size_t>(rank)]; ++i) {
      // Every rank learns the site; only `rank` arms the fault.
      const Site site = shared_site(mine, rank, i);
      run_within(kLimit, [&] { save_fault_trial(engine, site, rank, false); });
      ++trials;
      if (site.op == FsOp::kWriteFile) {
        run_within(kLimit, [&] { save_fault_trial(engine, site, rank, true); });
        ++trials;
        ++writes;
      }
    }
  }
  // Every save touches the disk through the seam on rank 0 (staging,
  // manifest, rename, latest) and announces data on every rank.
  EXPECT_GE(counts[0], 8);
  for (int c : counts) EXPECT_GE(c, 1);
  if (world_rank() == 0) {
    std::printf("[ figures  ] %s: %d save faults injected (%d sites over %d ranks, %d short writes)\n",
                engine.c_str(), trials, trials - writes, world_size(), writes);
  }
}

// Every rank's recorded sites of a load of `latest`, a resume by a new
// engine, and a verify of step 1, over checkpoints of steps 1 and 2.
struct ReadSites {
  std::vector<Site> load, resume, verify;
};

void read_fault_trials(const std::string& engine, int& trials) {
  TempDir tmp;
  const fs::path out = tmp / kOut;
  Rig rig(out, engine);
  rig.save_at(1);
  rig.save_at(2);
  ReadSites sites;
  {
    auto recorder = std::make_shared<RecordingFileSystem>(tmp.path());
    rig.engine->set_file_system(recorder);
    rig.engine->load();
    sites.load = recorder->sites;
  }
  {
    Rig fresh(out, engine);
    auto recorder = std::make_shared<RecordingFileSystem>(tmp.path());
    fresh.engine->set_file_system(recorder);
    ASSERT_TRUE(fresh.engine->resume().has_value());
    sites.resume = recorder->sites;
  }
  {
    RecordingFileSystem recorder(tmp.path());
    ASSERT_TRUE(verify_checkpoint(out / "global_step_1", MPI_COMM_WORLD, recorder).ok());
    sites.verify = recorder.sites;
  }
  std::string before;
  if (world_rank() == 0) before = joined(names_in(out)) + read_text(out / "latest");
  before = allgather_text(before)[0];

  const auto run = [&](const std::vector<Site>& mine, const char* what,
                       const std::function<void(FileSystem&)>& call) {
    const std::vector<int> counts = site_counts(mine);
    for (int rank = 0; rank < world_size(); ++rank) {
      for (int i = 0; i < counts[static_cast<std::size_t>(rank)]; ++i) {
        const Site site = shared_site(mine, rank, i);
        // Loads write nothing; recover()'s mkdir is a save site.
        if (site.op != FsOp::kReadFile && site.op != FsOp::kList) continue;
        run_within(kLimit, [&] {
          FaultyFileSystem faulty;
          if (world_rank() == rank) faulty.add_rule({site.op, site.path, EIO, site.skip, 1});
          const Caught caught = catch_error([&] { call(faulty); });
          const std::string where = engine + " " + what + ": " + describe(site) +
                                    " on rank " + std::to_string(rank);
          EXPECT_EQ(injected_everywhere(faulty), 1) << where;
          EXPECT_TRUE(is_error(caught, ErrorCode::kIo,
                               {"Input/output error", "(injected)"})) << where;
          EXPECT_TRUE(same_on_all_ranks(caught.message)) << where;
          // An I/O error is not corruption: nothing is set aside, nothing moves.
          std::string now;
          if (world_rank() == 0) now = joined(names_in(out)) + read_text(out / "latest");
          EXPECT_EQ(allgather_text(now)[0], before) << where;
        });
        ++trials;
      }
    }
  };
  run(sites.load, "load", [&](FileSystem& faulty) {
    Rig fresh(out, engine);
    fresh.engine->set_file_system(std::shared_ptr<FileSystem>(&faulty, [](FileSystem*) {}));
    fresh.engine->load();
  });
  run(sites.resume, "resume", [&](FileSystem& faulty) {
    Rig fresh(out, engine);
    fresh.engine->set_file_system(std::shared_ptr<FileSystem>(&faulty, [](FileSystem*) {}));
    (void)fresh.engine->resume();
  });
  run(sites.verify, "verify", [&](FileSystem& faulty) {
    (void)verify_checkpoint(out / "global_step_1", MPI_COMM_WORLD, faulty);
  });
  EXPECT_TRUE(verifiable(engine, out / "global_step_2"));
}

TEST_P(StorageFaults, EveryReadSiteGivesTheSameIoErrorAndMovesNothing) {
  if (!resumable(GetParam())) GTEST_SKIP() << "hf checkpoints are not loaded";
  int trials = 0;
  read_fault_trials(GetParam(), trials);
  EXPECT_GE(trials, 3);  // at least latest, the manifest and a listing
  if (world_rank() == 0) {
    std::printf("[ figures  ] %s: %d read faults injected (load, resume, verify)\n",
                GetParam().c_str(), trials);
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, StorageFaults, ::testing::ValuesIn(engines_under_test()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace floe::test
