#include "io/early_writeback.hpp"

#include <fcntl.h>
#include <unistd.h>

namespace floe {

EarlyWriteback::EarlyWriteback(const std::filesystem::path& path) {
#ifdef SYNC_FILE_RANGE_WRITE
  fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  owned_ = fd_ >= 0;
#else
  (void)path;
#endif
}

EarlyWriteback::EarlyWriteback(int fd) {
#ifdef SYNC_FILE_RANGE_WRITE
  fd_ = fd;
#else
  (void)fd;
#endif
}

EarlyWriteback::~EarlyWriteback() {
  if (owned_) ::close(fd_);
}

bool EarlyWriteback::active() const {
  return fd_ >= 0 && !failed_.load(std::memory_order_relaxed);
}

void EarlyWriteback::written(std::uint64_t offset, std::uint64_t bytes) {
#ifdef SYNC_FILE_RANGE_WRITE
  if (!active() || bytes == 0) return;
  // The descriptor stays open after a failure (another thread may be in a
  // call on it); the destructor closes it if it is this object's.
  if (::sync_file_range(fd_, static_cast<off64_t>(offset), static_cast<off64_t>(bytes),
                        SYNC_FILE_RANGE_WRITE) != 0) {
    failed_.store(true, std::memory_order_relaxed);
  }
#else
  (void)offset;
  (void)bytes;
#endif
}

}  // namespace floe
