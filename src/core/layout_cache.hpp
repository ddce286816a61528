// The last save's layout, kept by an engine for its next save: the ranks of
// a training run save the same tensors, with the same regions, at every
// step, and exchanging and checking them again cost a 4-rank save of
// 20,000 tensors more than its data (BENCHMARKS.md, "Saves of many
// tensors").
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <mpi.h>

#include "floe/layout.hpp"

namespace floe {

class LayoutCache {
 public:
  // A layout of more pieces (all ranks' together) is not kept: every rank
  // holds every piece, ~150 bytes each, and between saves that memory
  // belongs to the trainer. 20,000 tensors at 4 ranks are 80,000 pieces.
  static constexpr std::uint64_t kMaxKeptPieces = 1u << 20;

  explicit LayoutCache(std::uint64_t max_kept_pieces = kMaxKeptPieces)
      : max_kept_pieces_(max_kept_pieces) {}

  // Collective over `comm`. What exchange_layout(state, comm) returns (and
  // throws): the layout kept from the last call when every rank's tensors
  // and regions, and the world size, are those of the last call (one
  // allreduce tells), else a new exchange, kept for the next call unless
  // it has more pieces than the cache keeps.
  std::shared_ptr<const GlobalLayout> exchange(const State& state, MPI_Comm comm);

  // Whether the last exchange() reused the kept layout.
  bool reused() const { return reused_; }

 private:
  std::uint64_t max_kept_pieces_;
  std::string message_;  // this rank's tensor list at the kept exchange
  std::shared_ptr<const GlobalLayout> layout_;
  bool reused_ = false;
};

}  // namespace floe
