// floe::Error, the one exception type every public Floe call throws.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace floe {

// What kind of failure an Error reports. Stable: callers may branch on it.
enum class ErrorCode {
  kInvalidArgument,  // a bad value passed to an API call
  kInvalidConfig,    // a config key that is unknown, mistyped or impossible
  kNotFound,         // a checkpoint, file, tensor or engine that does not exist
  kMismatch,         // state and checkpoint disagree (names, shapes, dtypes)
  kCorrupt,          // a file whose bytes or checksums are wrong
  kIo,               // the file system or MPI-IO refused an operation
  kUnsupported,      // a feature left out of this build, or a format too new
  kRemoteFailure,    // reserved: another rank failed and sent no message
  kInternal,         // a broken invariant inside Floe (a bug)
};

// A short lowercase name for `code` ("invalid_config", "io", ...).
std::string_view error_code_name(ErrorCode code);

// The exception every public Floe call throws. The message names the file,
// tensor or key at fault. Collective calls throw the same Error on every rank.
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message)
      : std::runtime_error(message), code_(code) {}

  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace floe
