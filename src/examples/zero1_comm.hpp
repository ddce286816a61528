// The two collectives of ZeRO-1 data parallelism, over float buffers laid
// out in the flat order of a floe::torch::FlatPartition.
#pragma once

#include <vector>

#include <mpi.h>

#include "floe/torch.hpp"

namespace floe::example {

class Zero1Comm {
 public:
  // Throws floe::Error(kInvalidArgument) when a rank's slice exceeds what an
  // MPI count (int) can address.
  Zero1Comm(const floe::torch::FlatPartition& partition, MPI_Comm comm);

  // Collective. `slice` (partition.size() floats) = the sum over ranks of
  // their `flat` (partition.total() floats) restricted to this rank's slice,
  // added in rank order 0, 1, ..., so the result does not depend on MPI's
  // reduction algorithm and a rerun at the same rank count is bit-identical.
  void reduce_scatter_ordered(const float* flat, float* slice);

  // Collective. Fills every rank's `flat` with each rank's slice of it.
  void allgather(float* flat);

 private:
  MPI_Comm comm_;
  int world_size_;
  std::vector<int> counts_, displs_;
  std::vector<int> recv_counts_, recv_displs_;
  std::vector<float> recv_;
};

}  // namespace floe::example
