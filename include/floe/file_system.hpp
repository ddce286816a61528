// The file-system seam: every metadata operation of the commit protocol goes
// through a FileSystem, so tests can inject a full disk, a failed fsync or a
// failed rename without touching the real world.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace floe {

namespace fs = std::filesystem;

// All methods throw floe::Error(kIo) naming the path and the OS error.
// Implementations must be safe to call from several threads at once:
// retention's background deleter (docs/manifest.md, "Retention") calls
// remove_all() and exists() on a thread of its own while the engine's
// other calls go on (the POSIX one keeps no state; FaultyFileSystem locks).
class FileSystem {
 public:
  virtual ~FileSystem() = default;

  virtual bool exists(const fs::path& path) = 0;
  virtual bool is_directory(const fs::path& path) = 0;
  virtual void create_directories(const fs::path& path) = 0;
  virtual void remove_all(const fs::path& path) = 0;
  // Atomic on POSIX file systems when both paths share a directory.
  virtual void rename(const fs::path& from, const fs::path& to) = 0;
  virtual std::vector<std::string> list(const fs::path& dir) = 0;  // names
  virtual std::uint64_t file_size(const fs::path& path) = 0;

  // Reads a whole file; throws Error(kCorrupt) if it exceeds `max_bytes`.
  virtual std::string read_file(const fs::path& path,
                                std::uint64_t max_bytes) = 0;
  // Creates or truncates `path`, writes `bytes`, fsyncs, closes.
  virtual void write_file(const fs::path& path, std::string_view bytes) = 0;
  virtual void fsync_file(const fs::path& path) = 0;
  virtual void fsync_dir(const fs::path& dir) = 0;

  // Called by engines before they write `bytes` of data to `path` outside
  // this seam (through MPI-IO or HDF5). The POSIX seam does nothing; a
  // faulty one throws, as a full disk would.
  virtual void before_data_write(const fs::path& path, std::uint64_t bytes) = 0;

  // Allocates the blocks for `bytes` at `offset` of the existing file
  // `path` without changing its size, before several ranks write pieces of
  // that range at once (engines call it once, on one rank). Written in
  // interleaved pieces and allocated as their writeback comes, a file ends
  // up in many small extents out of file order (a cost to later reads on
  // disks that seek); reserved up front, it lies in file order.
  // The default uses fallocate(FALLOC_FL_KEEP_SIZE) and is best effort:
  // where the file system cannot (no fallocate, another OS) it does
  // nothing. A full disk or quota (ENOSPC, EDQUOT) throws Error(kIo)
  // naming the path; other failures are left to the writes that follow.
  virtual void reserve(const fs::path& path, std::uint64_t offset, std::uint64_t bytes);

  // Writes `bytes` to `path` so that a crash leaves either the old content
  // or the new: a temp file beside it, fsync, rename, fsync of the directory.
  void replace_file_atomically(const fs::path& path, std::string_view bytes);
};

// The real file system.
std::shared_ptr<FileSystem> posix_file_system();

}  // namespace floe
