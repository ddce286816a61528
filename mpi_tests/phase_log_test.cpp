// PhaseLog (config key trace_phases): one line per operation through the
// log sink, each step's wall/CPU milliseconds, marks from deep code reaching
// the innermost enabled log of the same thread only.
#include "core/phase_log.hpp"

#include <map>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <time.h>

#include <gtest/gtest.h>

#include "floe/log.hpp"

namespace floe {
namespace {

// Collects what the log sink gets while alive.
class Captured {
 public:
  Captured() {
    set_log_sink([this](LogLevel level, const std::string& m) {
      EXPECT_EQ(level, LogLevel::kInfo) << m;
      lines.push_back(m);
    });
  }
  ~Captured() { set_log_sink(nullptr); }
  std::vector<std::string> lines;
};

struct Times {
  double wall = 0, cpu = 0;
};

// "name w/c" pairs of a report, by name ("total" and "rest" included), and
// the text before the first.
std::map<std::string, Times> steps_of(const std::string& line, std::string* head) {
  const std::size_t colon = line.find(": ");
  if (head != nullptr) *head = line.substr(0, colon);
  std::map<std::string, Times> out;
  static const std::regex step(R"(([a-z:, ]+?) ([0-9.]+)/([0-9.]+)( ms)?(, |$))");
  const std::string rest = line.substr(colon + 2);
  for (auto it = std::sregex_iterator(rest.begin(), rest.end(), step);
       it != std::sregex_iterator(); ++it) {
    out[(*it)[1]] = Times{std::stod((*it)[2]), std::stod((*it)[3])};
  }
  return out;
}

// Burns `ms` milliseconds of this thread's CPU time (however long that
// takes on a loaded machine).
void spin_for(double ms) {
  const auto cpu_ms = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
  };
  const double until = cpu_ms() + ms;
  volatile std::uint64_t x = 0;
  while (cpu_ms() < until) x = x + 1;
}

TEST(PhaseLog, ReportsEachStepOnceWithRepeatsAddedUp) {
  Captured log;
  {
    PhaseLog phases(true, "save global_step_3", 2);
    spin_for(20);
    phases.mark("layout");
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    mark_phase("write");  // from code that has no log in hand
    spin_for(10);
    phases.mark("layout");  // a second time: added to the first
  }
  ASSERT_EQ(log.lines.size(), 1u);
  std::string head;
  const auto steps = steps_of(log.lines[0], &head);
  EXPECT_EQ(head, "trace rank 2 save global_step_3") << log.lines[0];
  // Layout, write, total; and "rest" where this thread was held up for
  // 0.1 ms or more between the last mark and the end (seen with a build
  // beside the tests: "rest 0.4/0.0").
  ASSERT_TRUE(steps.size() == 3u || (steps.size() == 4u && steps.count("rest") == 1))
      << log.lines[0];
  EXPECT_GE(steps.at("layout").wall, 30.0) << log.lines[0];
  EXPECT_GE(steps.at("layout").cpu, 29.9) << log.lines[0];
  EXPECT_GE(steps.at("write").wall, 30.0) << log.lines[0];
  EXPECT_LT(steps.at("write").cpu, 15.0) << log.lines[0];  // it slept
  EXPECT_GE(steps.at("total").wall,
            steps.at("layout").wall + steps.at("write").wall - 0.2);
  // Steps in the order first marked; "ms" once, after the first.
  EXPECT_LT(log.lines[0].find("layout"), log.lines[0].find("write"));
  const std::size_t ms = log.lines[0].find(" ms, ");
  EXPECT_EQ(ms, log.lines[0].find(" ms")) << log.lines[0];
  EXPECT_LT(ms, log.lines[0].find("write")) << log.lines[0];
  EXPECT_EQ(log.lines[0].find(" ms", ms + 1), std::string::npos) << log.lines[0];
}

TEST(PhaseLog, TimeAfterTheLastMarkIsTheRest) {
  Captured log;
  {
    PhaseLog phases(true, "load", 0);
    phases.mark("open");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(log.lines.size(), 1u);
  const auto steps = steps_of(log.lines[0], nullptr);
  ASSERT_EQ(steps.count("rest"), 1u) << log.lines[0];
  EXPECT_GE(steps.at("rest").wall, 20.0) << log.lines[0];
}

TEST(PhaseLog, DisabledReportsNothingAndTakesNoMarks) {
  Captured log;
  {
    PhaseLog outer(true, "save global_step_1", 0);
    {
      PhaseLog off(false, "load", 0);
      mark_phase("inner");  // goes to the enabled outer log
    }
    mark_phase("outer");
  }
  ASSERT_EQ(log.lines.size(), 1u);
  EXPECT_EQ(log.lines[0].rfind("trace rank 0 save global_step_1: inner ", 0), 0u)
      << log.lines[0];
  EXPECT_NE(log.lines[0].find(", outer "), std::string::npos) << log.lines[0];
  mark_phase("nobody");  // no log: nothing happens
  EXPECT_EQ(log.lines.size(), 1u);
}

TEST(PhaseLog, NestedLogsAndOtherThreadsKeepTheirOwnMarks) {
  Captured log;
  {
    PhaseLog outer(true, "outer", 0);
    {
      PhaseLog inner(true, "inner", 0);
      mark_phase("a");
      std::thread([] { mark_phase("elsewhere"); }).join();  // no log there
    }
    mark_phase("b");
  }
  ASSERT_EQ(log.lines.size(), 2u);
  EXPECT_EQ(log.lines[0].rfind("trace rank 0 inner: a ", 0), 0u) << log.lines[0];
  EXPECT_EQ(log.lines[1].rfind("trace rank 0 outer: b ", 0), 0u) << log.lines[1];
  for (const auto& line : log.lines) {
    EXPECT_EQ(line.find("elsewhere"), std::string::npos) << line;
  }
}

TEST(PhaseLog, AFailedOperationSaysSo) {
  Captured log;
  try {
    PhaseLog phases(true, "save global_step_9", 1);
    phases.mark("layout");
    throw std::runtime_error("disk full");
  } catch (const std::runtime_error&) {
  }
  ASSERT_EQ(log.lines.size(), 1u);
  EXPECT_NE(log.lines[0].find(" (failed)"), std::string::npos) << log.lines[0];
}

}  // namespace
}  // namespace floe
