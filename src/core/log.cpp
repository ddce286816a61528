#include "floe/log.hpp"

#include <iostream>
#include <mutex>

namespace floe {
namespace {

std::mutex& sink_mutex() {
  static std::mutex m;
  return m;
}

LogSink& sink() {
  static LogSink s;
  return s;
}

}  // namespace

void set_log_sink(LogSink new_sink) {
  std::lock_guard<std::mutex> lock(sink_mutex());
  sink() = std::move(new_sink);
}

void log_message(LogLevel level, const std::string& message) {
  std::lock_guard<std::mutex> lock(sink_mutex());
  if (sink()) {
    sink()(level, message);
    return;
  }
  std::cerr << (level == LogLevel::kWarning ? "floe: warning: " : "floe: ")
            << message << std::endl;
}

}  // namespace floe
