// Self-checks of the MPI-aware test main. They are DISABLED_: each fails on
// purpose on some ranks, to show by hand that only failing ranks print, that
// rank 0 reports which ranks failed, and that every rank exits non-zero:
//   mpirun -n 3 build-tests/mpi_tests/core_mpi_test
//       --gtest_also_run_disabled_tests --gtest_filter='MainSelfCheck.*'
//   -> "FAILED on rank 2", "FAILED on ranks 0, 2", "FAILED on rank 0" (twice),
//   exit code 1 (every rank), and no hang
#include <stdexcept>

#include <gtest/gtest.h>
#include <mpi.h>

#include "test_util.hpp"

namespace floe {
namespace {

TEST(MainSelfCheck, DISABLED_PassesEverywhere) { EXPECT_EQ(1 + 1, 2); }

TEST(MainSelfCheck, DISABLED_FailsOnTheLastRank) {
  EXPECT_NE(test::world_rank(), test::world_size() - 1)
      << "the last rank fails";
}

TEST(MainSelfCheck, DISABLED_FailsOnEvenRanks) {
  EXPECT_NE(test::world_rank() % 2, 0) << "line one of the message\nline two";
}

TEST(MainSelfCheck, DISABLED_SkippedEverywhere) {
  GTEST_SKIP() << "skipped on purpose";
}

TEST(MainSelfCheck, DISABLED_ThrowsOnRankZero) {
  if (test::world_rank() == 0)
    throw std::runtime_error("an exception escaped the test");
}

// A failed ASSERT in on_rank0_then_barrier's function ends the function,
// and rank 0 still meets the others at the barrier: the test fails on rank
// 0 and the job goes on to the next test instead of hanging.
TEST(MainSelfCheck, DISABLED_AnAssertOnRankZeroBeforeABarrierFailsWithoutHanging) {
  test::on_rank0_then_barrier([] { ASSERT_EQ(1, 2) << "rank 0 fails here"; });
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace floe
