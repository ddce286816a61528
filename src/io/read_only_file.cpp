#include "io/read_only_file.hpp"

#include <cerrno>
#include <cstring>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "floe/error.hpp"

namespace floe {

ReadOnlyFile::ReadOnlyFile(const std::filesystem::path& path) : path_(path) {
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
}

ReadOnlyFile::~ReadOnlyFile() {
  if (fd_ >= 0) ::close(fd_);
}

ReadOnlyFile::ReadOnlyFile(ReadOnlyFile&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      size_(other.size_) {}

ReadOnlyFile& ReadOnlyFile::operator=(ReadOnlyFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = other.size_;
  }
  return *this;
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
  while (count > 0) {
    // Linux moves at most 0x7ffff000 bytes per call and returns what it
    // moved: the parts are advanced past it and the rest read again.
    const ssize_t got = ::preadv(fd_, parts, count, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::kIo, path_.string() + ": read failed at offset " +
                                      std::to_string(offset) + ": " +
                                      std::strerror(errno));
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
