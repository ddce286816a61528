// core/page_memory.hpp: the page-aligned blocks and vectors that shards,
// staging pools and read buffers are made of.
#include "core/page_memory.hpp"

#include <cstdint>
#include <algorithm>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>

namespace floe {
namespace {

std::uintptr_t offset_in_page(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % kPageBytes;
}

TEST(PageMemory, BlocksStartOnAPageWhateverTheirSize) {
  // 64 MiB: a size glibc serves from a mapping of its own, 16 bytes past a
  // page with plain new[].
  for (const std::size_t bytes : {std::size_t{0}, std::size_t{1}, std::size_t{4095},
                                  std::size_t{4096}, std::size_t{100000},
                                  std::size_t{64} << 20}) {
    const PageBlock block = page_block(bytes);
    ASSERT_NE(block.get(), nullptr) << bytes;
    EXPECT_EQ(offset_in_page(block.get()), 0u) << bytes;
    if (bytes > 0) {
      block[0] = std::byte{1};  // writable end to end
      block[bytes - 1] = std::byte{2};
    }
  }
}

TEST(PageMemory, VectorsStayOnAPageAndKeepTheirValues) {
  PageBytes bytes;
  bytes.resize(3u << 20);
  EXPECT_EQ(offset_in_page(bytes.data()), 0u);
  std::iota(bytes.begin(), bytes.end(), static_cast<unsigned char>(0));
  const unsigned char* before = bytes.data();
  bytes.resize(1u << 20);  // shrinking and growing within the capacity
  bytes.resize(2u << 20);  // keeps the storage and the bytes before the cut
  EXPECT_EQ(bytes.data(), before);
  EXPECT_EQ(bytes[(1u << 20) - 1], static_cast<unsigned char>((1u << 20) - 1));
  bytes.resize(8u << 20);  // a new block, still on a page, values moved
  EXPECT_EQ(offset_in_page(bytes.data()), 0u);
  EXPECT_EQ(bytes[12345], static_cast<unsigned char>(12345));
  // Values given are stored as given.
  const PageBytes filled(5000, 7);
  EXPECT_EQ(offset_in_page(filled.data()), 0u);
  EXPECT_EQ(std::count(filled.begin(), filled.end(), 7), 5000);
  std::vector<double, PageAllocator<double>> doubles(3, 1.5);
  EXPECT_EQ(offset_in_page(doubles.data()), 0u);
  EXPECT_EQ(doubles[2], 1.5);
}

}  // namespace
}  // namespace floe
