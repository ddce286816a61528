#include "examples/zero1_comm.hpp"

#include <climits>
#include <string>

#include "floe/error.hpp"

namespace floe::example {

Zero1Comm::Zero1Comm(const floe::torch::FlatPartition& p, MPI_Comm comm)
    : comm_(comm), world_size_(p.world_size()) {
  if (p.total() > static_cast<std::uint64_t>(INT_MAX)) {
    throw Error(ErrorCode::kInvalidArgument,
                "the example trainer's MPI counts are ints: " + std::to_string(p.total()) +
                    " parameters is more than it can address; use fewer");
  }
  for (int r = 0; r < world_size_; ++r) {
    counts_.push_back(static_cast<int>(p.end(r) - p.begin(r)));
    displs_.push_back(static_cast<int>(p.begin(r)));
    recv_counts_.push_back(static_cast<int>(p.size()));
    recv_displs_.push_back(static_cast<int>(p.size()) * r);
  }
  recv_.resize(p.size() * static_cast<std::size_t>(world_size_));
}

void Zero1Comm::reduce_scatter_ordered(const float* flat, float* slice) {
  MPI_Alltoallv(flat, counts_.data(), displs_.data(), MPI_FLOAT, recv_.data(),
                recv_counts_.data(), recv_displs_.data(), MPI_FLOAT, comm_);
  const std::size_t n = recv_.size() / static_cast<std::size_t>(world_size_);
  for (std::size_t i = 0; i < n; ++i) slice[i] = recv_[i];
  for (int r = 1; r < world_size_; ++r) {
    const float* from = recv_.data() + n * static_cast<std::size_t>(r);
    for (std::size_t i = 0; i < n; ++i) slice[i] += from[i];
  }
}

void Zero1Comm::allgather(float* flat) {
  MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, flat, counts_.data(), displs_.data(),
                 MPI_FLOAT, comm_);
}

}  // namespace floe::example
