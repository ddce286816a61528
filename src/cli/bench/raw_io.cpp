#include "cli/bench/raw_io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "floe/error.hpp"

namespace floe::bench {
namespace {

constexpr std::size_t kChunk = 64u << 20;

[[noreturn]] void fail(const char* what, const std::filesystem::path& path) {
  throw Error(ErrorCode::kIo,
              std::string(what) + " " + path.string() + ": " + std::strerror(errno));
}

}  // namespace

void raw_write(const std::filesystem::path& path, const State& state) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create", path);
  for (const auto& shard : state.tensors()) {
    const auto* p = reinterpret_cast<const char*>(shard.data());
    std::uint64_t left = shard.nbytes();
    while (left > 0) {
      const ssize_t n = ::write(fd, p, std::min<std::uint64_t>(left, kChunk));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail("cannot write", path);
      p += n;
      left -= static_cast<std::uint64_t>(n);
    }
  }
  if (::fsync(fd) != 0) fail("cannot fsync", path);
  if (::close(fd) != 0) fail("cannot close", path);
}

void raw_write_replacing(const std::filesystem::path& path,
                         const std::filesystem::path& previous, const State& state) {
  raw_write(path, state);
  if (::unlink(previous.c_str()) != 0 && errno != ENOENT) fail("cannot remove", previous);
}

void raw_read(const std::filesystem::path& path, State& state) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open", path);
  for (auto& shard : state.tensors()) {
    auto* p = reinterpret_cast<char*>(shard.data());
    std::uint64_t left = shard.nbytes();
    while (left > 0) {
      const ssize_t n = ::read(fd, p, std::min<std::uint64_t>(left, kChunk));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fd);
        fail("cannot read", path);
      }
      p += n;
      left -= static_cast<std::uint64_t>(n);
    }
  }
  ::close(fd);
}

void drop_cache(const std::filesystem::path& dir) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const int fd = ::open(it->path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

}  // namespace floe::bench
