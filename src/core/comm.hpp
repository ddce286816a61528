// A thin, checked view of an MPI communicator, and collective error
// agreement: a failure on any rank becomes the same floe::Error everywhere.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <mpi.h>

#include "floe/error.hpp"

namespace floe {

// MPI's text for the error code `rc`.
std::string mpi_error_text(int rc);

// Throws Error(kIo) naming `what` and MPI's message when `rc` is not
// MPI_SUCCESS.
void check_mpi(int rc, const char* what);

// Non-owning. Every method except rank()/size() is collective.
class Comm {
 public:
  explicit Comm(MPI_Comm comm);

  MPI_Comm get() const { return comm_; }
  int rank() const { return rank_; }
  int size() const { return size_; }

  void barrier() const;
  std::uint64_t allreduce_max(std::uint64_t value) const;
  std::uint64_t allreduce_min(std::uint64_t value) const;
  std::uint64_t allreduce_sum(std::uint64_t value) const;
  // Replace `values` (of one length on every rank) with the element-wise
  // minimum (maximum) over the ranks: one allreduce for many flags, rank
  // numbers or counts.
  void allreduce_min(std::vector<std::uint32_t>& values) const;
  void allreduce_max(std::vector<std::uint32_t>& values) const;
  // Every rank's `value`, indexed by rank.
  std::vector<std::uint64_t> allgather(std::uint64_t value) const;
  // Every rank's `values` (of one length on every rank), in rank order:
  // one MPI_Allgather, where allgather_bytes takes two.
  std::vector<std::uint64_t> allgather(const std::vector<std::uint64_t>& values) const;
  // At most this many bytes move in one MPI gather call: MPI counts and
  // displacements are ints.
  static constexpr std::uint64_t kMaxRoundBytes = (1ull << 31) - 1;
  // Every rank's bytes, indexed by rank (lengths may differ, of any size).
  // The lengths are exchanged first, so every rank knows the total: when
  // it exceeds `round_bytes`, the bytes move in rounds of at most
  // `round_bytes` (each rank sending up to round_bytes / size() of its
  // message a round) and no rank throws or waits alone. `round_bytes` must
  // be the same on every rank; tests pass small ones to run the rounds on
  // small messages.
  std::vector<std::string> allgather_bytes(
      const std::string& bytes,
      std::uint64_t round_bytes = kMaxRoundBytes) const;
  // On `root`, every rank's bytes, indexed by rank; elsewhere, nothing. In
  // rounds as allgather_bytes.
  std::vector<std::string> gather_bytes(
      const std::string& bytes, int root,
      std::uint64_t round_bytes = kMaxRoundBytes) const;
  // The `root` rank's bytes on every rank (of 64 MiB or more: allocated
  // under agreement, as the gathers' results).
  std::string broadcast_bytes(const std::string& bytes, int root) const;
  // The `root` rank's `size` bytes at `data` into every rank's `data`
  // (any size: sent in pieces below 2^31 bytes, as MPI counts are ints).
  void broadcast(char* data, std::uint64_t size, int root) const;

 private:
  // Runs `allocate` (making room for `bytes` of a result): from 64 MiB on
  // under agreement, so a rank without the memory does not leave the
  // others in the collective that follows.
  void allocate_agreed(std::uint64_t bytes, const std::function<void()>& allocate) const;
  // allgather_bytes (root < 0) and gather_bytes.
  std::vector<std::string> gather_any(const std::string& bytes, int root,
                                      std::uint64_t round_bytes) const;

  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
};

// Collective. Call on every rank with the error this rank met (null when it
// succeeded). Returns on every rank when none failed; otherwise every rank
// throws the same Error: the lowest failing rank's code and message, with
// "rank R: " in front (and a count when several ranks failed) in jobs of
// more than one rank. An error that every rank holds from an agreement
// inside (a collective step that agreed on its own failure) is thrown as
// it is, naming its rank once. Costs one allreduce when nothing failed.
void agree_on_error(const Comm& comm, std::exception_ptr local_error);

// Throws `error` again as a floe::Error with `context` in front of its
// message, described as agree_on_error describes errors (a floe::Error
// keeps its code; bad_alloc is kIo "out of memory"; another exception is
// kInternal). One agreed on by every rank stays agreed: an enclosing
// agreement passes it on without naming a rank again.
[[noreturn]] void rethrow_in_context(std::exception_ptr error, const std::string& context);

// Collective. Runs `fn` on every rank and agrees on its failure as
// agree_on_error does; returns fn's result.
template <typename Fn>
auto collectively(const Comm& comm, Fn&& fn) {
  using Result = std::invoke_result_t<Fn>;
  std::exception_ptr error;
  if constexpr (std::is_void_v<Result>) {
    try {
      std::forward<Fn>(fn)();
    } catch (...) {
      error = std::current_exception();
    }
    agree_on_error(comm, error);
  } else {
    Result result{};
    try {
      result = std::forward<Fn>(fn)();
    } catch (...) {
      error = std::current_exception();
    }
    agree_on_error(comm, error);
    return result;
  }
}

// Collective. Rank 0 runs `fn` (a step on the file system that only one
// rank must take), and every rank agrees on its failure as collectively
// does, so the others never wait in a later collective for a rank 0 that
// left.
template <typename Fn>
void on_rank0(const Comm& comm, Fn&& fn) {
  collectively(comm, [&] {
    if (comm.rank() == 0) std::forward<Fn>(fn)();
  });
}

// Collective. The result `rc` of an MPI call that can fail on some ranks
// only (MPI_File_sync: each rank's own fsync; MPI_File_close): when it is
// not MPI_SUCCESS on any rank, every rank throws Error(kIo) "`what`: MPI's
// message" of the lowest failing rank, as agree_on_error does, instead of
// that rank leaving while the others go on to their next collective.
void agree_mpi(const Comm& comm, int rc, const std::string& what);

}  // namespace floe
