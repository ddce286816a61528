#include "core/staging_pool.hpp"

#include <new>
#include <string>

#include "core/page_memory.hpp"
#include "cuda/device_copy.hpp"
#include "floe/error.hpp"

namespace floe {
namespace {

std::string describe(std::uint64_t bytes) {
  return std::to_string(bytes) + " bytes (" +
         std::to_string(static_cast<double>(bytes) / (1 << 20)) + " MiB)";
}

}  // namespace

StagingPool::~StagingPool() { release(); }

void StagingPool::release() noexcept {
  if (data_ == nullptr) return;
  if (pinned_by_) {
    pinned_by_->free_pinned(data_);
  } else {
    free_pages(data_);
  }
  data_ = nullptr;
  capacity_ = 0;
  pinned_by_ = nullptr;
}

void StagingPool::reserve(std::uint64_t bytes, std::uint64_t limit,
                          DeviceCopier* pinned_by) {
  const bool pinned_ok = pinned_by == nullptr || pinned_by_ == pinned_by;
  if (data_ != nullptr && bytes <= capacity_ && pinned_ok) return;
  // Free first: the old and the new buffer never coexist, so the peak is the
  // new size.
  release();
  ++generation_;
  if (limit != 0 && bytes > limit) {
    throw Error(ErrorCode::kIo,
                "cannot allocate the staging pool: the state needs " + describe(bytes) +
                    " of staging memory on this rank, more than staging_pool_limit (" +
                    describe(limit) + ")");
  }
  const std::uint64_t rounded = (bytes + kPageBytes - 1) / kPageBytes * kPageBytes;
  if (pinned_by) {
    data_ = static_cast<std::byte*>(pinned_by->allocate_pinned(rounded));
  } else {
    try {
      data_ = allocate_pages(rounded);
    } catch (const std::bad_alloc&) {
      throw Error(ErrorCode::kIo, "cannot allocate the staging pool: out of memory for " +
                                      describe(rounded) + " on this rank");
    }
  }
  capacity_ = rounded;
  pinned_by_ = pinned_by;
}

}  // namespace floe
