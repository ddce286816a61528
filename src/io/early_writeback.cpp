#include "io/early_writeback.hpp"

#include <fcntl.h>
#include <unistd.h>

namespace floe {

EarlyWriteback::EarlyWriteback(const std::filesystem::path& path) {
#ifdef SYNC_FILE_RANGE_WRITE
  fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
#else
  (void)path;
#endif
}

EarlyWriteback::~EarlyWriteback() {
  if (fd_ >= 0) ::close(fd_);
}

void EarlyWriteback::written(std::uint64_t offset, std::uint64_t bytes) {
#ifdef SYNC_FILE_RANGE_WRITE
  if (fd_ < 0 || bytes == 0) return;
  if (::sync_file_range(fd_, static_cast<off64_t>(offset), static_cast<off64_t>(bytes),
                        SYNC_FILE_RANGE_WRITE) != 0) {
    ::close(fd_);
    fd_ = -1;
  }
#else
  (void)offset;
  (void)bytes;
#endif
}

}  // namespace floe
