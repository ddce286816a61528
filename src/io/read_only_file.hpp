// A regular file opened read-only, read with bounds-checked pread: what
// every byte the hf code takes from an untrusted file goes through.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <sys/uio.h>

namespace floe {

class ReadOnlyFile {
 public:
  // Opens `path`. Throws Error(kNotFound) when it does not exist, kCorrupt
  // when it is not a regular file, kIo when it cannot be opened.
  explicit ReadOnlyFile(const std::filesystem::path& path);
  ~ReadOnlyFile();
  ReadOnlyFile(ReadOnlyFile&& other) noexcept;
  ReadOnlyFile& operator=(ReadOnlyFile&& other) noexcept;
  ReadOnlyFile(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // The size when opened; reads never go past it.
  std::uint64_t size() const { return size_; }

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
  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

}  // namespace floe
