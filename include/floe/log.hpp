// Where Floe's warnings and notes go: stderr by default, or a sink the
// trainer installs (its own logger).
#pragma once

#include <functional>
#include <string>

namespace floe {

enum class LogLevel { kInfo, kWarning };

using LogSink = std::function<void(LogLevel level, const std::string& message)>;

// Replaces the sink; an empty one restores the default ("floe: warning: ..."
// on stderr). Thread-safe.
void set_log_sink(LogSink sink);

// Sends `message` to the sink. Engines call it on rank 0 only.
void log_message(LogLevel level, const std::string& message);

}  // namespace floe
