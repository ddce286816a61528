#include "core/phase_log.hpp"

#include <cstdio>
#include <cstring>
#include <exception>

#include <time.h>

#include "floe/log.hpp"

namespace floe {
namespace {

thread_local PhaseLog* innermost = nullptr;

std::int64_t now_ns(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string milliseconds(std::int64_t wall_ns, std::int64_t cpu_ns) {
  char text[64];
  std::snprintf(text, sizeof text, "%.1f/%.1f", wall_ns / 1e6, cpu_ns / 1e6);
  return text;
}

}  // namespace

PhaseLog::PhaseLog(bool enabled, std::string operation, int rank)
    : enabled_(enabled), operation_(std::move(operation)), rank_(rank) {
  if (!enabled_) return;
  outer_ = innermost;
  innermost = this;
  start_wall_ = last_wall_ = now_ns(CLOCK_MONOTONIC);
  start_cpu_ = last_cpu_ = now_ns(CLOCK_THREAD_CPUTIME_ID);
}

PhaseLog::~PhaseLog() {
  if (!enabled_) return;
  innermost = outer_;
  const std::int64_t wall = now_ns(CLOCK_MONOTONIC);
  const std::int64_t cpu = now_ns(CLOCK_THREAD_CPUTIME_ID);
  std::string line = "trace rank " + std::to_string(rank_) + " " + operation_ + ": ";
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    line += steps_[i].name;
    line += ' ';
    line += milliseconds(steps_[i].wall_ns, steps_[i].cpu_ns);
    line += i == 0 ? " ms, " : ", ";
  }
  // What ran after the last mark, where that is visible (0.1 ms or more).
  if (wall - last_wall_ >= 100000 && !steps_.empty()) {
    line += "rest " + milliseconds(wall - last_wall_, cpu - last_cpu_) + ", ";
  }
  line += "total " + milliseconds(wall - start_wall_, cpu - start_cpu_) +
          (steps_.empty() ? " ms" : "");
  if (std::uncaught_exceptions() > 0) line += " (failed)";
  try {
    log_message(LogLevel::kInfo, line);
  } catch (...) {
    // A report must not turn into a second error.
  }
}

void PhaseLog::mark(const char* step) {
  if (!enabled_) return;
  const std::int64_t wall = now_ns(CLOCK_MONOTONIC);
  const std::int64_t cpu = now_ns(CLOCK_THREAD_CPUTIME_ID);
  Step* slot = nullptr;
  for (Step& s : steps_) {
    if (std::strcmp(s.name, step) == 0) slot = &s;
  }
  if (slot == nullptr) slot = &steps_.emplace_back(Step{step});
  slot->wall_ns += wall - last_wall_;
  slot->cpu_ns += cpu - last_cpu_;
  last_wall_ = wall;
  last_cpu_ = cpu;
}

void mark_phase(const char* step) {
  if (innermost != nullptr) innermost->mark(step);
}

}  // namespace floe
