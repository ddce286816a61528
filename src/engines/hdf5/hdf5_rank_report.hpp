// What each rank tells the others before a save writes anything: the
// checksums of the pieces it writes and of its blobs, and (rank 0) the
// scalars and metadata every rank then writes as attributes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/comm.hpp"
#include "floe/engine.hpp"

namespace floe::h5 {

struct RankReport {
  struct Blob {
    std::string name;
    std::uint64_t nbytes = 0;
    std::uint64_t xxh3 = 0;
  };
  // (tensor index, XXH3-64 of the piece) of each piece the rank writes, in
  // ascending tensor index: a vector, where a map's node per tensor cost
  // ~1,000 instructions a tensor at 20,000 tensors (built, sent, rebuilt
  // and looked up on every save).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> piece_xxh3;
  std::vector<Blob> blobs;
  std::map<std::string, Scalar> scalars;  // rank 0's only
  std::string metadata;                   // rank 0's only (JSON)
};

// The shard of `spec` in `state`; Error(kInternal) when the layout lists a
// piece the state lacks.
const TensorShard& shard_of(const State& state, const TensorSpec& spec);
// The same, trying the state's tensor at `hint` first: a rank usually adds
// its tensors in the layout's order, and State::find's map of keys cost
// ~1,100 instructions a lookup at 20,000 tensors ("model/layer." prefixes).
const TensorShard& shard_of(const State& state, const TensorSpec& spec,
                            std::size_t hint);

// Collective over ctx.comm: every rank's report, indexed by rank. Computes
// XXH3-64 of this rank's written pieces (its shard buffers) and blobs; costs
// one allgather. Throws the same Error on every rank.
std::vector<RankReport> exchange_reports(const SaveContext& ctx);

}  // namespace floe::h5
