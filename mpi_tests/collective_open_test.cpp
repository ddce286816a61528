// Collective opens that fail on some ranks only: a node that does not see
// the directory (yet), or lacks the permission. Every rank must throw the
// same error naming the rank that failed, and none may hang. Under Open
// MPI's default MPI-IO component (OMPIO, what CTest runs these under) a
// bare MPI_File_open failing on one rank deadlocks inside the open, and
// HDF5's H5Fcreate/H5Fopen with it; check_open_on_every_rank
// (io/mpi_file.hpp) is what every collective open is preceded by.
//
// One machine cannot hide a directory from one rank, so the last rank is
// handed a path inside a directory that does not exist, where the others
// get the real one: what that rank's node would see.
#include <chrono>
#include <filesystem>
#include <functional>
#include <string>

#include "engines/hdf5/h5_file_create.hpp"
#include "hdf5_test_support.hpp"
#include "io/mpi_file.hpp"

namespace floe::test {
namespace {

namespace fs = std::filesystem;

bool is_blind_rank() { return world_rank() == world_size() - 1; }

// `dir` / `name` as this rank sees it: the last rank's lies in a directory
// that does not exist.
fs::path as_seen_here(const fs::path& dir, const std::string& name) {
  return is_blind_rank() ? dir / "not-on-this-node" / name : dir / name;
}

// Every rank throws kIo naming the last rank, what it could not do and why,
// within a minute (a hang aborts the job instead).
void expect_agreed_failure(const std::function<void()>& open, const std::string& what) {
  // A single rank's error names no rank.
  const std::string named =
      world_size() > 1 ? "rank " + std::to_string(world_size() - 1) + ": " + what : what;
  run_within(std::chrono::seconds(60), [&] {
    EXPECT_TRUE(throws_error(open, ErrorCode::kIo,
                             {named, "not-on-this-node", "No such file or directory"}));
  });
}

TEST(CollectiveOpen, MpiFileFailingOnOneRankFailsOnEveryRank) {
  TempDir dir;
  on_rank0_then_barrier([&] { std::ofstream(dir / "existing.bin") << "bytes"; });
  expect_agreed_failure(
      [&] {
        MpiFile file(MPI_COMM_WORLD, as_seen_here(dir.path(), "new.bin"),
                     MpiFile::Mode::kCreate, MpiInfo());
      },
      "cannot create");
  for (const auto mode : {MpiFile::Mode::kWrite, MpiFile::Mode::kRead}) {
    expect_agreed_failure(
        [&] {
          MpiFile file(MPI_COMM_WORLD, as_seen_here(dir.path(), "existing.bin"), mode,
                       MpiInfo());
        },
        "cannot open");
  }
  // The ranks that see the file still open it together afterwards.
  MpiFile file(MPI_COMM_WORLD, dir / "existing.bin", MpiFile::Mode::kRead, MpiInfo());
  EXPECT_EQ(file.size(), 5u);
  file.close();
}

TEST(CollectiveOpen, Hdf5CreateFailingOnOneRankFailsOnEveryRank) {
  TempDir dir;
  const h5::QuietErrors quiet;
  expect_agreed_failure(
      [&] {
        h5::create_file(as_seen_here(dir.path(), "new.h5"), MPI_COMM_WORLD,
                        h5::Hdf5Options{}, 1);
      },
      "cannot create");
  // A file made by every rank, reopened for writing by all but one.
  h5::create_file(dir / "made.h5", MPI_COMM_WORLD, h5::Hdf5Options{}, 1)
      .close("H5Fclose made.h5");
  expect_agreed_failure(
      [&] {
        h5::open_file_to_write(as_seen_here(dir.path(), "made.h5"), MPI_COMM_WORLD,
                               h5::Hdf5Options{});
      },
      "cannot open");
}

TEST(CollectiveOpen, Hdf5ReaderFailingOnOneRankFailsOnEveryRank) {
  if (world_size() < 2) {
    GTEST_SKIP() << "needs a rank that sees the checkpoint and one that does not";
  }
  TempDir dir;
  SimpleTrainer trainer;
  build_region_kinds(trainer.state(), world_rank(), world_size());
  make_test_engine(trainer, "hdf5", dir.path())->save();
  const fs::path saved = dir / "global_step_0";
  const auto checkpoint = open_checkpoint(saved, MPI_COMM_WORLD);
  auto files = posix_file_system();
  // Rank 0 checks that the data file exists before the collective open: the
  // checkpoint is there; the last rank's node does not see its directory.
  const fs::path here = is_blind_rank() ? dir / "not-on-this-node" : saved;
  expect_agreed_failure(
      [&] {
        h5::Hdf5Reader reader(
            ReadContext{here, checkpoint.manifest, MPI_COMM_WORLD, *files});
      },
      "cannot open");
  // The checkpoint itself is untouched and loads.
  SimpleTrainer again;
  build_region_kinds(again.state(), world_rank(), world_size());
  make_test_engine(again, "hdf5", dir.path())->load();
  EXPECT_TRUE(state_holds_expected(again.state()));
}

}  // namespace
}  // namespace floe::test
