// Starting the kernel's writeback of a data file's bytes while the rest are
// still being written, so that the final sync finds little left to do.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>

namespace floe {

// A buffered write (what MPI-IO and HDF5 do on a local file system) only
// copies bytes into the page cache; they reach the device at the sync, or
// when the kernel's dirty limits are passed, which a checkpoint of a few
// GiB on a machine with tens of GiB of memory does not reach. Telling the
// kernel, range by range, to start writing what was just written lets the
// device work while the process copies the rest (RocksDB's bytes_per_sync
// does the same).
//
// Best effort and Linux only: sync_file_range(SYNC_FILE_RANGE_WRITE), which
// neither waits for the device nor makes anything durable, on a descriptor
// of its own or the caller's. Where it is unavailable or fails, nothing
// happens (after a failure, nothing more is tried): durability and every
// write error still come from the caller's sync (MPI_File_sync, H5Fflush or
// fsync), which reports an error met by writeback started here too (the
// kernel keeps it for every descriptor of the file). It never writes data,
// so it adds no path for a write to fail. written() may be called from
// several threads at once.
class EarlyWriteback {
 public:
  // Opens its own descriptor of `path` (an existing file), closed by the
  // destructor; on failure the object does nothing.
  explicit EarlyWriteback(const std::filesystem::path& path);
  // Uses the caller's descriptor `fd` of the file (open for writing; < 0:
  // the object does nothing), which must stay open while the object lives
  // and is never closed by it.
  explicit EarlyWriteback(int fd);
  ~EarlyWriteback();
  EarlyWriteback(const EarlyWriteback&) = delete;
  EarlyWriteback& operator=(const EarlyWriteback&) = delete;

  // `bytes` at `offset` were just written: start writing them back.
  void written(std::uint64_t offset, std::uint64_t bytes);
  // Whether written() still starts writeback (false once a call failed, or
  // when there is no descriptor).
  bool active() const;

 private:
  int fd_ = -1;
  bool owned_ = false;
  std::atomic<bool> failed_{false};
};

}  // namespace floe
