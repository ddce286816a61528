// A FileSystem that passes calls to another one and fails the ones a test
// chooses: a full disk on a write, a failed fsync or rename, an EIO on read.
#pragma once

#include <cerrno>
#include <memory>
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
};

class FaultyFileSystem : public FileSystem {
 public:
  explicit FaultyFileSystem(std::shared_ptr<FileSystem> base = posix_file_system())
      : base_(std::move(base)) {}

  void add_rule(FaultRule rule) { rules_.push_back({rule, 0, 0}); }
  void clear() { rules_.clear(); }
  // How many faults were injected so far.
  int injected() const { return injected_; }

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
    if (const FaultRule* rule = match(FsOp::kWriteFile, p)) {
      if (rule->short_write) base_->write_file(p, bytes.substr(0, bytes.size() / 2));
      fail(*rule, FsOp::kWriteFile, p);
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
  // The rule that fires for this call (counting it), or nullptr.
  const FaultRule* match(FsOp op, const fs::path& path);
  // Counts the fault and throws it (or SIGKILLs, for a kill rule).
  [[noreturn]] void fail(const FaultRule& rule, FsOp op, const fs::path& path);
  void hit(FsOp op, const fs::path& path) {
    if (const FaultRule* rule = match(op, path)) fail(*rule, op, path);
  }

  std::shared_ptr<FileSystem> base_;
  std::vector<Armed> rules_;
  int injected_ = 0;
};

}  // namespace floe
