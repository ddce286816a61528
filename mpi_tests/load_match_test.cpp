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

}  // namespace
}  // namespace floe
