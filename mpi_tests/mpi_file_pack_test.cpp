// MpiFile's collective writes of many runs (io/mpi_file.hpp), read back
// byte for byte: write_all packs the small runs it finds next to each
// other in the file into a 16 MiB buffer, write_scattered_all packs every
// run of a round (up to 64 MiB a rank) into one; neither zero-fills the
// buffer it reuses. Runs of odd sizes (1 byte to just under 1 MiB, and
// 1 MiB, which goes unpacked) lie back to back past one buffer's worth,
// with gaps between others and the ranks' runs interleaved; one rank has
// more than one round of write_scattered_all, and at 3 ranks one rank has
// no runs. The gaps must keep the bytes the file held before.
#include <algorithm>
#include <fstream>

#include "io/mpi_file.hpp"
#include "test_util.hpp"

namespace floe::test {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kMiB = 1 << 20;

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 31;
  x *= 0x9e3779b97f4a7c15ull;
  x ^= x >> 29;
  return x;
}
// What the writes put at file offset `o`, and what the file held there
// before: never the same byte, and neighbours rarely alike, so a byte
// shifted, left stale from an earlier fill or not written shows.
unsigned char written_byte(std::uint64_t o) {
  return static_cast<unsigned char>(mix(o) >> 56);
}
unsigned char old_byte(std::uint64_t o) { return written_byte(o) ^ 0x5c; }

struct Item {
  std::uint64_t offset = 0, length = 0;
  int rank = 0;
};

// The runs of every rank, in file order, and the file's size (a gap at the
// end). Ranks r with r % 3 == 2 have none; each other rank has ~21 MiB of
// runs of mixed sizes back to back (more than write_all's 16 MiB buffer),
// then a gap, a 1 MiB run (written from memory), a 5-byte run right after
// it and one after a 4 KiB gap. Rank 0 also has 46 runs of just under
// 1 MiB with 7-byte gaps: with the rest, more than one 64 MiB round of
// write_scattered_all. Last, 400 small runs of the ranks in turn, some
// touching, some not.
struct Plan {
  std::vector<Item> items;
  std::uint64_t file_size = 0;
};

Plan make_plan(int size) {
  Plan plan;
  std::uint64_t at = 0;
  const auto run = [&](std::uint64_t gap, std::uint64_t length, int rank) {
    at += gap;
    plan.items.push_back({at, length, rank});
    at += length;
  };
  std::vector<int> writers;
  for (int r = 0; r < size; ++r) {
    if (r % 3 == 2) continue;
    writers.push_back(r);
    const std::uint64_t sizes[] = {kMiB - 1, 1, 3, 4095, 4097, 777777, 65543};
    for (int cycle = 0; cycle < 12; ++cycle) {
      for (const std::uint64_t s : sizes) run(0, s, r);
    }
    run(1, kMiB, r);
    run(0, 5, r);
    run(4096, 100, r);
    if (r == 0) {
      for (int i = 0; i < 46; ++i) run(7, kMiB - 13 - i, r);
    }
    at += 3;
  }
  std::uint64_t lcg = 12345;
  const std::uint64_t gaps[] = {0, 0, 1, 17, 4096};
  for (int i = 0; i < 400; ++i) {
    lcg = mix(lcg + 1);
    run(gaps[lcg % 5], 1 + (lcg >> 20) % 9000,
        writers[static_cast<std::size_t>(i) % writers.size()]);
  }
  plan.file_size = at + 5000;
  return plan;
}

// This rank's runs of `plan` (file order), their bytes in `memory`: laid
// out in reverse order with a byte between them, so that no run continues
// another in memory and write_all has to pack them.
std::vector<IoRun> runs_of(const Plan& plan, int rank,
                           std::vector<unsigned char>& memory) {
  std::vector<const Item*> mine;
  std::uint64_t bytes = 0;
  for (const Item& item : plan.items) {
    if (item.rank != rank) continue;
    mine.push_back(&item);
    bytes += item.length + 1;
  }
  memory.assign(bytes, 0xee);
  std::vector<IoRun> runs(mine.size());
  std::uint64_t at = 0;
  for (std::size_t i = mine.size(); i-- > 0;) {
    const Item& item = *mine[i];
    for (std::uint64_t b = 0; b < item.length; ++b)
      memory[at + b] = written_byte(item.offset + b);
    runs[i] = IoRun{item.offset, memory.data() + at, item.length};
    at += item.length + 1;
  }
  return runs;
}

// Rank 0 fills `path` with the old bytes, `bytes` long.
void write_old_file(const fs::path& path, std::uint64_t bytes) {
  if (world_rank() == 0) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    std::vector<char> chunk(kMiB);
    for (std::uint64_t at = 0; at < bytes; at += chunk.size()) {
      const std::uint64_t n = std::min<std::uint64_t>(chunk.size(), bytes - at);
      for (std::uint64_t i = 0; i < n; ++i)
        chunk[i] = static_cast<char>(old_byte(at + i));
      out.write(chunk.data(), static_cast<std::streamsize>(n));
    }
    EXPECT_TRUE(out.good()) << path;
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// Rank 0: success when `path` holds the runs' bytes where `plan` puts runs
// and the old bytes elsewhere; otherwise how many bytes differ and where
// the first lies.
::testing::AssertionResult holds_plan(const fs::path& path, const Plan& plan) {
  const std::string file = slurp(path);
  if (file.size() != plan.file_size) {
    return ::testing::AssertionFailure()
           << path << " is " << file.size() << " bytes, not " << plan.file_size;
  }
  std::uint64_t wrong = 0;
  std::string first;
  const auto check = [&](std::uint64_t begin, std::uint64_t end, bool written,
                         const std::string& what) {
    for (std::uint64_t o = begin; o < end; ++o) {
      const unsigned char want = written ? written_byte(o) : old_byte(o);
      if (static_cast<unsigned char>(file[o]) == want) continue;
      if (wrong++ == 0) {
        first = "offset " + std::to_string(o) + " (" + what + ") holds " +
                std::to_string(static_cast<unsigned char>(file[o])) +
                ", not " + std::to_string(want);
      }
    }
  };
  std::uint64_t at = 0;
  for (const Item& item : plan.items) {
    check(at, item.offset, false, "a gap");
    check(item.offset, item.offset + item.length, true,
          "rank " + std::to_string(item.rank) + "'s run of " +
              std::to_string(item.length) + " bytes at " +
              std::to_string(item.offset));
    at = item.offset + item.length;
  }
  check(at, plan.file_size, false, "the gap at the end");
  if (wrong == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << wrong << " of " << file.size() << " bytes differ; the first at "
         << first;
}

enum class Write { kAll, kScatteredAll };

class MpiFilePack : public ::testing::TestWithParam<Write> {};

TEST_P(MpiFilePack, RunsReadBackExactlyAndGapsKeepTheirBytes) {
  TempDir dir;
  const fs::path path = dir / "file";
  const Plan plan = make_plan(world_size());
  write_old_file(path, plan.file_size);
  std::vector<unsigned char> memory;
  std::vector<IoRun> runs = runs_of(plan, world_rank(), memory);
  std::uint64_t mine = 0;
  for (const IoRun& run : runs) mine += run.length;
  // The plan is what its comment says (rank 0 past one scattered round).
  if (world_rank() % 3 == 2) {
    EXPECT_EQ(mine, 0u);
  } else if (world_rank() == 0) {
    EXPECT_GT(mine, 64 * kMiB);
  }
  {
    MpiFile file(MPI_COMM_WORLD, path, MpiFile::Mode::kWrite, MpiInfo());
    run_within(std::chrono::seconds(120), [&] {
      if (GetParam() == Write::kAll) {
        file.write_all(MPI_COMM_WORLD, std::move(runs));
      } else {
        file.write_scattered_all(MPI_COMM_WORLD, runs);
      }
    });
    file.close();
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) {
    EXPECT_TRUE(holds_plan(path, plan));
  }
}

INSTANTIATE_TEST_SUITE_P(Writes, MpiFilePack,
                         ::testing::Values(Write::kAll, Write::kScatteredAll),
                         [](const auto& info) {
                           return info.param == Write::kAll ? "write_all"
                                                            : "write_scattered_all";
                         });

}  // namespace
}  // namespace floe::test
