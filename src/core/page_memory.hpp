// Memory that starts on a page boundary, for the buffers large reads fill
// and large copies go through. glibc places a large block 16 bytes past a
// page; the kernel's copies out of the page cache into memory placed so
// cost loads at 2-4 ranks ~1.6x the CPU (BENCHMARKS.md, "Shard memory
// alignment"), and `floe diff` ~1.5x its time ("Reading a checkpoint
// back"). A page boundary also suits O_DIRECT (direct_io) and pinned
// staging.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace floe {

inline constexpr std::size_t kPageBytes = 4096;

// `bytes` bytes (at least one) on a page boundary, uninitialized; throws
// std::bad_alloc. Freed with free_pages().
inline std::byte* allocate_pages(std::size_t bytes) {
  return static_cast<std::byte*>(
      ::operator new[](bytes ? bytes : 1, std::align_val_t{kPageBytes}));
}
inline void free_pages(void* p) noexcept {
  ::operator delete[](p, std::align_val_t{kPageBytes});
}

struct PageFree {
  void operator()(void* p) const noexcept { free_pages(p); }
};
// An owned allocate_pages() block.
using PageBlock = std::unique_ptr<std::byte[], PageFree>;
inline PageBlock page_block(std::size_t bytes) { return PageBlock(allocate_pages(bytes)); }

// A std::vector allocator: page-aligned storage, and elements
// default-initialized, so resize() does not zero bytes a read overwrites.
template <typename T>
struct PageAllocator {
  using value_type = T;
  PageAllocator() = default;
  template <typename U>
  PageAllocator(const PageAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return reinterpret_cast<T*>(allocate_pages(n * sizeof(T))); }
  void deallocate(T* p, std::size_t) noexcept { free_pages(p); }
  template <typename U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  friend bool operator==(const PageAllocator&, const PageAllocator&) { return true; }
  friend bool operator!=(const PageAllocator&, const PageAllocator&) { return false; }
};

// A reusable byte buffer for reads: page-aligned, resize() does not zero.
using PageBytes = std::vector<unsigned char, PageAllocator<unsigned char>>;

}  // namespace floe
