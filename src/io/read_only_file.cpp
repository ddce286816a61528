#include "io/read_only_file.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "floe/error.hpp"

namespace floe {

ReadOnlyFile::ReadOnlyFile(const std::filesystem::path& path, bool direct) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    const int err = errno;
    throw Error(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                path.string() + ": cannot open: " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    throw Error(ErrorCode::kIo,
                path.string() + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    throw Error(ErrorCode::kCorrupt, path.string() + ": not a regular file");
  }
  size_ = static_cast<std::uint64_t>(st.st_size);
  // A second descriptor for reads around the page cache; a file system
  // without O_DIRECT (EINVAL) is read through the cache alone.
  if (direct) direct_fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
}

ReadOnlyFile::~ReadOnlyFile() {
  if (fd_ >= 0) ::close(fd_);
  if (direct_fd_ >= 0) ::close(direct_fd_);
}

ReadOnlyFile::ReadOnlyFile(ReadOnlyFile&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      direct_fd_(std::exchange(other.direct_fd_, -1)),
      direct_ok_(other.direct_ok_.load()),
      direct_bytes_(other.direct_bytes_.load()),
      size_(other.size_) {}

ReadOnlyFile& ReadOnlyFile::operator=(ReadOnlyFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    if (direct_fd_ >= 0) ::close(direct_fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    direct_fd_ = std::exchange(other.direct_fd_, -1);
    direct_ok_ = other.direct_ok_.load();
    direct_bytes_ = other.direct_bytes_.load();
    size_ = other.size_;
  }
  return *this;
}

void ReadOnlyFile::fail_read(std::uint64_t offset, int err) const {
  throw Error(ErrorCode::kIo, path_.string() + ": read failed at offset " +
                                  std::to_string(offset) + ": " + std::strerror(err));
}

bool ReadOnlyFile::read_direct(std::uint64_t offset, std::uint64_t bytes, char* out) const {
  constexpr std::uint64_t kAlign = kDirectAlign;
  const std::uint64_t head = (kAlign - offset % kAlign) % kAlign;  // to the first block
  if (bytes < head + kAlign || (reinterpret_cast<std::uintptr_t>(out) + head) % kAlign != 0) {
    return false;
  }
  const std::uint64_t body = (bytes - head) / kAlign * kAlign;
  std::uint64_t done = 0;  // bytes of the body read
  while (done < body) {
    // At most 1 GiB a call (Linux moves at most 0x7ffff000 bytes per call).
    const std::uint64_t want = std::min<std::uint64_t>(body - done, 1u << 30);
    const ssize_t got = ::pread(direct_fd_, out + head + done, want,
                                static_cast<off_t>(offset + head + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && errno == EINVAL) {  // refused after all: the cache from here on
      direct_ok_.store(false, std::memory_order_relaxed);
      break;
    }
    if (got < 0) fail_read(offset + head + done, errno);
    done += static_cast<std::uint64_t>(got);
    // The file ended early, or a read stopped inside a block: the rest
    // through the cache, which reports a truncated file as usual.
    if (got == 0 || done % kAlign != 0) break;
  }
  direct_bytes_.fetch_add(done, std::memory_order_relaxed);
  iovec rest[2] = {{out, static_cast<std::size_t>(head)},
                   {out + head + done, static_cast<std::size_t>(bytes - head - done)}};
  if (rest[0].iov_len > 0) read_buffered(offset, &rest[0], 1);
  if (rest[1].iov_len > 0) read_buffered(offset + head + done, &rest[1], 1);
  return true;
}

void ReadOnlyFile::read_scattered(std::uint64_t offset, iovec* parts, int count) const {
  std::uint64_t bytes = 0;
  for (int i = 0; i < count; ++i) bytes += parts[i].iov_len;
  if (offset > size_ || bytes > size_ - offset) {
    throw Error(ErrorCode::kCorrupt,
                path_.string() + ": read of " + std::to_string(bytes) +
                    " bytes at " + std::to_string(offset) +
                    " leaves the file (" + std::to_string(size_) + " bytes)");
  }
  while (count > 0 && parts->iov_len == 0) ++parts, --count;
  if (count == 1 && parts->iov_len >= kDirectFrom && reads_direct() &&
      read_direct(offset, parts->iov_len, static_cast<char*>(parts->iov_base))) {
    parts->iov_base = static_cast<char*>(parts->iov_base) + parts->iov_len;
    parts->iov_len = 0;
    return;
  }
  read_buffered(offset, parts, count);
}

void ReadOnlyFile::read_buffered(std::uint64_t offset, iovec* parts, int count) const {
  while (count > 0) {
    // Linux moves at most 0x7ffff000 bytes per call and returns what it
    // moved: the parts are advanced past it and the rest read again.
    const ssize_t got = ::preadv(fd_, parts, count, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      fail_read(offset, errno);
    }
    if (got == 0) {
      throw Error(ErrorCode::kCorrupt,
                  path_.string() + ": the file ended at " +
                      std::to_string(offset) + ", before its expected " +
                      std::to_string(size_) + " bytes (truncated)");
    }
    offset += static_cast<std::uint64_t>(got);
    auto left = static_cast<std::size_t>(got);
    while (count > 0 && left >= parts->iov_len) {
      left -= parts->iov_len;
      ++parts, --count;
    }
    if (count > 0) {
      parts->iov_base = static_cast<char*>(parts->iov_base) + left;
      parts->iov_len -= left;
    }
  }
}

void ReadOnlyFile::read_exact(std::uint64_t offset, std::uint64_t bytes,
                              void* out) const {
  // One part: read_scattered's checks, and its loop over what Linux moves
  // per call (at most 0x7ffff000 bytes).
  iovec part{out, static_cast<std::size_t>(bytes)};
  read_scattered(offset, &part, 1);
}

}  // namespace floe
