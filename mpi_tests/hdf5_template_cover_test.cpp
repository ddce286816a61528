// A save from the template writes the file in one collective write with no
// holes (hdf5_template.hpp, write_template): rank 0's structure_runs() must
// cover every byte outside the storage exactly once, with the template's
// bytes where it has them and zeros elsewhere, and write_scattered_all must
// put every rank's runs where they belong whichever 64 MiB spans they fall
// in (its rounds are cut at the same file offsets on every rank).
#include <cstring>
#include <fstream>
#include <map>

#include "engines/hdf5/hdf5_template.hpp"
#include "io/mpi_file.hpp"
#include "test_util.hpp"

namespace floe::test {
namespace {

using h5::Extent;
using h5::FileTemplate;

FileTemplate::Run run_of(std::uint64_t offset, std::size_t n, char first) {
  FileTemplate::Run run{offset, std::vector<char>(n)};
  for (std::size_t i = 0; i < n; ++i)
    run.bytes[i] = static_cast<char>(first + i % 50);
  return run;
}

// What structure_runs() gives, as the byte each offset of [0, end) receives
// (-1: none); fails the test on a run written twice, a run inside the
// storage or past `end`.
std::vector<int> bytes_written(const std::vector<IoRun>& runs,
                               const std::vector<Extent>& storage,
                               std::uint64_t end) {
  std::vector<int> out(end, -1);
  std::uint64_t last_end = 0;
  for (const IoRun& run : runs) {
    EXPECT_GT(run.length, 0u);
    EXPECT_GE(run.offset, last_end) << "runs out of order or overlapping";
    EXPECT_LE(run.offset + run.length, end) << "a run past the file's end";
    last_end = run.offset + run.length;
    for (const Extent& e : storage) {
      EXPECT_TRUE(run.offset + run.length <= e.begin || run.offset >= e.end)
          << "a run at " << run.offset << " inside the storage [" << e.begin
          << ", " << e.end << ")";
    }
    for (std::uint64_t i = 0; i < run.length && run.offset + i < end; ++i) {
      out[run.offset + i] =
          static_cast<unsigned char>(static_cast<const char*>(run.memory)[i]);
    }
  }
  return out;
}

TEST(Hdf5TemplateCover, StructureRunsCoverEveryByteOutsideTheStorageOnce) {
  // Storage at the start, in the middle (two touching extents merged by
  // storage_extents, given here as one), and past the file's end; image
  // runs against the storage on both sides and in the middle of a gap; a
  // gap of zeros longer than the zero buffer.
  const std::uint64_t size = 10000;
  const std::vector<Extent> storage = {{0, 100}, {2000, 2600}, {9000, 12000}};
  const std::vector<FileTemplate::Run> image = {
      run_of(100, 50, 'a'), run_of(500, 300, 'b'), run_of(1900, 100, 'c'),
      run_of(2600, 10, 'd'), run_of(8990, 10, 'e')};
  const std::vector<char> zeros(64, 0);
  const std::vector<IoRun> runs =
      h5::structure_runs(image, storage, size, zeros);

  const std::vector<int> got = bytes_written(runs, storage, size);
  std::vector<int> want(size, 0);
  for (const Extent& e : storage) {
    for (std::uint64_t i = e.begin; i < std::min(e.end, size); ++i)
      want[i] = -1;
  }
  for (const auto& run : image) {
    for (std::size_t i = 0; i < run.bytes.size(); ++i) {
      want[run.offset + i] = static_cast<unsigned char>(run.bytes[i]);
    }
  }
  for (std::uint64_t i = 0; i < size; ++i) {
    ASSERT_EQ(got[i], want[i]) << "at offset " << i;
  }
  for (const IoRun& run : runs) {
    if (run.memory == zeros.data()) {
      EXPECT_LE(run.length, zeros.size());
    }
  }
}

TEST(Hdf5TemplateCover, StructureRunsOfAFileWithoutStorageOrImage) {
  const std::vector<char> zeros(4096, 0);
  // No storage: the image and zeros make the whole file.
  const std::vector<FileTemplate::Run> image = {run_of(4096, 4096, 'x')};
  const auto all = h5::structure_runs(image, {}, 3 * 4096, zeros);
  const std::vector<int> got = bytes_written(all, {}, 3 * 4096);
  for (std::uint64_t i = 0; i < 3 * 4096; ++i) {
    const int want = i >= 4096 && i < 8192 ? 'x' + (i - 4096) % 50 : 0;
    ASSERT_EQ(got[i], want) << "at offset " << i;
  }
  // No zeros (large tensors left to HDF5): the image's runs alone.
  const auto image_only = h5::structure_runs(image, {{0, 100}}, 3 * 4096, {});
  ASSERT_EQ(image_only.size(), 1u);
  EXPECT_EQ(image_only[0].offset, 4096u);
  EXPECT_EQ(image_only[0].length, 4096u);
  EXPECT_EQ(image_only[0].memory, image[0].bytes.data());
  // Storage everywhere: nothing for rank 0 to write.
  EXPECT_TRUE(h5::structure_runs({}, {{0, 5000}}, 5000, zeros).empty());
}

// Every rank writes its share of a file of 70 MiB (crossing the 64 MiB
// span at which write_scattered_all cuts its rounds), pieces dealt round
// robin, a run crossing the span on the last rank, then nothing up to
// 140 MiB (spans no rank writes) and a tail there. The file holds every
// byte where it belongs and zeros in the gap.
TEST(Hdf5TemplateCover, ScatteredWritePutsEveryRanksRunsWhereTheyBelong) {
  const int rank = world_rank(), size = world_size();
  const std::uint64_t span = 64ull << 20;
  const auto byte_at = [](std::uint64_t o) {
    return static_cast<char>((o * 131 + o / 4093) & 0xff);
  };
  // The pieces of [0, 70 MiB) and the tail, by rank.
  std::map<int, std::vector<Extent>> pieces;
  std::uint64_t at = 0;
  for (int i = 0; at < (70ull << 20); ++i) {
    std::uint64_t n = 4093 + (static_cast<std::uint64_t>(i) * 7919) % 300000;
    if (at < span - (1 << 20) && at + n > span - (1 << 20)) {
      n = (2 << 20);  // crosses the span's end
      pieces[size - 1].push_back({at, at + n});
    } else {
      pieces[i % size].push_back({at, at + n});
    }
    at += n;
  }
  const std::uint64_t gap_end = 140ull << 20, end = gap_end + 12345;
  pieces[0].push_back({gap_end, end});

  std::vector<char> memory;
  for (const Extent& e : pieces[rank]) {
    for (std::uint64_t o = e.begin; o < e.end; ++o)
      memory.push_back(byte_at(o));
  }
  std::vector<IoRun> runs;
  std::uint64_t used = 0;
  for (const Extent& e : pieces[rank]) {
    runs.push_back(IoRun{e.begin, memory.data() + used, e.end - e.begin});
    used += e.end - e.begin;
  }
  TempDir dir;
  const auto path = dir.path() / "scattered";
  {
    MpiFile file(MPI_COMM_WORLD, path, MpiFile::Mode::kCreate, MpiInfo());
    file.write_scattered_all(MPI_COMM_WORLD, runs);
    file.close();
  }
  if (rank == 0) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> got((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
    ASSERT_EQ(got.size(), end);
    for (std::uint64_t o = 0; o < end; ++o) {
      const char want = o >= at && o < gap_end ? 0 : byte_at(o);
      ASSERT_EQ(got[o], want) << "at offset " << o;
    }
  }
}

}  // namespace
}  // namespace floe::test
