// The phase traces a load or save logs (config key trace_phases), caught
// for a test to read.
#pragma once

#include <string>
#include <vector>

#include "floe/log.hpp"

namespace floe::test {

// Collects the lines "trace ..." the log sink gets at kInfo while alive;
// the default sink is back once it is gone, also when the traced call
// throws.
class TraceLines {
 public:
  explicit TraceLines(std::vector<std::string>& out) {
    set_log_sink([&out](LogLevel level, const std::string& m) {
      if (level == LogLevel::kInfo && m.rfind("trace ", 0) == 0)
        out.push_back(m);
    });
  }
  ~TraceLines() { set_log_sink(nullptr); }
  TraceLines(const TraceLines&) = delete;
  TraceLines& operator=(const TraceLines&) = delete;
};

}  // namespace floe::test
