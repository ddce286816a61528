// What every `floe bench` mode measures with: the slowest rank's time of a
// step between barriers (and all ranks' CPU time in it), the median of
// repetitions, and an order-balanced summary of paired ratios.
#pragma once

#include <mpi.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "core/comm.hpp"
#include "floe/error.hpp"

namespace floe::bench {

// A timed step: the slowest rank's wall-clock seconds, and the CPU seconds
// (user and system, every thread) all ranks' processes spent in it.
struct Timing {
  double seconds = 0;
  double cpu_seconds = 0;
};

// This process's CPU seconds so far, user and system, all threads.
inline double process_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto s = [](const timeval& t) { return t.tv_sec + t.tv_usec * 1e-6; };
  return s(usage.ru_utime) + s(usage.ru_stime);
}

// Collective over `comm`: runs `fn` between a barrier and a reduction and
// returns the slowest rank's seconds and all ranks' CPU seconds. When `fn`
// throws on any rank, every rank throws (agree_on_error: the first failing
// rank's message, naming it), untimed: an operation that fails on some
// ranks only, such as a raw read on a rank that holds no bytes, must not
// leave the others waiting in the reduction.
template <typename Fn>
Timing timed_with_cpu(MPI_Comm comm, Fn&& fn) {
  MPI_Barrier(comm);
  const double start = MPI_Wtime(), cpu_start = process_cpu_seconds();
  std::exception_ptr error;
  try {
    fn();
  } catch (...) {
    error = std::current_exception();
  }
  const double mine[2] = {MPI_Wtime() - start, process_cpu_seconds() - cpu_start};
  agree_on_error(Comm(comm), error);
  Timing all;
  MPI_Allreduce(&mine[0], &all.seconds, 1, MPI_DOUBLE, MPI_MAX, comm);
  MPI_Allreduce(&mine[1], &all.cpu_seconds, 1, MPI_DOUBLE, MPI_SUM, comm);
  return all;
}

// timed_with_cpu's wall-clock seconds alone.
template <typename Fn>
double timed(MPI_Comm comm, Fn&& fn) {
  return timed_with_cpu(comm, std::forward<Fn>(fn)).seconds;
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
