// The global layout of a save: every rank's regions of every tensor, agreed
// on by all ranks, with the one rank that writes each piece of data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <mpi.h>

#include "floe/region.hpp"
#include "floe/state.hpp"

namespace floe {

// One rank's region of a tensor, of at least one element.
struct Piece {
  int rank = 0;
  Region region;
  // True for the rank that writes these bytes: always for a plain region;
  // for a replicated one, the lowest rank holding an identical region.
  bool writer = true;
};

struct TensorLayout {
  TensorSpec spec;
  // Ordered by rank. A rank whose region holds no elements (a dim-0 shard
  // past the last row, a ZeRO partition's empty slice) has no piece, and a
  // tensor of no elements none at all.
  std::vector<Piece> pieces;

  // The written pieces, in rank order.
  std::vector<const Piece*> writers() const;
};

// All tensors of a save in the order rank 0 added them, with their pieces.
struct GlobalLayout {
  int world_size = 0;
  std::vector<TensorLayout> tensors;

  // Index into `tensors` of `key`, or -1.
  long find(const std::string& key) const;
};

// Collective over `comm`. Exchanges every rank's tensor list and builds the
// same layout on every rank. Throws the same Error(kMismatch) on every rank
// when ranks disagree on a tensor's dtype or shape, when written pieces
// overlap, or when the written pieces leave part of a tensor uncovered; the
// message names the tensor. A tensor some rank lacks is fine as long as the
// ranks that have it cover it.
GlobalLayout exchange_layout(const State& state, MPI_Comm comm);

// Collective over `comm`. Every rank's tensor list, without the checks of
// exchange_layout and with every piece marked as a writer: what load() uses
// to learn which rank asks for which region.
GlobalLayout gather_layout(const State& state, MPI_Comm comm);

}  // namespace floe
