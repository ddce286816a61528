#include "engines/hf/file_writer.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

namespace floe::hf {
namespace {

// A buffered stretch at least this long has its writeback started at once
// (where the O_DIRECT path is not in use).
constexpr std::uint64_t kWritebackMin = 1ull << 20;

// Direct writes move at most this much per call (Linux moves at most
// 0x7ffff000 bytes per write anyway).
constexpr std::uint64_t kMaxCall = 1ull << 30;

std::uint64_t align_up(std::uint64_t v) {
  return (v + FileWriter::kAlign - 1) / FileWriter::kAlign * FileWriter::kAlign;
}
std::uint64_t align_down(std::uint64_t v) {
  return v / FileWriter::kAlign * FileWriter::kAlign;
}

}  // namespace

FileWriter::FileWriter(const std::filesystem::path& path,
                       std::uint64_t capacity, bool direct)
    : path_(path),
      // Whole pages where there are at least two, so that room() can end
      // stretches on page boundaries.
      capacity_(capacity >= 2 * kAlign ? align_down(capacity)
                                       : std::max<std::uint64_t>(capacity, 1)) {
  buffered_fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (buffered_fd_ < 0) {
    error_ = path_.string() + ": cannot open for writing: " + std::strerror(errno);
  } else {
    writeback_.emplace(buffered_fd_);
  }
#ifdef O_DIRECT
  if (direct && buffered_fd_ >= 0 && capacity_ >= 2 * kAlign) {
    direct_fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_DIRECT);
  }
#else
  (void)direct;
#endif
  // Buffers are mapped, not taken from the heap, so that their pages go
  // back to the system when the writer does (malloc would keep them).
  slots_.resize(kBuffers);
  for (Slot& slot : slots_) {
    void* memory = ::mmap(nullptr, capacity_ + kAlign, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
      for (Slot& s : slots_) {
        if (s.memory) ::munmap(s.memory, capacity_ + kAlign);
      }
      if (direct_fd_ >= 0) ::close(direct_fd_);
      if (buffered_fd_ >= 0) ::close(buffered_fd_);
      throw std::bad_alloc();
    }
    slot.memory = static_cast<unsigned char*>(memory);
  }
  try {
    for (int i = 0; i + 1 < kBuffers; ++i) {
      threads_.emplace_back([this] { run(); });
    }
  } catch (...) {
    // A thread that cannot start: the ones started are stopped and
    // joined (a joinable std::thread destroyed with the members would
    // terminate the process), and the caller gets the error.
    release();
    throw;
  }
}

FileWriter::~FileWriter() { release(); }

void FileWriter::release() noexcept {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  if (direct_fd_ >= 0) ::close(direct_fd_);
  if (buffered_fd_ >= 0) ::close(buffered_fd_);
  for (Slot& slot : slots_) ::munmap(slot.memory, capacity_ + kAlign);
}

std::uint64_t FileWriter::room(std::uint64_t offset) const {
  if (capacity_ < 2 * kAlign) return capacity_;
  return capacity_ - offset % kAlign;
}

unsigned char* FileWriter::acquire(std::uint64_t offset) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return !slots_[fill_].full; });
  Slot& slot = slots_[fill_];
  slot.offset = offset;
  slot.bytes = 0;
  slot.external = nullptr;
  acquired_ = true;
  return slot.memory + (capacity_ < 2 * kAlign ? 0 : offset % kAlign);
}

void FileWriter::submit(std::uint64_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!acquired_) return;
    acquired_ = false;
    if (bytes == 0) return;  // the slot stays free and is handed out again
    slots_[fill_].bytes = bytes;
    slots_[fill_].full = true;
    fill_ = (fill_ + 1) % kBuffers;
  }
  changed_.notify_all();
}

bool FileWriter::idle() const {
  for (const Slot& slot : slots_) {
    if (slot.full) return false;
  }
  return true;
}

void FileWriter::write_from(std::uint64_t offset, const unsigned char* data,
                            std::uint64_t bytes) {
  if (bytes == 0) return;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return !slots_[fill_].full; });
    Slot& slot = slots_[fill_];
    slot.offset = offset;
    slot.bytes = bytes;
    slot.external = data;
    slot.full = true;
    fill_ = (fill_ + 1) % kBuffers;
  }
  changed_.notify_all();
}

std::string FileWriter::finish() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return idle(); });
  return error_;
}

bool FileWriter::failed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return !error_.empty();
}

bool FileWriter::direct() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return direct_fd_ >= 0 && !direct_refused_;
}

void FileWriter::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    // Slots are filled and taken in ring order.
    changed_.wait(lock, [&] {
      return (slots_[drain_].full && !slots_[drain_].writing) ||
             (stop_ && idle());
    });
    if (!slots_[drain_].full || slots_[drain_].writing) return;  // stopping
    Slot& slot = slots_[drain_];
    drain_ = (drain_ + 1) % kBuffers;
    slot.writing = true;
    const bool skip = !error_.empty();
    lock.unlock();
    if (!skip) write_slot(slot);
    lock.lock();
    slot.writing = false;
    slot.full = false;
    changed_.notify_all();
  }
}

void FileWriter::write_slot(const Slot& slot) {
  if (slot.external) {  // caller's memory: no alignment promised
    write_buffered(slot.offset, slot.external, slot.bytes);
    start_writeback(slot.offset, slot.bytes);
    return;
  }
  const unsigned char* data =
      slot.memory + (capacity_ < 2 * kAlign ? 0 : slot.offset % kAlign);
  const std::uint64_t begin = slot.offset, end = slot.offset + slot.bytes;
  const std::uint64_t lo = align_up(begin), hi = align_down(end);
  bool use_direct = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    use_direct = direct_fd_ >= 0 && !direct_refused_;
  }
  if (use_direct && hi > lo) {
    if (lo > begin) write_buffered(begin, data, lo - begin);
    write_direct(lo, data + (lo - begin), hi - lo);
    if (end > hi) write_buffered(hi, data + (hi - begin), end - hi);
    return;
  }
  write_buffered(begin, data, slot.bytes);
  start_writeback(begin, slot.bytes);
}

void FileWriter::start_writeback(std::uint64_t offset, std::uint64_t bytes) {
  // Best effort; errors come back from the caller's sync as well.
  if (writeback_ && bytes >= kWritebackMin) writeback_->written(offset, bytes);
}

void FileWriter::write_buffered(std::uint64_t offset, const unsigned char* data,
                                std::uint64_t n) {
  while (n > 0) {
    const ssize_t k = ::pwrite(buffered_fd_, data, std::min(n, kMaxCall),
                               static_cast<off_t>(offset));
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      fail("cannot write " + std::to_string(n) + " bytes at offset " +
           std::to_string(offset) + ": " +
           (k < 0 ? std::strerror(errno) : "no progress"));
      return;
    }
    data += k;
    offset += static_cast<std::uint64_t>(k);
    n -= static_cast<std::uint64_t>(k);
  }
}

// When the file system refuses a direct write (EINVAL), this one and every
// later stretch are written buffered.
void FileWriter::write_direct(std::uint64_t offset, const unsigned char* data,
                              std::uint64_t n) {
  while (n > 0) {
    const ssize_t k = ::pwrite(direct_fd_, data, std::min(n, kMaxCall),
                               static_cast<off_t>(offset));
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && errno == EINVAL) {
      {
        // The descriptor stays open (another thread may be using it)
        // until the destructor.
        std::lock_guard<std::mutex> lock(mutex_);
        direct_refused_ = true;
      }
      write_buffered(offset, data, n);
      return;
    }
    if (k <= 0) {
      fail("cannot write " + std::to_string(n) + " bytes at offset " +
           std::to_string(offset) + " (O_DIRECT): " +
           (k < 0 ? std::strerror(errno) : "no progress"));
      return;
    }
    // A short direct write ends on a block boundary; an unaligned rest
    // (which O_DIRECT would refuse) goes through the page cache.
    data += k;
    offset += static_cast<std::uint64_t>(k);
    n -= static_cast<std::uint64_t>(k);
    if (n > 0 && (offset % kAlign != 0 || n % kAlign != 0)) {
      write_buffered(offset, data, n);
      return;
    }
  }
}

void FileWriter::fail(const std::string& why) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (error_.empty()) error_ = path_.string() + ": " + why;
}

}  // namespace floe::hf
