// Per-rank timing of the steps of one save() or load() (config key
// `trace_phases`): where a slow checkpoint spends its time, on a cluster,
// without a profiler.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace floe {

// Times the steps of one operation on the calling thread: each mark() ends
// the step that ran since the previous mark (or since construction) and
// names it; a name marked twice adds up. The destructor reports every step
// through log_message(kInfo), one line per rank:
//   trace rank 1 save global_step_30: layout 2.1/1.9 ms, write 40.3/6.2, ...
// (wall/CPU milliseconds; CPU is the calling thread's, so an I/O or hashing
// thread's work shows as wall time only). Disabled, it reads no clock.
//
// Code deep in a save or load marks its own steps through mark_phase(),
// which marks the innermost enabled PhaseLog of the calling thread, and
// does nothing where there is none: no log needs passing down.
class PhaseLog {
 public:
  PhaseLog(bool enabled, std::string operation, int rank);
  ~PhaseLog();
  PhaseLog(const PhaseLog&) = delete;
  PhaseLog& operator=(const PhaseLog&) = delete;

  void mark(const char* step);

 private:
  struct Step {
    const char* name;
    std::int64_t wall_ns = 0;
    std::int64_t cpu_ns = 0;
  };

  bool enabled_;
  std::string operation_;
  int rank_;
  PhaseLog* outer_ = nullptr;  // the thread's previous innermost log
  std::int64_t start_wall_ = 0, start_cpu_ = 0;
  std::int64_t last_wall_ = 0, last_cpu_ = 0;
  std::vector<Step> steps_;
};

// Marks the end of `step` in the calling thread's innermost enabled
// PhaseLog, if any. `step` must outlive that log (a string literal).
void mark_phase(const char* step);

}  // namespace floe
