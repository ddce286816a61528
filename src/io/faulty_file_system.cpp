#include "io/faulty_file_system.hpp"

#include <csignal>
#include <cstring>

#include "floe/error.hpp"

namespace floe {

std::string_view fs_op_name(FsOp op) {
  switch (op) {
    case FsOp::kCreateDirectories: return "mkdir";
    case FsOp::kRemoveAll: return "remove";
    case FsOp::kRename: return "rename";
    case FsOp::kList: return "list";
    case FsOp::kReadFile: return "read";
    case FsOp::kWriteFile: return "write";
    case FsOp::kFsyncFile: return "fsync";
    case FsOp::kFsyncDir: return "fsync directory";
    case FsOp::kDataWrite: return "write data";
    case FsOp::kReserve: return "reserve space for";
  }
  return "?";
}

std::optional<FaultRule> FaultyFileSystem::match(FsOp op,
                                                 const fs::path& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& armed : rules_) {
    const FaultRule& rule = armed.rule;
    if (rule.op != op) continue;
    if (!rule.path_contains.empty() &&
        path.string().find(rule.path_contains) == std::string::npos) {
      continue;
    }
    if (armed.seen++ < rule.skip) continue;
    if (rule.times >= 0 && armed.fired >= rule.times) continue;
    ++armed.fired;
    return rule;
  }
  return std::nullopt;
}

void FaultyFileSystem::fail(const FaultRule& rule, FsOp op, const fs::path& path) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++injected_;
  }
  if (rule.kill) ::raise(SIGKILL);
  throw Error(ErrorCode::kIo, "cannot " + std::string(fs_op_name(op)) + " " +
                                  path.string() + ": " + std::strerror(rule.error) +
                                  (rule.short_write ? " after a short write" : "") +
                                  " (injected)");
}

void FaultyFileSystem::hold(FsOp op, const fs::path& path) {
  std::unique_lock<std::mutex> lock(mutex_);
  ++held_;
  held_changed_.notify_all();
  const bool released =
      held_changed_.wait_for(lock, hold_limit_, [&] { return released_; });
  --held_;
  held_changed_.notify_all();
  if (released) return;
  ++injected_;
  throw Error(ErrorCode::kIo, "cannot " + std::string(fs_op_name(op)) + " " +
                                  path.string() + ": held for " +
                                  std::to_string(hold_limit_.count()) +
                                  " ms and never released (injected)");
}

void FaultyFileSystem::release() {
  std::lock_guard<std::mutex> lock(mutex_);
  released_ = true;
  held_changed_.notify_all();
}

int FaultyFileSystem::held() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return held_;
}

bool FaultyFileSystem::wait_held(int calls, std::chrono::milliseconds limit) {
  std::unique_lock<std::mutex> lock(mutex_);
  return held_changed_.wait_for(lock, limit, [&] { return held_ >= calls; });
}

}  // namespace floe
