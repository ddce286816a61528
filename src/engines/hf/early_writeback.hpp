// Starting the kernel's writeback of an export file's bytes while the rest
// are still being written, so that the final sync finds little left to do.
#pragma once

#include <cstdint>
#include <filesystem>

namespace floe::hf {

// A buffered write only copies bytes into the page cache; they reach the
// device at the next sync (or when the kernel's dirty limits are passed,
// which a 1 GiB export usually does not reach). Telling the kernel, range by
// range, to start writing what was just written lets the device work while
// the process is still copying the rest, as RocksDB's bytes_per_sync does.
// Best effort and Linux only (sync_file_range with SYNC_FILE_RANGE_WRITE,
// which neither waits for the device nor makes anything durable): where it
// is unavailable or fails, nothing happens, and durability still comes from
// the caller's sync, which reports any write error.
class EarlyWriteback {
 public:
  // Opens its own descriptor of `path` (an existing file); on failure the
  // object does nothing.
  explicit EarlyWriteback(const std::filesystem::path& path);
  ~EarlyWriteback();
  EarlyWriteback(const EarlyWriteback&) = delete;
  EarlyWriteback& operator=(const EarlyWriteback&) = delete;

  // `bytes` at `offset` were just written: start writing them back.
  void written(std::uint64_t offset, std::uint64_t bytes);

 private:
  int fd_ = -1;
};

}  // namespace floe::hf
