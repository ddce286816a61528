// NodeSharedBytes (core/node_shared.hpp): rank 0's bytes readable on every
// rank, once per node in a shared window, or through a broadcast where the
// window cannot be had. The manifest reaches every rank of a load this way.
#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/node_shared.hpp"

namespace floe {
namespace {

// `size` bytes that differ with `seed`, NUL bytes included.
std::string pattern(std::size_t size, unsigned seed) {
  std::string out(size, '\0');
  for (std::size_t i = 0; i < size; ++i) {
    out[i] = static_cast<char>((i * 131 + seed * 7 + (i >> 9)) % 256);
  }
  return out;
}

// Whether this kernel can prefault a shared mapping for writing, as the
// window's first rank does before it is used (Linux 5.14 and later).
bool kernel_populates() {
#ifdef MADV_POPULATE_WRITE
  const long page = sysconf(_SC_PAGESIZE);
  void* p = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  const bool ok = madvise(p, page, MADV_POPULATE_WRITE) == 0;
  munmap(p, page);
  return ok;
#else
  return false;
#endif
}

// Whether this run's ranks should get `size` bytes through a window: not
// where a ctest entry turns it off (FLOE_NODE_SHARED=0) or points Open
// MPI's windows at a missing directory (both set FLOE_TEST_EXPECT_FALLBACK),
// nor where the bytes do not fit the small file system a ctest entry
// mounted for them (FLOE_TEST_SHM_ROOM: its size in bytes).
bool window_expected(std::size_t size) {
  if (!kernel_populates() || std::getenv("FLOE_TEST_EXPECT_FALLBACK") != nullptr) return false;
  const char* room = std::getenv("FLOE_TEST_SHM_ROOM");
  return room == nullptr || size + 1 + NodeSharedBytes::kRoomMargin <= std::stoull(room);
}

TEST(NodeShared, RankZerosBytesArriveEverywhereFollowedByNul) {
  const Comm comm(MPI_COMM_WORLD);
  for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{4093},
                                 std::size_t{(3u << 20) + 7}}) {
    const std::string expected = pattern(size, 1);
    // Only rank 0's argument counts: the others pass other bytes.
    const std::string mine = comm.rank() == 0 ? expected : pattern(size / 2 + 5, 2);
    const NodeSharedBytes shared(comm, mine);
    ASSERT_EQ(shared.view().size(), size);
    EXPECT_TRUE(shared.view() == expected) << "size " << size;
    EXPECT_EQ(shared.view().data()[size], '\0') << "size " << size;
    EXPECT_EQ(shared.shared(), window_expected(size)) << "size " << size;
  }
}

TEST(NodeShared, EachCommunicatorGetsItsOwnRankZerosBytes) {
  const Comm world(MPI_COMM_WORLD);
  MPI_Comm half = MPI_COMM_NULL;
  ASSERT_EQ(MPI_Comm_split(MPI_COMM_WORLD, world.rank() % 2, world.rank(), &half), MPI_SUCCESS);
  {
    const Comm comm(half);
    // Rank 0 of each half is world rank 0 or 1.
    const std::string expected = pattern(100000, static_cast<unsigned>(world.rank() % 2) + 10);
    const NodeSharedBytes shared(comm, comm.rank() == 0 ? expected : std::string("other"));
    EXPECT_TRUE(shared.view() == expected);
  }
  MPI_Comm_free(&half);
}

TEST(NodeShared, ManyInTurnAndTwoAtOnce) {
  const Comm comm(MPI_COMM_WORLD);
  for (unsigned i = 0; i < 40; ++i) {
    const std::string expected = pattern(1000 + i * 977, i);
    const NodeSharedBytes shared(comm, comm.rank() == 0 ? expected : std::string());
    ASSERT_TRUE(shared.view() == expected) << "round " << i;
  }
  const std::string a = pattern(5000, 3), b = pattern(7000, 4);
  const NodeSharedBytes first(comm, comm.rank() == 0 ? a : std::string());
  const NodeSharedBytes second(comm, comm.rank() == 0 ? b : std::string());
  EXPECT_TRUE(first.view() == a);
  EXPECT_TRUE(second.view() == b);
}

}  // namespace
}  // namespace floe
