#include "floe/error.hpp"

#include "floe/version.hpp"

namespace floe {

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kInvalidConfig: return "invalid_config";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kMismatch: return "mismatch";
    case ErrorCode::kCorrupt: return "corrupt";
    case ErrorCode::kIo: return "io";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kRemoteFailure: return "remote_failure";
    case ErrorCode::kInternal: return "internal";
  }
  return "unknown";
}

const char* version() { return FLOE_VERSION_STRING; }

}  // namespace floe
