// The staging pool: one host buffer per engine that a save copies the state
// into, allocated at the first staged save, sized from the state, and grown
// (never shrunk) only when the state outgrows it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace floe {

class DeviceCopier;

// Not thread-safe. Move-only owner of the buffer; the destructor never throws.
class StagingPool {
 public:
  StagingPool() = default;
  ~StagingPool();
  StagingPool(const StagingPool&) = delete;
  StagingPool& operator=(const StagingPool&) = delete;

  // Makes the pool hold at least `bytes`. Keeps the buffer when it is big
  // enough (and pinned when `pinned_by` asks for pinned memory); otherwise
  // frees it and allocates `bytes`: page-locked through `pinned_by` when it
  // is given, page-aligned host memory when not. `limit` caps the pool
  // (0: no cap). Throws Error(kIo) naming the size when the cap is too small
  // or the allocation fails; the pool is then empty.
  void reserve(std::uint64_t bytes, std::uint64_t limit, DeviceCopier* pinned_by);

  std::byte* data() const { return data_; }
  std::uint64_t capacity() const { return capacity_; }
  bool pinned() const { return pinned_by_ != nullptr; }
  // Changes whenever the buffer moves (a pointer into it is then stale).
  std::uint64_t generation() const { return generation_; }

 private:
  void release() noexcept;

  std::byte* data_ = nullptr;
  std::uint64_t capacity_ = 0;
  DeviceCopier* pinned_by_ = nullptr;
  std::uint64_t generation_ = 0;
};

// Where each shard's copy starts in the pool: offsets rounded up to this.
inline constexpr std::uint64_t kStagingAlignment = 64;

}  // namespace floe
