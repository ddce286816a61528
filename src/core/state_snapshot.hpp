// A State's copy in a staging pool: the same tensors (specs and regions, in
// the same order) whose memory is the pool's, with copies of the scalars,
// blobs and metadata. Asynchronous saves write from it while the trainer
// moves on; device tensors pass through it on their way to and from disk.
#pragma once

#include <cstdint>
#include <memory>

#include "core/staging_pool.hpp"
#include "floe/state.hpp"

namespace floe {

class DeviceCopier;

// Not thread-safe. The State it returns stays valid until the next call.
class StateSnapshot {
 public:
  // Copies `state` into `pool` (reserving room first: Error(kIo) when the
  // pool cannot grow) and returns the copy. Tensors on a device go through
  // `copier` (page-locked pool, its stream, waited for before returning);
  // with a null `copier` every tensor must be host memory.
  State& capture(const State& state, StagingPool& pool, DeviceCopier* copier,
                 std::uint64_t limit);

  // The same tensors as `state` in `pool`, and copies of its scalars, blobs
  // and metadata, without copying tensor data: a load fills it, then
  // copy_back() hands the result to `state`.
  State& mirror(const State& state, StagingPool& pool, DeviceCopier* copier,
                std::uint64_t limit);

  // Copies the mirror's tensors into `state`'s memory (device tensors
  // through `copier`, waited for), and its scalars, blobs and metadata.
  void copy_back(State& state, DeviceCopier* copier) const;

 private:
  State& prepare(const State& state, StagingPool& pool, DeviceCopier* copier,
                 std::uint64_t limit);
  bool matches(const State& state, const StagingPool& pool) const;

  std::unique_ptr<State> copy_;
  std::uint64_t pool_generation_ = 0;
};

// Bytes a snapshot of `state` takes in a pool (each shard's copy aligned).
std::uint64_t staging_bytes(const State& state);

}  // namespace floe
