// The MPI-aware GoogleTest main every Floe test binary links.
//
// Every rank runs every test, in the same order (a shuffle seed is agreed
// on). Only a rank that fails prints, each line prefixed with "[rank R]";
// rank 0 prints progress and the summary. After each test the ranks agree on
// its verdict with one collective, so a test that fails on any rank fails on
// all, and the process exits non-zero on every rank if any rank failed any
// test. gtest flags (--gtest_filter, --gtest_repeat, ...) pass through.
//
// The agreement runs in OnTestEnd, which every rank reaches as long as the
// tests themselves do not leave a rank waiting in a collective: a test must
// not return early (ASSERT_*) on some ranks between collectives it shares.
//
// To check this main by hand, run the disabled self-checks, which fail on
// purpose on some ranks (the exit code must be 1 on every rank):
//   mpirun -n 3 build-tests/mpi_tests/core_mpi_test
//       --gtest_also_run_disabled_tests --gtest_filter='MainSelfCheck.*'
#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <mpi.h>

namespace {

// Per-rank outcome of one test, exchanged between ranks.
enum Outcome : int { kPassed = 0, kSkipped = 1, kFailed = 2 };

void write_out(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

std::string plural(long n, const char* noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string out;
  for (int r : ranks) out += (out.empty() ? "" : ", ") + std::to_string(r);
  return out;
}

// Replaces gtest's default printer. Collective in OnTestEnd, OnTestSuiteEnd
// and OnTestIterationEnd: every rank reaches them in the same order.
class MpiPrinter : public ::testing::EmptyTestEventListener {
 public:
  MpiPrinter(int rank, int size) : rank_(rank), size_(size) {}

  // True when any rank failed any test (or failed outside a test).
  bool any_failed() const { return any_failed_; }

  void OnTestIterationStart(const ::testing::UnitTest& unit,
                            int iteration) override {
    passed_ = skipped_ = 0;
    failures_.clear();
    iteration_start_ = std::chrono::steady_clock::now();
    if (rank_ != 0) return;
    std::string text;
    if (GTEST_FLAG_GET(repeat) != 1) {
      text += "\nRepeating all tests (iteration " +
              std::to_string(iteration + 1) + ") . . .\n\n";
    }
    if (GTEST_FLAG_GET(shuffle)) {
      text += "Note: Randomizing tests' orders with a seed of " +
              std::to_string(unit.random_seed()) + " .\n";
    }
    text += "[==========] Running " + plural(unit.test_to_run_count(), "test") +
            " from " + plural(unit.test_suite_to_run_count(), "test suite") +
            " on " + plural(size_, "rank") + ".\n";
    write_out(text);
  }

  void OnTestStart(const ::testing::TestInfo& info) override {
    current_test_ = full_name(info);
    if (rank_ == 0) write_out("[ RUN      ] " + full_name(info) + "\n");
  }

  // Only failing ranks print, as soon as the failure happens (so a test that
  // later hangs still shows why).
  void OnTestPartResult(const ::testing::TestPartResult& part) override {
    if (!part.failed()) return;
    // Not UnitTest::current_test_info(): gtest calls this listener holding
    // the lock that function takes.
    const std::string prefix = "[rank " + std::to_string(rank_) + "] ";
    std::string text =
        prefix + "Failure in " +
        (current_test_.empty() ? "(outside a test)" : current_test_);
    if (part.file_name()) {
      text += " at " + std::string(part.file_name());
      if (part.line_number() >= 0)
        text += ":" + std::to_string(part.line_number());
    }
    text += "\n";
    std::istringstream lines(part.message());
    for (std::string line; std::getline(lines, line);) {
      text += prefix + "  " + line + "\n";
    }
    write_out(text);
  }

  void OnTestEnd(const ::testing::TestInfo& info) override {
    current_test_.clear();
    const auto* result = info.result();
    const int mine = result->Failed()    ? kFailed
                     : result->Skipped() ? kSkipped
                                         : kPassed;
    const std::vector<int> all = gather(mine);
    std::vector<int> failed_on;
    bool all_skipped = true;
    for (int r = 0; r < size_; ++r) {
      if (all[r] == kFailed) failed_on.push_back(r);
      if (all[r] != kSkipped) all_skipped = false;
    }
    const std::string name = full_name(info);
    const std::string time =
        " (" + std::to_string(result->elapsed_time()) + " ms)\n";
    if (!failed_on.empty()) {
      any_failed_ = true;
      failures_.push_back(name + " (failed on " +
                          (failed_on.size() == 1 ? "rank " : "ranks ") +
                          rank_list(failed_on) + ")");
      if (rank_ == 0) {
        write_out("[  FAILED  ] " + name + ": FAILED on " +
                  (failed_on.size() == 1 ? "rank " : "ranks ") +
                  rank_list(failed_on) + time);
      }
    } else if (all_skipped) {
      ++skipped_;
      if (rank_ == 0) write_out("[  SKIPPED ] " + name + time);
    } else {
      ++passed_;
      if (rank_ == 0) write_out("[       OK ] " + name + time);
    }
  }

  // Failures outside any test: SetUpTestSuite/TearDownTestSuite.
  void OnTestSuiteEnd(const ::testing::TestSuite& suite) override {
    agree_outside_tests(
        suite.ad_hoc_test_result().Failed(),
        std::string(suite.name()) + " (suite set-up or tear-down)");
  }

  void OnTestIterationEnd(const ::testing::UnitTest& unit,
                          int /*iteration*/) override {
    agree_outside_tests(unit.ad_hoc_test_result().Failed(),
                        "(global environment set-up or tear-down)");
    if (rank_ != 0) return;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - iteration_start_)
                        .count();
    const long ran = passed_ + skipped_ + static_cast<long>(failures_.size());
    std::string text = "[==========] " + plural(ran, "test") + " ran on " +
                       plural(size_, "rank") + ". (" + std::to_string(ms) +
                       " ms total)\n";
    text += "[  PASSED  ] " + plural(passed_, "test") + ".\n";
    if (skipped_ > 0)
      text += "[  SKIPPED ] " + plural(skipped_, "test") + ".\n";
    if (!failures_.empty()) {
      text += "[  FAILED  ] " +
              plural(static_cast<long>(failures_.size()), "test") +
              ", listed below:\n";
      for (const auto& f : failures_) text += "[  FAILED  ] " + f + "\n";
    }
    const int disabled = GTEST_FLAG_GET(also_run_disabled_tests)
                             ? 0
                             : unit.disabled_test_count();
    text += "\n" + std::to_string(passed_) + " passed, " +
            std::to_string(failures_.size()) + " failed, " +
            std::to_string(skipped_) + " skipped" +
            (disabled ? ", " + std::to_string(disabled) + " disabled" : "") +
            " (" + plural(size_, "rank") + ")\n";
    write_out(text);
  }

 private:
  static std::string full_name(const ::testing::TestInfo& info) {
    return std::string(info.test_suite_name()) + "." + info.name();
  }

  // Every rank's value, by rank. Carries the allreduce of the failed flag and
  // the list of failing ranks in one collective.
  std::vector<int> gather(int mine) const {
    std::vector<int> all(size_);
    MPI_Allgather(&mine, 1, MPI_INT, all.data(), 1, MPI_INT, MPI_COMM_WORLD);
    return all;
  }

  void agree_outside_tests(bool failed_here, const std::string& what) {
    const std::vector<int> all = gather(failed_here ? kFailed : kPassed);
    std::vector<int> failed_on;
    for (int r = 0; r < size_; ++r) {
      if (all[r] == kFailed) failed_on.push_back(r);
    }
    if (failed_on.empty()) return;
    any_failed_ = true;
    failures_.push_back(what + " (failed on ranks " + rank_list(failed_on) +
                        ")");
    if (rank_ == 0) {
      write_out("[  FAILED  ] " + what + ": FAILED on ranks " +
                rank_list(failed_on) + "\n");
    }
  }

  int rank_;
  int size_;
  std::string current_test_;  // "Suite.Test" while a test runs
  bool any_failed_ = false;
  long passed_ = 0;
  long skipped_ = 0;
  std::vector<std::string> failures_;
  std::chrono::steady_clock::time_point iteration_start_;
};

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (provided < MPI_THREAD_MULTIPLE && rank == 0) {
    write_out("Note: MPI provides thread level " + std::to_string(provided) +
              ", not MPI_THREAD_MULTIPLE\n");
  }

  ::testing::InitGoogleTest(&argc, argv);

  // A shuffled order must be the same on every rank: use rank 0's seed.
  int seed = GTEST_FLAG_GET(random_seed);
  if (rank == 0 && seed == 0) {
    seed = static_cast<int>(
               std::chrono::system_clock::now().time_since_epoch().count() %
               99999) +
           1;
  }
  MPI_Bcast(&seed, 1, MPI_INT, 0, MPI_COMM_WORLD);
  GTEST_FLAG_SET(random_seed, seed);

  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  delete listeners.Release(listeners.default_result_printer());
  if (rank != 0) {
    // One XML/JSON report (rank 0's), not N ranks writing the same file.
    delete listeners.Release(listeners.default_xml_generator());
  }
  auto* printer = new MpiPrinter(rank, size);
  listeners.Append(printer);  // owned by gtest from here on

  int local_status = 0;
  if (!GTEST_FLAG_GET(list_tests) || rank == 0) local_status = RUN_ALL_TESTS();

  int failed = (local_status != 0 || printer->any_failed()) ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any_failed ? 1 : 0;
}
