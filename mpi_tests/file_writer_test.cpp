// hf::FileWriter, the export's per-rank writer thread: stretches at any
// offset and length land byte for byte (O_DIRECT middles, buffered heads and
// tails), tiny buffers work, and failures come back from finish() naming
// the file instead of throwing. Also EarlyWriteback on a caller's
// descriptor, as FileWriter uses it.
#include "engines/hf/file_writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "io/early_writeback.hpp"
#include "test_util.hpp"

namespace floe::test {
namespace {

using hf::FileWriter;

// Writes `data` into `writer` as stretches of the given lengths, starting at
// `offset`, each cut into room()-sized buffers.
void write_stretch(FileWriter& writer, std::uint64_t offset,
                   const std::string& data) {
  std::uint64_t done = 0;
  while (done < data.size()) {
    unsigned char* buffer = writer.acquire(offset + done);
    const std::uint64_t n =
        std::min<std::uint64_t>(writer.room(offset + done), data.size() - done);
    std::memcpy(buffer, data.data() + done, n);
    writer.submit(n);
    done += n;
  }
}

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(gen());
  return out;
}

void create_file(const std::filesystem::path& path, std::uint64_t size) {
  std::ofstream(path, std::ios::binary).close();
  std::filesystem::resize_file(path, size);
}

// Stretches of every alignment: inside one page, across pages, longer than
// a buffer, starting and ending off page boundaries, adjacent to each
// other, written out of order.
TEST(FileWriter, WritesStretchesOfAnyAlignment) {
  TempDir tmp(MPI_COMM_SELF);
  const auto path = tmp / "out.bin";
  const std::uint64_t size = 200'000;
  const std::string expected = random_bytes(size, 7);
  create_file(path, size);
  const std::vector<std::pair<std::uint64_t, std::uint64_t>> stretches = {
      {100'000, 100'000},  // unaligned start, runs to the end
      {0, 8},              // a header-like stretch
      {8, 4088},           // up to the first page boundary
      {4096, 3},           // tiny, page-aligned start
      {4099, 60'000},      // longer than a buffer, unaligned both ends
      {64'099, 35'901},    // ends where the first stretch starts
  };
  for (const bool direct : {false, true}) {
    {
      FileWriter writer(path, 3 * FileWriter::kAlign + 100, direct);
      for (const auto& [at, n] : stretches) {
        write_stretch(writer, at, expected.substr(at, n));
      }
      EXPECT_EQ(writer.finish(), "");
      EXPECT_FALSE(writer.failed());
      if (!direct) {
        EXPECT_FALSE(writer.direct());
      }
    }
    EXPECT_EQ(slurp(path), expected) << "direct " << direct;
    create_file(path, 0);  // empty again
    create_file(path, size);
  }
}

// write_from: stretches written straight from the caller's memory, mixed
// with buffered ones, in any order.
TEST(FileWriter, WritesFromTheCallersMemory) {
  TempDir tmp(MPI_COMM_SELF);
  const auto path = tmp / "out.bin";
  const std::string expected = random_bytes(50'000, 3);
  create_file(path, expected.size());
  const auto* bytes = reinterpret_cast<const unsigned char*>(expected.data());
  FileWriter writer(path, 2 * FileWriter::kAlign);
  writer.write_from(30'000, bytes + 30'000, 20'000);
  write_stretch(writer, 0, expected.substr(0, 10'001));
  for (std::uint64_t at = 10'001; at < 30'000; at += 999) {
    writer.write_from(at, bytes + at, std::min<std::uint64_t>(999, 30'000 - at));
  }
  EXPECT_EQ(writer.finish(), "");
  EXPECT_EQ(slurp(path), expected);
}

TEST(FileWriter, TinyBuffersWriteEverythingBuffered) {
  TempDir tmp(MPI_COMM_SELF);
  const auto path = tmp / "out.bin";
  const std::string expected = random_bytes(10'000, 11);
  create_file(path, expected.size());
  FileWriter writer(path, 24);
  EXPECT_FALSE(writer.direct());
  write_stretch(writer, 0, expected.substr(0, 5'001));
  write_stretch(writer, 5'001, expected.substr(5'001));
  EXPECT_EQ(writer.finish(), "");
  EXPECT_EQ(slurp(path), expected);
}

TEST(FileWriter, AnEmptySubmitReleasesTheBuffer) {
  TempDir tmp(MPI_COMM_SELF);
  const auto path = tmp / "out.bin";
  create_file(path, 16);
  FileWriter writer(path, 1 << 16);
  for (int i = 0; i < 5; ++i) {  // would wait forever if a slot stayed taken
    writer.acquire(0);
    writer.submit(0);
  }
  write_stretch(writer, 0, "0123456789abcdef");
  EXPECT_EQ(writer.finish(), "");
  EXPECT_EQ(slurp(path), "0123456789abcdef");
}

TEST(FileWriter, AMissingFileIsReportedByFinish) {
  TempDir tmp(MPI_COMM_SELF);
  const auto path = tmp / "missing" / "out.bin";
  FileWriter writer(path, 1 << 16);
  EXPECT_TRUE(writer.failed());
  write_stretch(writer, 0, "dropped");
  const std::string error = writer.finish();
  EXPECT_NE(error.find(path.string()), std::string::npos) << error;
  EXPECT_NE(error.find("cannot open"), std::string::npos) << error;
  EXPECT_FALSE(std::filesystem::exists(path));
}

// /dev/full takes the open and refuses every write with ENOSPC: the first
// failure is kept (file, offset, reason), later buffers are dropped.
TEST(FileWriter, AFailedWriteIsKeptAndLaterOnesDropped) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  FileWriter writer("/dev/full", 1 << 16);
  write_stretch(writer, 0, std::string(100, 'x'));
  write_stretch(writer, 100, std::string(100'000, 'y'));
  const std::string error = writer.finish();
  EXPECT_TRUE(writer.failed());
  EXPECT_NE(error.find("/dev/full: cannot write 100 bytes at offset 0"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find(std::strerror(ENOSPC)), std::string::npos) << error;
}

// EarlyWriteback on a caller's descriptor (how FileWriter uses it): it
// starts writeback on the caller's file, stops after a failing call (a pipe
// refuses sync_file_range), and never closes the descriptor, even then.
#ifdef SYNC_FILE_RANGE_WRITE
TEST(EarlyWriteback, UsesTheCallersDescriptorAndNeverClosesIt) {
  TempDir tmp(MPI_COMM_SELF);
  const auto path = tmp / "data.bin";
  create_file(path, 0);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const std::string bytes = random_bytes(1 << 20, 5);
  ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), 0),
            static_cast<ssize_t>(bytes.size()));
  {
    EarlyWriteback writeback(fd);
    writeback.written(0, bytes.size());
    EXPECT_TRUE(writeback.active());
  }
  EXPECT_GE(::fcntl(fd, F_GETFD), 0) << "the caller's descriptor was closed";
  EXPECT_EQ(::fsync(fd), 0);
  ::close(fd);

  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  {
    EarlyWriteback writeback(pipe_fds[1]);
    EXPECT_TRUE(writeback.active());
    writeback.written(0, 4096);  // ESPIPE
    EXPECT_FALSE(writeback.active());
    writeback.written(4096, 4096);  // not tried again
  }
  EXPECT_GE(::fcntl(pipe_fds[1], F_GETFD), 0)
      << "the caller's descriptor was closed after a failure";
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

TEST(EarlyWriteback, OwnDescriptorOnlyForAnExistingFile) {
  TempDir tmp(MPI_COMM_SELF);
  create_file(tmp / "data.bin", 4096);
  EXPECT_TRUE(EarlyWriteback(tmp / "data.bin").active());
  EXPECT_FALSE(EarlyWriteback(tmp / "missing.bin").active());
  EXPECT_FALSE(EarlyWriteback(-1).active());
}
#endif

}  // namespace
}  // namespace floe::test
