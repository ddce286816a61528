// A FileSystem that passes calls to another one and fails the ones a test
// chooses: a full disk on a write, a failed fsync or rename, an EIO on read;
// or holds them, as a slow disk would, until the test releases them.
#pragma once

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "floe/file_system.hpp"

namespace floe {

enum class FsOp {
  kCreateDirectories,
  kRemoveAll,
  kRename,
  kList,
  kReadFile,
  kWriteFile,
  kFsyncFile,
  kFsyncDir,
  kDataWrite,  // before_data_write: engine data through MPI-IO or HDF5
  kReserve,    // reserve: allocating a data file's blocks before its writes
};

std::string_view fs_op_name(FsOp op);

struct FaultRule {
  FsOp op;
  std::string path_contains;  // empty matches every path
  int error = ENOSPC;         // errno reported
  int skip = 0;               // let this many matching calls pass first
  int times = 1;              // then fail this many (-1: for ever)
  bool kill = false;          // SIGKILL the process instead: a crash there
  // kWriteFile only: write the first half of the bytes, then fail, as a
  // write(2) that stops short on a full disk leaves a partial file.
  bool short_write = false;
  // Instead of failing, block the call until release() and then pass it
  // on: a slow call (a remove_all that takes seconds), without timing. A
  // hold that is never released fails after hold_limit(), as a fault.
  bool hold = false;
};

// Several threads may call it at once (an engine's background deleter
// calls remove_all while the engine's other calls go on).
class FaultyFileSystem : public FileSystem {
 public:
  explicit FaultyFileSystem(std::shared_ptr<FileSystem> base = posix_file_system())
      : base_(std::move(base)) {}

  void add_rule(FaultRule rule) {
    std::lock_guard<std::mutex> lock(mutex_);
    rules_.push_back({rule, 0, 0});
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    rules_.clear();
  }
  // How many faults were injected so far (a hold counts once it times out).
  int injected() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return injected_;
  }

  // Lets every held call, and every later one a hold rule matches, pass.
  void release();
  // How many calls are held now.
  int held() const;
  // Waits until at least `calls` calls are held at once, at most `limit`;
  // false when they never were.
  bool wait_held(int calls, std::chrono::milliseconds limit);
  // How long a hold waits for release() before it fails. Default: 60 s.
  void set_hold_limit(std::chrono::milliseconds limit) {
    std::lock_guard<std::mutex> lock(mutex_);
    hold_limit_ = limit;
  }

  bool exists(const fs::path& p) override { return base_->exists(p); }
  bool is_directory(const fs::path& p) override { return base_->is_directory(p); }
  void create_directories(const fs::path& p) override {
    hit(FsOp::kCreateDirectories, p);
    base_->create_directories(p);
  }
  void remove_all(const fs::path& p) override {
    hit(FsOp::kRemoveAll, p);
    base_->remove_all(p);
  }
  void rename(const fs::path& from, const fs::path& to) override {
    hit(FsOp::kRename, to);
    base_->rename(from, to);
  }
  std::vector<std::string> list(const fs::path& d) override {
    hit(FsOp::kList, d);
    return base_->list(d);
  }
  std::uint64_t file_size(const fs::path& p) override { return base_->file_size(p); }
  std::string read_file(const fs::path& p, std::uint64_t max) override {
    hit(FsOp::kReadFile, p);
    return base_->read_file(p, max);
  }
  void write_file(const fs::path& p, std::string_view bytes) override {
    if (const auto rule = match(FsOp::kWriteFile, p)) {
      if (rule->hold) {
        hold(FsOp::kWriteFile, p);
      } else {
        if (rule->short_write) {
          base_->write_file(p, bytes.substr(0, bytes.size() / 2));
        }
        fail(*rule, FsOp::kWriteFile, p);
      }
    }
    base_->write_file(p, bytes);
  }
  void fsync_file(const fs::path& p) override {
    hit(FsOp::kFsyncFile, p);
    base_->fsync_file(p);
  }
  void fsync_dir(const fs::path& d) override {
    hit(FsOp::kFsyncDir, d);
    base_->fsync_dir(d);
  }
  void before_data_write(const fs::path& p, std::uint64_t bytes) override {
    hit(FsOp::kDataWrite, p);
    base_->before_data_write(p, bytes);
  }
  void reserve(const fs::path& p, std::uint64_t offset, std::uint64_t bytes) override {
    hit(FsOp::kReserve, p);
    base_->reserve(p, offset, bytes);
  }

 private:
  struct Armed {
    FaultRule rule;
    int seen;
    int fired;
  };
  // The rule that fires for this call (counting it), if any.
  std::optional<FaultRule> match(FsOp op, const fs::path& path);
  // Counts the fault and throws it (or SIGKILLs, for a kill rule).
  [[noreturn]] void fail(const FaultRule& rule, FsOp op, const fs::path& path);
  // Blocks until release(); throws as fail() does after hold_limit_.
  void hold(FsOp op, const fs::path& path);
  void hit(FsOp op, const fs::path& path) {
    if (const auto rule = match(op, path)) {
      if (rule->hold) {
        hold(op, path);
      } else {
        fail(*rule, op, path);
      }
    }
  }

  std::shared_ptr<FileSystem> base_;
  mutable std::mutex mutex_;  // guards everything below
  std::condition_variable held_changed_;
  std::vector<Armed> rules_;
  int injected_ = 0;
  int held_ = 0;
  bool released_ = false;
  std::chrono::milliseconds hold_limit_{60'000};
};

}  // namespace floe
