// Collective error agreement (core/comm.hpp): a failure on any rank becomes
// the same floe::Error on every rank, and nobody is left in a collective.
// Also the checked communicator wrapper the agreement is built on.
#include <chrono>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/comm.hpp"
#include "test_util.hpp"

namespace floe {
namespace {

using namespace std::chrono_literals;
using test::catch_error;
using test::Caught;
using test::run_within;
using test::same_on_all_ranks;

constexpr auto kDeadline = 60s;

class Agreement : public ::testing::Test {
 protected:
  const Comm comm{MPI_COMM_WORLD};
  const int rank = comm.rank();
  const int size = comm.size();

  // Runs `fn` on every rank through collectively(), under a deadline, and
  // returns what it threw.
  template <typename Fn>
  Caught agree(Fn fn) {
    return catch_error(
        [&] { run_within(kDeadline, [&] { collectively(comm, fn); }); });
  }
};

// The message every rank must see: the lowest failing rank's, with "rank R: "
// and the count of other failing ranks in front (nothing in a 1-rank job).
std::string agreed_message(int first, int failed, int size,
                           const std::string& message) {
  if (size == 1) return message;
  std::string prefix = "rank " + std::to_string(first);
  if (failed == 2) prefix += " (and 1 other rank)";
  if (failed > 2)
    prefix += " (and " + std::to_string(failed - 1) + " other ranks)";
  return prefix + ": " + message;
}

std::string describe(const Caught& c) {
  return std::string(c.thrown ? "thrown " : "returned ") +
         (c.floe_error ? std::string(error_code_name(c.code)) : "non-floe") +
         ": " + c.message;
}

TEST_F(Agreement, SuccessEverywhereReturnsEachRanksResult) {
  int calls = 0;
  int result = -1;
  run_within(kDeadline, [&] {
    result = collectively(comm, [&] {
      ++calls;
      return 10 * rank + 1;
    });
  });
  EXPECT_EQ(result, 10 * rank + 1);  // results are per rank, not agreed
  EXPECT_EQ(calls, 1);

  std::string text;
  run_within(kDeadline, [&] {
    collectively(comm, [&] { text = "ran on " + std::to_string(rank); });
  });
  EXPECT_EQ(text, "ran on " + std::to_string(rank));

  const Caught none = catch_error([&] { agree_on_error(comm, nullptr); });
  EXPECT_FALSE(none.thrown) << none.message;
}

TEST_F(Agreement, OneFailingRankEachInTurn) {
  for (int failing = 0; failing < size; ++failing) {
    SCOPED_TRACE("failing rank " + std::to_string(failing));
    const std::string local =
        "checksum mismatch in data.bin seen by rank " + std::to_string(failing);
    const Caught c = agree([&] {
      if (rank == failing) throw Error(ErrorCode::kCorrupt, local);
      return 7;
    });
    EXPECT_TRUE(test::is_error(c, ErrorCode::kCorrupt)) << describe(c);
    EXPECT_EQ(c.message, agreed_message(failing, 1, size, local));
    EXPECT_TRUE(same_on_all_ranks(describe(c)));
  }
}

TEST_F(Agreement, AnMpiCallFailingOnOneRankFailsEveryRank) {
  // What MpiFile::sync() and close() do with their MPI call's result: an
  // fsync that fails on one rank only must stop every rank there.
  for (int failing = 0; failing < size; ++failing) {
    SCOPED_TRACE("failing rank " + std::to_string(failing));
    const int rc = rank == failing ? MPI_ERR_IO : MPI_SUCCESS;
    const Caught c = catch_error([&] { agree_mpi(comm, rc, "cannot sync /ckpt/data.bin"); });
    const std::string local = "cannot sync /ckpt/data.bin: " + mpi_error_text(MPI_ERR_IO);
    EXPECT_TRUE(test::is_error(c, ErrorCode::kIo)) << describe(c);
    EXPECT_EQ(c.message, agreed_message(failing, 1, size, local));
    EXPECT_TRUE(same_on_all_ranks(describe(c)));
  }
  const Caught none = catch_error([&] { agree_mpi(comm, MPI_SUCCESS, "cannot sync"); });
  EXPECT_FALSE(none.thrown) << none.message;
}

TEST_F(Agreement, AnErrorAgreedOnInsideIsNamedOnce) {
  // A collective step that agrees on its own failure (MpiFile::sync)
  // inside one that agrees again (the engine's write step).
  for (int failing = 0; failing < size; ++failing) {
    SCOPED_TRACE("failing rank " + std::to_string(failing));
    const int rc = rank == failing ? MPI_ERR_IO : MPI_SUCCESS;
    const Caught c = catch_error([&] {
      collectively(comm, [&] {
        collectively(comm, [&] { agree_mpi(comm, rc, "cannot sync /ckpt/data.bin"); });
      });
    });
    const std::string local = "cannot sync /ckpt/data.bin: " + mpi_error_text(MPI_ERR_IO);
    EXPECT_TRUE(test::is_error(c, ErrorCode::kIo)) << describe(c);
    EXPECT_EQ(c.message, agreed_message(failing, 1, size, local));
  }
  // An agreed error on some ranks and another error on others: named as
  // any other (the lowest failing rank's, with the count).
  if (size > 1) {
    const Caught c = catch_error([&] {
      std::exception_ptr mine;
      try {
        if (rank == 0) {
          agree_on_error(Comm(MPI_COMM_SELF), std::make_exception_ptr(Error(ErrorCode::kIo, "a")));
        } else {
          throw Error(ErrorCode::kCorrupt, "b");
        }
      } catch (...) {
        mine = std::current_exception();
      }
      agree_on_error(comm, mine);
    });
    EXPECT_EQ(c.message, agreed_message(0, size, size, "a"));
  }
}

TEST_F(Agreement, SeveralFailingRanksReportTheLowestAndTheCount) {
  struct Pattern {
    const char* what;
    bool (*fails)(int rank, int size);
  };
  const Pattern patterns[] = {
      {"every rank", [](int, int) { return true; }},
      {"every rank but 0", [](int r, int) { return r > 0; }},
      {"odd ranks", [](int r, int) { return r % 2 == 1; }},
      {"the last two ranks", [](int r, int s) { return r >= s - 2; }},
      {"rank 0 and the last",
       [](int r, int s) { return r == 0 || r == s - 1; }},
  };
  for (const auto& p : patterns) {
    SCOPED_TRACE(p.what);
    int first = -1, failed = 0;
    for (int r = 0; r < size; ++r) {
      if (!p.fails(r, size)) continue;
      if (first < 0) first = r;
      ++failed;
    }
    // Each rank fails with its own code and message: the lowest one wins.
    const ErrorCode codes[] = {ErrorCode::kIo, ErrorCode::kMismatch,
                               ErrorCode::kCorrupt};
    const Caught c = agree([&] {
      if (p.fails(rank, size)) {
        throw Error(codes[rank % 3],
                    "rank " + std::to_string(rank) + "'s own failure");
      }
    });
    if (failed == 0) {  // e.g. "odd ranks" in a 1-rank job
      EXPECT_FALSE(c.thrown) << describe(c);
    } else {
      EXPECT_TRUE(test::is_error(c, codes[first % 3])) << describe(c);
      EXPECT_EQ(c.message, agreed_message(first, failed, size,
                                          "rank " + std::to_string(first) +
                                              "'s own failure"));
    }
    EXPECT_TRUE(same_on_all_ranks(describe(c)));
  }
}

TEST_F(Agreement, EveryCodeIsCarriedAcross) {
  const ErrorCode codes[] = {
      ErrorCode::kInvalidArgument, ErrorCode::kInvalidConfig,
      ErrorCode::kNotFound,        ErrorCode::kMismatch,
      ErrorCode::kCorrupt,         ErrorCode::kIo,
      ErrorCode::kUnsupported,     ErrorCode::kRemoteFailure,
      ErrorCode::kInternal};
  int i = 0;
  for (ErrorCode code : codes) {
    const int failing = i++ % size;
    const Caught c = agree([&] {
      if (rank == failing)
        throw Error(code, std::string(error_code_name(code)));
    });
    EXPECT_TRUE(test::is_error(c, code, {std::string(error_code_name(code))}))
        << describe(c);
  }
}

TEST_F(Agreement, NonFloeExceptionsBecomeInternalErrors) {
  const int failing = size - 1;
  Caught c = agree([&] {
    if (rank == failing)
      throw std::runtime_error("vector::_M_range_check: 5 >= 3");
  });
  EXPECT_TRUE(test::is_error(c, ErrorCode::kInternal)) << describe(c);
  EXPECT_EQ(c.message,
            agreed_message(failing, 1, size, "vector::_M_range_check: 5 >= 3"));
  EXPECT_TRUE(same_on_all_ranks(describe(c)));

  c = agree([&] {
    if (rank == failing) throw 42;
  });
  EXPECT_TRUE(test::is_error(c, ErrorCode::kInternal, {"unknown exception"}))
      << describe(c);
  EXPECT_TRUE(same_on_all_ranks(describe(c)));

  // Running out of memory is no bug in Floe: it is reported as kIo.
  c = agree([&] {
    if (rank == failing) throw std::bad_alloc();
  });
  EXPECT_TRUE(test::is_error(c, ErrorCode::kIo, {"out of memory"}))
      << describe(c);
  EXPECT_TRUE(same_on_all_ranks(describe(c)));
}

TEST_F(Agreement, AgreeOnErrorWithAnExceptionPointer) {
  const int failing = size / 2;
  std::exception_ptr local;
  if (rank == failing) {
    local = std::make_exception_ptr(
        Error(ErrorCode::kNotFound, "no file \"latest\""));
  }
  const Caught c = catch_error(
      [&] { run_within(kDeadline, [&] { agree_on_error(comm, local); }); });
  EXPECT_TRUE(test::is_error(c, ErrorCode::kNotFound)) << describe(c);
  EXPECT_EQ(c.message, agreed_message(failing, 1, size, "no file \"latest\""));
}

TEST_F(Agreement, ALateFailureDoesNotStrandTheOthers) {
  // The failing rank works a while before it fails; the others arrive at the
  // agreement at once. Nobody waits forever, and everyone gets the error.
  const int failing = size - 1;
  const Caught c = agree([&] {
    if (rank == failing) {
      std::this_thread::sleep_for(200ms);
      throw Error(ErrorCode::kIo, "write failed: No space left on device");
    }
  });
  EXPECT_TRUE(test::is_error(c, ErrorCode::kIo, {"No space left on device"}))
      << describe(c);
  EXPECT_TRUE(same_on_all_ranks(describe(c)));
}

TEST_F(Agreement, TheCommunicatorWorksAfterManyAgreements) {
  // Alternating failures and successes: no stray message from one round is
  // taken for part of the next.
  for (int round = 0; round < 40; ++round) {
    const bool fail = round % 3 != 2;
    const int failing = round % size;
    const std::string local = "round " + std::to_string(round);
    const Caught c = agree([&] {
      if (fail && rank == failing) throw Error(ErrorCode::kCorrupt, local);
    });
    if (fail) {
      EXPECT_TRUE(test::is_error(c, ErrorCode::kCorrupt)) << describe(c);
      EXPECT_EQ(c.message, agreed_message(failing, 1, size, local));
    } else {
      EXPECT_FALSE(c.thrown) << describe(c);
    }
  }
  std::uint64_t sum = 0;
  run_within(kDeadline, [&] { sum = comm.allreduce_sum(1); });
  EXPECT_EQ(sum, static_cast<std::uint64_t>(size));
}

TEST_F(Agreement, LongMessagesArriveWhole) {
  const std::string local =
      "tensor \"" + std::string(100000, 'x') + "\" is bad";
  const Caught c = agree([&] {
    if (rank == 0) throw Error(ErrorCode::kMismatch, local);
  });
  EXPECT_TRUE(test::is_error(c, ErrorCode::kMismatch))
      << c.message.substr(0, 200);
  EXPECT_EQ(c.message, agreed_message(0, 1, size, local));
}

TEST_F(Agreement, OneRankCommunicatorAddsNoPrefix) {
  const Comm self(MPI_COMM_SELF);
  const Caught c = catch_error([&] {
    collectively(self,
                 [] { throw Error(ErrorCode::kIo, "cannot open \"a.h5\""); });
  });
  EXPECT_TRUE(test::is_error(c, ErrorCode::kIo)) << describe(c);
  EXPECT_EQ(c.message, "cannot open \"a.h5\"");
}

TEST_F(Agreement, SubCommunicatorsAgreeSeparately) {
  // Even and odd world ranks form two groups; only the even group's rank 0
  // fails. The odd group's agreement succeeds.
  MPI_Comm half = MPI_COMM_NULL;
  ASSERT_EQ(MPI_Comm_split(MPI_COMM_WORLD, rank % 2, rank, &half), MPI_SUCCESS);
  const Comm sub(half);
  const Caught c = catch_error([&] {
    run_within(kDeadline, [&] {
      collectively(sub, [&] {
        if (rank == 0) throw Error(ErrorCode::kIo, "even group failed");
      });
    });
  });
  if (rank % 2 == 0) {
    EXPECT_TRUE(test::is_error(c, ErrorCode::kIo)) << describe(c);
    EXPECT_EQ(c.message, agreed_message(0, 1, sub.size(), "even group failed"));
  } else {
    EXPECT_FALSE(c.thrown) << describe(c);
  }
  MPI_Comm_free(&half);
}

// ---- The communicator wrapper ---------------------------------------------

TEST_F(Agreement, CommCollectives) {
  run_within(kDeadline, [&] {
    const auto r = static_cast<std::uint64_t>(rank);
    EXPECT_EQ(comm.allreduce_min(r + 5), 5u);
    EXPECT_EQ(comm.allreduce_max(r + 5), static_cast<std::uint64_t>(size + 4));
    EXPECT_EQ(comm.allreduce_sum(r),
              static_cast<std::uint64_t>(size * (size - 1) / 2));
    const auto all = comm.allgather(r * r);
    ASSERT_EQ(all.size(), static_cast<std::size_t>(size));
    for (int i = 0; i < size; ++i)
      EXPECT_EQ(all[i], static_cast<std::uint64_t>(i * i));
    // Several words a rank, in rank order.
    const auto words = comm.allgather(std::vector<std::uint64_t>{r, r + 100, 7});
    ASSERT_EQ(words.size(), static_cast<std::size_t>(3 * size));
    for (int i = 0; i < size; ++i) {
      const auto u = static_cast<std::uint64_t>(i);
      EXPECT_EQ(std::vector<std::uint64_t>(words.begin() + 3 * i, words.begin() + 3 * i + 3),
                (std::vector<std::uint64_t>{u, u + 100, 7}))
          << "rank " << i;
    }
  });
}

TEST_F(Agreement, CommBytesOfDifferentLengths) {
  run_within(kDeadline, [&] {
    // Rank r sends r*r bytes of value 'a'+r (rank 0 sends nothing).
    const std::string mine(static_cast<std::size_t>(rank * rank),
                           static_cast<char>('a' + rank));
    const auto all = comm.allgather_bytes(mine);
    ASSERT_EQ(all.size(), static_cast<std::size_t>(size));
    for (int r = 0; r < size; ++r) {
      EXPECT_EQ(all[r], std::string(static_cast<std::size_t>(r * r),
                                    static_cast<char>('a' + r)));
    }
    for (int root = 0; root < size; ++root) {
      const std::string sent =
          rank == root ? "from root " + std::to_string(root) + '\0' + "!"
                       : "ignored";
      EXPECT_EQ(comm.broadcast_bytes(sent, root),
                "from root " + std::to_string(root) + '\0' + "!");
    }
    EXPECT_EQ(comm.broadcast_bytes(rank == 0 ? "" : "x", 0), "");
  });
}

TEST_F(Agreement, GatherBytesReachesOnlyTheRoot) {
  run_within(kDeadline, [&] {
    // Rank r sends r+1 bytes of value 'A'+r and one NUL; each rank is root
    // once. The root gets every rank's message in rank order, the others
    // nothing.
    std::string mine(static_cast<std::size_t>(rank + 1), static_cast<char>('A' + rank));
    mine += '\0';
    for (int root = 0; root < size; ++root) {
      const auto all = comm.gather_bytes(mine, root);
      if (rank != root) {
        EXPECT_TRUE(all.empty()) << "root " << root;
        continue;
      }
      ASSERT_EQ(all.size(), static_cast<std::size_t>(size));
      for (int r = 0; r < size; ++r) {
        EXPECT_EQ(all[r], std::string(static_cast<std::size_t>(r + 1),
                                      static_cast<char>('A' + r)) + '\0');
      }
    }
    // Empty messages from every rank.
    const auto none = comm.gather_bytes("", 0);
    if (rank == 0) {
      EXPECT_EQ(none, std::vector<std::string>(size));
    }
  });
}

TEST_F(Agreement, BytesAboveTheRoundLimitMoveInRounds) {
  run_within(kDeadline, [&] {
    // Rank r sends 10r+3 bytes (rank 1 none), each byte telling its rank
    // and place, so a piece landing in the wrong message or place shows.
    const auto message = [](int r) {
      std::string m;
      if (r == 1) return m;
      for (int i = 0; i < 10 * r + 3; ++i) m += static_cast<char>(r * 37 + i);
      return m;
    };
    const std::string mine = message(rank);
    // 1: one byte a rank a round; 7: rounds of 7 / size bytes a rank; 64:
    // rounds only above 2 ranks; 1000: one round.
    for (const std::uint64_t round : {1, 7, 64, 1000}) {
      const auto all = comm.allgather_bytes(mine, round);
      ASSERT_EQ(all.size(), static_cast<std::size_t>(size));
      for (int r = 0; r < size; ++r) {
        EXPECT_EQ(all[r], message(r)) << "allgather, rank " << r << ", round " << round;
      }
      for (int root = 0; root < size; ++root) {
        const auto got = comm.gather_bytes(mine, root, round);
        if (rank != root) {
          EXPECT_TRUE(got.empty());
          continue;
        }
        ASSERT_EQ(got.size(), static_cast<std::size_t>(size));
        for (int r = 0; r < size; ++r) {
          EXPECT_EQ(got[r], message(r)) << "gather to " << root << ", rank " << r
                                        << ", round " << round;
        }
      }
    }
  });
}

TEST_F(Agreement, CheckMpiNamesTheCall) {
  EXPECT_TRUE(
      test::throws_error([] { check_mpi(MPI_ERR_COMM, "MPI_File_open"); },
                         ErrorCode::kIo, {"MPI_File_open"}));
  const Caught ok = catch_error([] { check_mpi(MPI_SUCCESS, "MPI_Barrier"); });
  EXPECT_FALSE(ok.thrown);
}

}  // namespace
}  // namespace floe
