// ShardFinder (src/commit/load_match.hpp), which match_state asks for the
// state's shard of each manifest tensor in manifest order: whatever order
// the state lists its tensors in, each answer is State::find's; a state in
// the manifest's order costs no State::find, and one in stretches of that
// order (blocks swapped, some tensors left out) one per jump, not one per
// tensor after the first jump.
#include "commit/load_match.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace floe {
namespace {

constexpr std::size_t kTensors = 1000;

std::vector<std::size_t> iota(std::size_t begin, std::size_t end) {
  std::vector<std::size_t> out;
  for (std::size_t t = begin; t < end; ++t) out.push_back(t);
  return out;
}

// The manifest's tensors: "w.<t>" (model), each with an optimizer tensor
// "w.<t>"/"exp_avg" after it; 2 * kTensors specs.
std::vector<TensorSpec> manifest_specs() {
  std::vector<TensorSpec> specs;
  for (std::size_t t = 0; t < kTensors; ++t) {
    specs.push_back(TensorSpec{TensorGroup::kModel, "w." + std::to_string(t), "", DType::kF32, {4}});
    specs.push_back(
        TensorSpec{TensorGroup::kOptimizer, "w." + std::to_string(t), "exp_avg", DType::kF32, {4}});
  }
  return specs;
}

// A state holding the manifest specs of `order`, in that order.
void fill_state(State& state, const std::vector<TensorSpec>& specs,
                const std::vector<std::size_t>& order) {
  for (std::size_t i : order) {
    const TensorSpec& spec = specs[i];
    if (spec.group == TensorGroup::kModel) {
      state.add_model(spec.name, spec.dtype, spec.shape, Region::whole(spec.shape));
    } else {
      state.add_optimizer(spec.name, spec.opt_key, spec.dtype, spec.shape,
                          Region::whole(spec.shape));
    }
  }
}

// Asks the finder for every manifest spec in order; each answer must be
// State::find's. Returns how many went to State::find.
std::size_t finds_for(const std::vector<std::size_t>& order) {
  const std::vector<TensorSpec> specs = manifest_specs();
  State state;
  fill_state(state, specs, order);
  ShardFinder finder(state);
  std::size_t found = 0;
  for (const TensorSpec& spec : specs) {
    TensorShard* shard = finder.find(spec);
    EXPECT_EQ(shard, state.find(spec.key())) << spec.key();
    if (shard) {
      ++found;
      EXPECT_EQ(shard->spec().key(), spec.key());
    }
  }
  EXPECT_EQ(found, order.size());
  return finder.finds();
}

TEST(ShardFinder, AStateInTheManifestsOrderNeedsNoLookup) {
  EXPECT_EQ(finds_for(iota(0, 2 * kTensors)), 0u);
}

TEST(ShardFinder, BlocksInAnotherOrderCostOneLookupPerJump) {
  // The second half first: the manifest's first tensor is a jump (into the
  // state's second half), and so is the manifest's second half's first.
  std::vector<std::size_t> order = iota(kTensors, 2 * kTensors);
  const std::vector<std::size_t> first = iota(0, kTensors);
  order.insert(order.end(), first.begin(), first.end());
  EXPECT_EQ(finds_for(order), 2u);
  // Four blocks, as 2 0 3 1: a jump at the start of each.
  const std::size_t q = kTensors / 2;
  order.clear();
  for (std::size_t block : {2, 0, 3, 1}) {
    const std::vector<std::size_t> part = iota(block * q, (block + 1) * q);
    order.insert(order.end(), part.begin(), part.end());
  }
  EXPECT_EQ(finds_for(order), 4u);
}

TEST(ShardFinder, BackToFrontIsALookupPerTensor) {
  std::vector<std::size_t> order = iota(0, 2 * kTensors);
  std::reverse(order.begin(), order.end());
  EXPECT_EQ(finds_for(order), 2 * kTensors);
}

TEST(ShardFinder, TensorsTheStateLacksCostOneLookupEach) {
  // Only the model tensors (every other manifest tensor): each optimizer
  // tensor of the manifest is a lookup that finds nothing, and the next
  // model tensor is still the one tried first.
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < 2 * kTensors; i += 2) order.push_back(i);
  EXPECT_EQ(finds_for(order), kTensors);
  // The state's tensors in stretches with some left out: one lookup per
  // tensor left out (the first one after a gap is the one tried).
  order.clear();
  for (std::size_t i = 0; i < 2 * kTensors; ++i) {
    if (i % 100 != 7) order.push_back(i);
  }
  EXPECT_EQ(finds_for(order), 2 * kTensors / 100);
  // An empty state: a lookup per tensor, none found.
  EXPECT_EQ(finds_for({}), 2 * kTensors);
}


// assign_checks: who checks each piece of a load or verify. A piece some
// rank loads exactly is checked by that rank as it arrives (-1 - rank);
// every other piece goes to ranks 0, 1, ... in turn, counted over the
// whole manifest, so the extra reads spread evenly.
Manifest manifest_with_pieces(const std::vector<std::size_t>& counts) {
  Manifest m;
  for (std::size_t t = 0; t < counts.size(); ++t) {
    TensorRecord record;
    record.spec = TensorSpec{TensorGroup::kModel, "t" + std::to_string(t), "", DType::kF32,
                             {counts[t] == 0 ? 1 : counts[t]}};
    for (std::size_t k = 0; k < counts[t]; ++k) {
      PieceRecord piece;
      piece.rank = static_cast<int>(k);
      piece.region = Region::flat(FlatRange{k, k + 1});
      piece.nbytes = 4;
      record.pieces.push_back(piece);
    }
    m.tensors.push_back(record);
  }
  return m;
}

TEST(AssignChecks, InlinePiecesStayWithTheirRankTheRestGoRoundTheRanks) {
  // Tensors of 3, 0, 1 and 4 pieces (8 in all); pieces 1, 3 and 6 are
  // loaded exactly by ranks 2, 0 and 1.
  const Manifest m = manifest_with_pieces({3, 0, 1, 4});
  const InlineRanks inline_ranks = {kNoRank, 2, kNoRank, 0, kNoRank, kNoRank, 1, kNoRank};
  const Assignment who = assign_checks(m, &inline_ranks, 3);
  ASSERT_EQ(who.size(), 4u);
  const std::vector<std::vector<int>> expected = {
      {0, -3, 1},         // inline rank 2 is -3; the others take turns 0, 1
      {},                 // no pieces
      {-1},               // rank 0 loads it
      {2, 0, -2, 1},      // the turn goes on across tensors: 2, 0, (rank 1), 1
  };
  for (std::size_t t = 0; t < expected.size(); ++t) {
    const Assignment::Pieces pieces = who[t];
    EXPECT_EQ(std::vector<int>(pieces.begin(), pieces.end()), expected[t]) << "tensor " << t;
    ASSERT_EQ(pieces.size(), expected[t].size());
    for (std::size_t k = 0; k < pieces.size(); ++k) EXPECT_EQ(pieces[k], expected[t][k]);
  }
}

TEST(AssignChecks, VerifyWithoutALoadSpreadsEveryPiece) {
  // No inline ranks (floe verify): pieces go round 2 ranks in manifest
  // order; an empty manifest assigns nothing.
  const Assignment who = assign_checks(manifest_with_pieces({2, 3}), nullptr, 2);
  ASSERT_EQ(who.size(), 2u);
  EXPECT_EQ(std::vector<int>(who[0].begin(), who[0].end()), (std::vector<int>{0, 1}));
  EXPECT_EQ(std::vector<int>(who[1].begin(), who[1].end()), (std::vector<int>{0, 1, 0}));
  EXPECT_EQ(assign_checks(Manifest{}, nullptr, 4).size(), 0u);
  EXPECT_EQ(Assignment().size(), 0u);
}

}  // namespace
}  // namespace floe
