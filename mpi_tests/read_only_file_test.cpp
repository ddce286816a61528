// ReadOnlyFile (src/io/read_only_file.hpp), what the checkpoint readers and
// the hf code read through: what it refuses to open, exact bytes at any
// offset and length, scattered reads that fill every part, reads that leave
// the file refused before any byte is read, a file cut short after it was
// opened reported by the read with the file's name, and reads around the
// page cache (O_DIRECT) where memory and file line up.
#include "io/read_only_file.hpp"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "floe/error.hpp"
#include "test_util.hpp"

namespace floe {
namespace {

using test::throws_error;

constexpr std::uint64_t kMiB = 1u << 20;

// Byte i of the test files: not periodic in any power of two, so a read
// from a wrong offset or into a wrong place never matches.
char byte_at(std::uint64_t i) { return static_cast<char>((i * 131 + i / 4099) & 0xff); }

std::filesystem::path write_file(const test::TempDir& dir, const std::string& name,
                                 std::uint64_t size) {
  std::vector<char> bytes(size);
  for (std::uint64_t i = 0; i < size; ++i) bytes[i] = byte_at(i);
  const auto path = dir / name;
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(size));
  return path;
}

::testing::AssertionResult holds(const std::vector<char>& got, std::uint64_t offset) {
  for (std::uint64_t i = 0; i < got.size(); ++i) {
    if (got[i] != byte_at(offset + i)) {
      return ::testing::AssertionFailure() << "byte " << i << " of a read at " << offset;
    }
  }
  return ::testing::AssertionSuccess();
}

TEST(ReadOnlyFile, OpenRefusesWhatIsNotARegularFileNamingIt) {
  test::TempDir dir(MPI_COMM_SELF);
  EXPECT_TRUE(throws_error([&] { ReadOnlyFile file(dir / "absent"); }, ErrorCode::kNotFound,
                           {(dir / "absent").string(), "cannot open"}));
  std::filesystem::create_directory(dir / "sub");
  EXPECT_TRUE(throws_error([&] { ReadOnlyFile file(dir / "sub"); }, ErrorCode::kCorrupt,
                           {(dir / "sub").string(), "not a regular file"}));
}

TEST(ReadOnlyFile, LargeAndSmallReadsAreExactAtAnyOffset) {
  test::TempDir dir(MPI_COMM_SELF);
  const std::uint64_t size = 6 * kMiB + 123;
  const ReadOnlyFile file(write_file(dir, "data", size));
  EXPECT_EQ(file.size(), size);
  struct Case {
    std::uint64_t offset, bytes;
  };
  // Unaligned starts and ends, reads of a few bytes to a few MiB, one
  // ending at the file's last byte.
  for (const Case c : {Case{0, 2 * kMiB}, Case{1, kMiB}, Case{4095, 3 * kMiB + 5},
                       Case{2 * kMiB - 7, kMiB - 1}, Case{size - kMiB - 3, kMiB + 3},
                       Case{size - 10, 10}}) {
    std::vector<char> got(c.bytes);
    file.read_exact(c.offset, c.bytes, got.data());
    EXPECT_TRUE(holds(got, c.offset));
  }
}

TEST(ReadOnlyFile, ReadLeavingTheFileIsRefusedNamingTheRange) {
  test::TempDir dir(MPI_COMM_SELF);
  const auto path = write_file(dir, "data", 3 * kMiB);
  const ReadOnlyFile file(path);
  std::vector<char> got(2 * kMiB, 'x');
  EXPECT_TRUE(throws_error([&] { file.read_exact(kMiB + 1, got.size(), got.data()); },
                           ErrorCode::kCorrupt,
                           {path.string(), "read of 2097152 bytes at 1048577",
                            "leaves the file (3145728 bytes)"}));
  EXPECT_TRUE(throws_error([&] { file.read_exact(4 * kMiB, 1, got.data()); },
                           ErrorCode::kCorrupt, {path.string(), "leaves the file"}));
  // Refused before reading: nothing was written into the buffer.
  EXPECT_EQ(got, std::vector<char>(2 * kMiB, 'x'));
}

TEST(ReadOnlyFile, ScatteredLargeReadFillsEveryPart) {
  test::TempDir dir(MPI_COMM_SELF);
  const ReadOnlyFile file(write_file(dir, "data", 5 * kMiB));
  std::vector<char> a(kMiB / 2 + 1), b(kMiB + 17), c(3);
  iovec parts[3] = {{a.data(), a.size()}, {b.data(), b.size()}, {c.data(), c.size()}};
  file.read_scattered(777, parts, 3);
  EXPECT_TRUE(holds(a, 777));
  EXPECT_TRUE(holds(b, 777 + a.size()));
  EXPECT_TRUE(holds(c, 777 + a.size() + b.size()));
}

void file_cut_after_opening(bool direct);

// Memory on a 4 KiB boundary, as O_DIRECT reads need it.
struct AlignedBuffer {
  explicit AlignedBuffer(std::uint64_t bytes)
      : data(static_cast<char*>(::operator new[](bytes, std::align_val_t{4096}))) {}
  ~AlignedBuffer() { ::operator delete[](data, std::align_val_t{4096}); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  char* data;
};

// With `direct`, a large read goes around the page cache for the stretch
// whose file offsets and memory are both 4 KiB-aligned, and through it for
// the rest; a read whose memory does not line up with the file, or a small
// one, goes through the cache alone. The bytes are the same every way.
TEST(ReadOnlyFile, DirectReadsAreExactWhereverTheMemorySits) {
  test::TempDir dir(MPI_COMM_SELF);
  const std::uint64_t size = 9 * kMiB + 123;
  const ReadOnlyFile file(write_file(dir, "data", size), true);
  // The test directory's file system may refuse O_DIRECT (tmpfs before
  // Linux 6.6, some FUSE file systems): then every read goes through the
  // cache, and only the bytes are checked.
  const bool direct = file.reads_direct();
  if (!direct) std::cout << "note: " << dir.path() << " refuses O_DIRECT\n";
  constexpr std::uint64_t kBlock = ReadOnlyFile::kDirectAlign;
  struct Case {
    // shift: where the memory starts past a 4 KiB boundary; direct: the
    // bytes read around the cache.
    std::uint64_t offset, bytes, shift, direct;
  };
  const std::uint64_t near_end = size - kMiB - 50;
  for (const Case c : {
           Case{0, 4 * kMiB, 0, 4 * kMiB},  // aligned throughout
           // Aligned alike in memory and file: 3996 bytes through the
           // cache, then blocks around it, then the last 100 bytes.
           Case{5 * kBlock + 100, 3 * kMiB, 100, 3 * kMiB - kBlock},
           Case{kBlock, 2 * kMiB, 1, 0},  // memory one byte off: the cache
           // To the file's end, which is not on a block boundary.
           Case{near_end, kMiB + 50, near_end % kBlock,
                (kMiB + 50 - (kBlock - near_end % kBlock)) / kBlock * kBlock},
           Case{2 * kBlock, ReadOnlyFile::kDirectFrom - 1, 0, 0},  // too small
       }) {
    AlignedBuffer memory(c.bytes + 2 * kBlock);
    char* into = memory.data + c.shift;
    const std::uint64_t before = file.direct_bytes();
    file.read_exact(c.offset, c.bytes, into);
    EXPECT_TRUE(holds(std::vector<char>(into, into + c.bytes), c.offset));
    EXPECT_EQ(file.direct_bytes() - before, direct ? c.direct : 0)
        << "read of " << c.bytes << " at " << c.offset << " into memory " << c.shift
        << " past a block";
  }
  // Off: through the cache alone.
  const ReadOnlyFile cached(dir / "data");
  EXPECT_FALSE(cached.reads_direct());
  AlignedBuffer memory(4 * kMiB);
  cached.read_exact(0, 4 * kMiB, memory.data);
  EXPECT_TRUE(holds(std::vector<char>(memory.data, memory.data + 4 * kMiB), 0));
  EXPECT_EQ(cached.direct_bytes(), 0u);
}

// A file cut after it was opened (another program rewriting a checkpoint):
// the size checked at open no longer holds, and the read reports the cut,
// whether or not it reads around the page cache.
TEST(ReadOnlyFile, FileCutAfterOpeningIsAnErrorNotASignal) {
  for (const bool direct : {false, true}) {
    SCOPED_TRACE(direct ? "O_DIRECT" : "page cache");
    file_cut_after_opening(direct);
  }
}

void file_cut_after_opening(bool direct) {
  test::TempDir dir(MPI_COMM_SELF);
  const auto path = write_file(dir, "data", 8 * kMiB);
  const ReadOnlyFile file(path, direct);
  std::filesystem::resize_file(path, 3 * kMiB + 100);
  std::vector<char> got(4 * kMiB);
  EXPECT_TRUE(throws_error([&] { file.read_exact(kMiB, got.size(), got.data()); },
                           ErrorCode::kCorrupt,
                           {path.string(), "ended at 3145828", "truncated"}));
  EXPECT_TRUE(throws_error([&] { file.read_exact(5 * kMiB, 2 * kMiB, got.data()); },
                           ErrorCode::kCorrupt, {path.string(), "truncated"}));
  // What is still there reads as before.
  got.resize(2 * kMiB);
  file.read_exact(kMiB, got.size(), got.data());
  EXPECT_TRUE(holds(got, kMiB));
}

TEST(ReadOnlyFile, MovedFileKeepsReading) {
  test::TempDir dir(MPI_COMM_SELF);
  ReadOnlyFile first(write_file(dir, "a", 3 * kMiB));
  ReadOnlyFile moved(std::move(first));
  std::vector<char> got(2 * kMiB);
  moved.read_exact(kMiB - 1, got.size(), got.data());
  EXPECT_TRUE(holds(got, kMiB - 1));
  ReadOnlyFile other(write_file(dir, "b", 2 * kMiB));
  other = std::move(moved);
  other.read_exact(3, got.size(), got.data());
  EXPECT_TRUE(holds(got, 3));
  EXPECT_EQ(other.size(), 3 * kMiB);
}

}  // namespace
}  // namespace floe
