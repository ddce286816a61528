// What every `floe bench` mode measures with: the slowest rank's time of a
// step between barriers, the median of repetitions, and an order-balanced
// summary of paired ratios.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

#include "core/comm.hpp"
#include "floe/error.hpp"

namespace floe::bench {

// Collective over `comm`: runs `fn` between a barrier and a max-reduction and
// returns the slowest rank's seconds. When `fn` throws on any rank, every
// rank throws (agree_on_error: the first failing rank's message, naming
// it), untimed: an operation that fails on some ranks only, such as a raw
// read on a rank that holds no bytes, must not leave the others waiting in
// the reduction.
template <typename Fn>
double timed(MPI_Comm comm, Fn&& fn) {
  MPI_Barrier(comm);
  const double start = MPI_Wtime();
  std::exception_ptr error;
  try {
    fn();
  } catch (...) {
    error = std::current_exception();
  }
  double mine = MPI_Wtime() - start, slowest = 0;
  agree_on_error(Comm(comm), error);
  MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm);
  return slowest;
}

// Collective: rank 0 writes `text` (a --json report) to `path`; every rank
// throws Error(kIo) naming the file when it cannot be written (before, an
// unwritable path gave exit 0 and no file).
inline void write_report(MPI_Comm comm, const std::string& path, const std::string& text) {
  on_rank0(Comm(comm), [&] {
    std::ofstream out(path);
    out << text;
    out.close();
    if (!out) throw Error(ErrorCode::kIo, "--json " + path + ": cannot write the file");
  });
}

// The median of `v` (the mean of the middle two for an even count); 0 when
// empty.
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Per-repetition ratios `pairs` of two operations timed back to back in an
// order that alternates (B then A in even repetitions, A then B in odd
// ones), summarised so that the order cancels: the geometric mean of each
// even/odd pair, then the median of those. Where the second of two reads of
// one file is faster whoever makes it (on a VM, the host's cache), the
// even repetitions favour one side by about the factor the odd ones favour
// the other, and the median of the raw pairs lands on either mode. A last
// unpaired repetition is left out, unless it is the only one. 0 when empty.
inline double order_balanced(const std::vector<double>& pairs) {
  if (pairs.size() < 2) return pairs.empty() ? 0 : pairs.front();
  std::vector<double> balanced;
  for (std::size_t i = 0; i + 1 < pairs.size(); i += 2) {
    balanced.push_back(std::sqrt(pairs[i] * pairs[i + 1]));
  }
  return median(balanced);
}

}  // namespace floe::bench
