#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

#include "floe/error.hpp"
#include "floe/file_system.hpp"

namespace floe {
namespace {

[[noreturn]] void fail(const std::string& what, const fs::path& path,
                       int error) {
  throw Error(ErrorCode::kIo, what + " " + path.string() + ": " +
                                  std::strerror(error));
}

// Closes the descriptor on every path out.
class Fd {
 public:
  Fd(const fs::path& path, int flags, mode_t mode = 0644)
      : fd_(::open(path.c_str(), flags | O_CLOEXEC, mode)) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release_close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

class PosixFileSystem : public FileSystem {
 public:
  bool exists(const fs::path& path) override {
    std::error_code ec;
    return fs::exists(fs::symlink_status(path, ec));
  }

  bool is_directory(const fs::path& path) override {
    std::error_code ec;
    return fs::is_directory(fs::symlink_status(path, ec));
  }

  void create_directories(const fs::path& path) override {
    std::error_code ec;
    fs::create_directories(path, ec);
    if (ec) fail("cannot create directory", path, ec.value());
  }

  void remove_all(const fs::path& path) override {
    std::error_code ec;
    fs::remove_all(path, ec);
    if (ec) fail("cannot remove", path, ec.value());
  }

  void rename(const fs::path& from, const fs::path& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      fail("cannot rename " + from.string() + " to", to, errno);
    }
  }

  std::vector<std::string> list(const fs::path& dir) override {
    std::error_code ec;
    std::vector<std::string> names;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end;
         it.increment(ec)) {
      names.push_back(it->path().filename().string());
    }
    if (ec) fail("cannot list", dir, ec.value());
    return names;
  }

  std::uint64_t file_size(const fs::path& path) override {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) fail("cannot stat", path, errno);
    return static_cast<std::uint64_t>(st.st_size);
  }

  std::string read_file(const fs::path& path, std::uint64_t max_bytes) override {
    Fd fd(path, O_RDONLY);
    if (fd.get() < 0) fail("cannot open", path, errno);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) fail("cannot stat", path, errno);
    if (static_cast<std::uint64_t>(st.st_size) > max_bytes) {
      throw Error(ErrorCode::kCorrupt,
                  path.string() + " is " + std::to_string(st.st_size) +
                      " bytes, more than the " + std::to_string(max_bytes) +
                      " allowed");
    }
    std::string out(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::pread(fd.get(), out.data() + done, out.size() - done,
                                static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail("cannot read", path, errno);
      if (n == 0) break;  // shrank while reading
      done += static_cast<std::size_t>(n);
    }
    out.resize(done);
    return out;
  }

  void write_file(const fs::path& path, std::string_view bytes) override {
    Fd fd(path, O_WRONLY | O_CREAT | O_TRUNC);
    if (fd.get() < 0) fail("cannot create", path, errno);
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail("cannot write", path, errno);
      done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd.get()) != 0) fail("cannot fsync", path, errno);
    if (fd.release_close() != 0) fail("cannot close", path, errno);
  }

  void fsync_file(const fs::path& path) override {
    Fd fd(path, O_RDONLY);
    if (fd.get() < 0) fail("cannot open", path, errno);
    if (::fsync(fd.get()) != 0) fail("cannot fsync", path, errno);
  }

  void fsync_dir(const fs::path& dir) override {
    Fd fd(dir, O_RDONLY | O_DIRECTORY);
    if (fd.get() < 0) fail("cannot open directory", dir, errno);
    if (::fsync(fd.get()) != 0) fail("cannot fsync directory", dir, errno);
  }

  void before_data_write(const fs::path&, std::uint64_t) override {}
};

}  // namespace

void FileSystem::replace_file_atomically(const fs::path& path,
                                         std::string_view bytes) {
  const fs::path temp = path.parent_path() / ("." + path.filename().string() + ".tmp");
  write_file(temp, bytes);
  rename(temp, path);
  fsync_dir(path.parent_path().empty() ? fs::path(".") : path.parent_path());
}

void FileSystem::reserve(const fs::path& path, std::uint64_t offset, std::uint64_t bytes) {
#ifdef __linux__
  if (bytes == 0) return;
  Fd fd(path, O_WRONLY);
  if (fd.get() < 0) return;  // the writes that follow report it
  int rc;
  do {
    rc = ::fallocate(fd.get(), FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                     static_cast<off_t>(bytes));
  } while (rc != 0 && errno == EINTR);
  // ENOSPC/EDQUOT: the writes would fail too, later and after more work.
  // Anything else (EOPNOTSUPP on many parallel file systems, ENOSYS, EINVAL
  // for a range the file system cannot take) only means no reservation.
  if (rc != 0 && (errno == ENOSPC || errno == EDQUOT)) {
    fail("cannot reserve " + std::to_string(bytes) + " bytes for", path, errno);
  }
#else
  (void)path;
  (void)offset;
  (void)bytes;
#endif
}

std::shared_ptr<FileSystem> posix_file_system() {
  static const auto instance = std::make_shared<PosixFileSystem>();
  return instance;
}

}  // namespace floe
