// What a rank sends to agree on a layout (core/layout_wire.hpp): a rank
// sends only the regions that hold elements, and a rank whose tensor list is
// not rank 0's also its specs.
#include <gtest/gtest.h>

#include "core/layout_wire.hpp"

namespace floe {
namespace {

// 100 tensors of 4 elements; `holds(t)`: whether this rank holds all of t.
template <typename Holds>
State flat_state(Holds holds) {
  State state;
  for (std::uint64_t t = 0; t < 100; ++t) {
    state.add_model("w" + std::to_string(t), DType::kF32, {4},
                    Region::flat(FlatRange{0, holds(t) ? 4u : 0u}));
  }
  return state;
}

TEST(LayoutWire, ARankOfRankZerosListSendsOnlyItsHeldRegions) {
  const std::string rank0 = layout_wire::encode(flat_state([](auto t) { return t == 0; }));
  const std::string specs(layout_wire::specs_of(rank0));
  const std::string part =
      layout_wire::part(layout_wire::encode(flat_state([](auto t) { return t % 10 == 3; })), specs);
  ASSERT_FALSE(part.empty());
  EXPECT_EQ(part[0], static_cast<char>(layout_wire::kRankZerosList));
  // The kind and the count, then 10 regions, each its tensor's index and a
  // flat range (kind, replicated, begin, end): 8 + 18 bytes.
  EXPECT_EQ(part.size(), 1u + 8u + 10u * (8u + 18u));
  // Rank 0 itself sends its one region.
  EXPECT_EQ(layout_wire::part(rank0, specs).size(), 1u + 8u + 1u * (8u + 18u));
}

TEST(LayoutWire, ARankOfAnotherListSendsItsSpecsAndItsHeldRegions) {
  const std::string specs(
      layout_wire::specs_of(layout_wire::encode(flat_state([](auto t) { return t == 0; }))));
  // A pipeline stage's list: rank 0's tensors, of which it holds 3 (a
  // ZeRO-like split), and one of its own, held whole.
  State other = flat_state([](auto t) { return t % 40 == 1; });
  other.add_model("extra", DType::kU8, {2}, Region::whole({2}));
  const std::string mine = layout_wire::encode(other);
  const std::string part = layout_wire::part(mine, specs);
  ASSERT_FALSE(part.empty());
  EXPECT_EQ(part[0], static_cast<char>(layout_wire::kOwnList));
  const std::string own_specs(layout_wire::specs_of(mine));
  // The kind, the specs with their size, the count, then 4 regions: three
  // flat ranges (8 + 18 bytes each) and the whole box of "extra" (kind,
  // replicated, dimension count, offset and extent: 8 + 26 bytes).
  EXPECT_EQ(part.substr(1, 8 + own_specs.size()).substr(8), own_specs);
  EXPECT_EQ(part.size(), 1u + 8u + own_specs.size() + 8u + 3u * (8u + 18u) + (8u + 26u));
}

}  // namespace
}  // namespace floe
