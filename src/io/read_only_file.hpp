// A regular file opened read-only, read with bounds-checked pread: what
// every byte the hf code takes from an untrusted file goes through.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>

#include <sys/uio.h>

namespace floe {

class ReadOnlyFile {
 public:
  // Opens `path`. Throws Error(kNotFound) when it does not exist, kCorrupt
  // when it is not a regular file, kIo when it cannot be opened.
  // With `direct`, large reads (kDirectFrom bytes or more, one part) also go
  // around the page cache (O_DIRECT) where the file system allows it,
  // straight into the caller's memory: the stretch of the range whose file
  // offsets and memory addresses are both multiples of kDirectAlign (so the
  // memory must sit at the same offset from such a multiple as the file
  // range does); what is left at either end, and a whole read whose memory
  // does not line up, is read through the page cache as without `direct`.
  // A file system that refuses O_DIRECT (tmpfs; EINVAL at open or on a
  // read) is read through the page cache alone.
  explicit ReadOnlyFile(const std::filesystem::path& path, bool direct = false);
  ~ReadOnlyFile();
  ReadOnlyFile(ReadOnlyFile&& other) noexcept;
  ReadOnlyFile& operator=(ReadOnlyFile&& other) noexcept;
  ReadOnlyFile(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // The size when opened; reads never go past it.
  std::uint64_t size() const { return size_; }

  // Whether reads may still go around the page cache (opened with `direct`,
  // and the file system has not refused it).
  bool reads_direct() const {
    return direct_fd_ >= 0 && direct_ok_.load(std::memory_order_relaxed);
  }
  // The bytes read around the page cache so far.
  std::uint64_t direct_bytes() const { return direct_bytes_.load(std::memory_order_relaxed); }

  // The smallest read that goes around the page cache, and the alignment
  // of file offsets and memory it needs: 4 KiB suits devices of 512-byte and
  // 4 KiB logical blocks alike.
  static constexpr std::uint64_t kDirectFrom = 256u << 10;
  static constexpr std::uint64_t kDirectAlign = 4096;

  // Reads exactly `bytes` at `offset` into `out`. Throws Error(kCorrupt)
  // when the range leaves the file's size or the file turns out shorter
  // (truncated since it was opened), kIo on a read error. Thread-safe.
  void read_exact(std::uint64_t offset, std::uint64_t bytes, void* out) const;

  // Reads the bytes from `offset` on into `parts[0, count)`, one after the
  // other, exactly their total length, in as few preadv calls as Linux
  // allows (count <= IOV_MAX). The same errors as read_exact of that range;
  // `parts` is used up (advanced past what was read). Thread-safe.
  void read_scattered(std::uint64_t offset, iovec* parts, int count) const;

 private:
  // read_scattered through the page cache.
  void read_buffered(std::uint64_t offset, iovec* parts, int count) const;
  // Reads what of [offset, offset + bytes) O_DIRECT can into `out` and the
  // rest through the page cache; false (nothing read) when `out` does not
  // line up with the file offsets or the range holds no aligned block.
  bool read_direct(std::uint64_t offset, std::uint64_t bytes, char* out) const;
  // The Error for a failed read at `offset`.
  [[noreturn]] void fail_read(std::uint64_t offset, int err) const;

  std::filesystem::path path_;
  int fd_ = -1;
  int direct_fd_ = -1;  // O_DIRECT, or -1
  mutable std::atomic<bool> direct_ok_{true};  // no EINVAL from it yet
  mutable std::atomic<std::uint64_t> direct_bytes_{0};
  std::uint64_t size_ = 0;
};

}  // namespace floe
