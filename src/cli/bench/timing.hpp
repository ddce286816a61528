// What every `floe bench` mode measures with: the slowest rank's time of a
// step between barriers, and the median of repetitions.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <vector>

namespace floe::bench {

// Collective over `comm`: runs `fn` between a barrier and a max-reduction and
// returns the slowest rank's seconds.
template <typename Fn>
double timed(MPI_Comm comm, Fn&& fn) {
  MPI_Barrier(comm);
  const double start = MPI_Wtime();
  fn();
  double mine = MPI_Wtime() - start, slowest = 0;
  MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm);
  return slowest;
}

// The median of `v` (the mean of the middle two for an even count); 0 when
// empty.
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace floe::bench
