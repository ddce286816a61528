#include "cli/bench/raw_io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "floe/error.hpp"

namespace floe::bench {
namespace {

constexpr std::size_t kChunk = 64u << 20;

[[noreturn]] void fail(const char* what, const std::filesystem::path& path) {
  throw Error(ErrorCode::kIo,
              std::string(what) + " " + path.string() + ": " + std::strerror(errno));
}

// fail() after closing `fd`, with the errno of the failed call.
[[noreturn]] void fail_closing(int fd, const char* what, const std::filesystem::path& path) {
  const int error = errno;
  ::close(fd);
  errno = error;
  fail(what, path);
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
      if (n < 0) fail_closing(fd, "cannot write", path);
      p += n;
      left -= static_cast<std::uint64_t>(n);
    }
  }
  if (::fsync(fd) != 0) fail_closing(fd, "cannot fsync", path);
  if (::close(fd) != 0) fail("cannot close", path);
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
      if (n == 0) errno = EIO;  // the file ends before the state does
      if (n <= 0) fail_closing(fd, "cannot read", path);
      p += n;
      left -= static_cast<std::uint64_t>(n);
    }
  }
  ::close(fd);
}

std::vector<std::filesystem::path> latest_checkpoint_files(
    const std::filesystem::path& engine_dir) {
  const std::filesystem::path latest = engine_dir / "latest";
  std::ifstream in(latest);
  std::string tag;
  if (!(in >> tag)) fail("cannot read", latest);
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(engine_dir / tag, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_regular_file(ec)) files.push_back(it->path());
  }
  if (ec) {
    throw Error(ErrorCode::kIo,
                "cannot list " + (engine_dir / tag).string() + ": " + ec.message());
  }
  if (files.empty()) {
    throw Error(ErrorCode::kNotFound, "no files in checkpoint " + (engine_dir / tag).string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::uint64_t raw_read_share(const std::vector<std::filesystem::path>& files, int rank,
                             int size, State& state) {
  std::vector<std::uint64_t> sizes;
  std::uint64_t total = 0;
  for (const auto& f : files) {
    std::error_code ec;
    sizes.push_back(std::filesystem::file_size(f, ec));
    if (ec) {
      throw Error(ErrorCode::kIo, "cannot stat " + f.string() + ": " + ec.message());
    }
    total += sizes.back();
  }
  const std::uint64_t begin = total * static_cast<std::uint64_t>(rank) / size;
  const std::uint64_t end = total * static_cast<std::uint64_t>(rank + 1) / size;
  // Destinations: the shards' memory in order, from the first again when
  // the share is larger than the state (metadata, manifests).
  auto shard = state.tensors().begin();
  std::uint64_t used = 0;  // bytes of *shard filled
  const auto destination = [&](std::uint64_t want) -> std::pair<char*, std::uint64_t> {
    int wraps = 0;
    while (shard == state.tensors().end() || used == shard->nbytes()) {
      if (shard == state.tensors().end()) {
        if (++wraps > 1) return {nullptr, 0};  // a state without bytes
        shard = state.tensors().begin();
      } else {
        ++shard;
      }
      used = 0;
    }
    return {reinterpret_cast<char*>(shard->data()) + used,
            std::min({want, shard->nbytes() - used, static_cast<std::uint64_t>(kChunk)})};
  };
  std::uint64_t at = 0;  // start of files[i] in the concatenation
  for (std::size_t i = 0; i < files.size(); at += sizes[i], ++i) {
    const std::uint64_t from = std::max(begin, at), to = std::min(end, at + sizes[i]);
    if (from >= to) continue;
    const int fd = ::open(files[i].c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("cannot open", files[i]);
    std::uint64_t offset = from - at, left = to - from;
    while (left > 0) {
      auto [p, n] = destination(left);
      if (!p) {
        ::close(fd);
        throw Error(ErrorCode::kInvalidArgument, "raw read: the state has no bytes to read into");
      }
      const ssize_t got = ::pread(fd, p, n, static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got == 0) errno = EIO;  // the file ends before the range does
      if (got <= 0) fail_closing(fd, "cannot read", files[i]);
      used += static_cast<std::uint64_t>(got);
      offset += static_cast<std::uint64_t>(got);
      left -= static_cast<std::uint64_t>(got);
    }
    ::close(fd);
  }
  return total;
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
