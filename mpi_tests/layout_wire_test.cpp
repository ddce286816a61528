// What a rank sends to agree on a layout (core/layout_wire.hpp): only the
// regions that hold elements, and its specs only where no rank before it
// sent (or broadcast) the same list.
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

// A flat range is 18 bytes (kind, replicated, begin, end), 8 more with its
// tensor's index; the kind and the count of regions take 9.
constexpr std::size_t kFlatRegion = 8 + 18;

TEST(LayoutWire, ARankOfAnotherRanksListSendsOnlyItsHeldRegions) {
  const std::string mine =
      layout_wire::encode(flat_state([](auto t) { return t % 10 == 3; }));
  for (const int of : {0, 5}) {
    const std::string part = layout_wire::part(mine, of);
    ASSERT_FALSE(part.empty());
    EXPECT_EQ(part[0], static_cast<char>(layout_wire::kListOf));
    // The kind, the rank, the count, then 10 regions.
    EXPECT_EQ(part.size(), 1u + 8u + 8u + 10u * kFlatRegion) << of;
  }
}

TEST(LayoutWire, ARankOfItsOwnListSendsItsSpecsAndItsHeldRegions) {
  // A pipeline stage's list: 100 tensors, of which it holds 3 (a ZeRO-like
  // split), and one of its own, held whole.
  State other = flat_state([](auto t) { return t % 40 == 1; });
  other.add_model("extra", DType::kU8, {2}, Region::whole({2}));
  const std::string mine = layout_wire::encode(other);
  const std::string part = layout_wire::part(mine, -1);
  ASSERT_FALSE(part.empty());
  EXPECT_EQ(part[0], static_cast<char>(layout_wire::kOwnList));
  const std::string specs(layout_wire::specs_of(mine));
  EXPECT_EQ(part.substr(1 + 8, specs.size()), specs);
  // The kind, the specs with their size, the count, then 4 regions: three
  // flat ranges and the whole box of "extra" (kind, replicated, dimension
  // count, offset and extent: 8 + 26 bytes).
  EXPECT_EQ(part.size(), 1u + 8u + specs.size() + 8u + 3u * kFlatRegion + (8u + 26u));
}

TEST(LayoutWire, ListKeysTellListsApart) {
  const auto key_of = [](const State& state) {
    return layout_wire::list_key(layout_wire::specs_of(layout_wire::encode(state)));
  };
  const layout_wire::ListKey a = key_of(flat_state([](auto t) { return t == 0; }));
  // Regions are not in the key; specs are.
  EXPECT_EQ(key_of(flat_state([](auto t) { return t == 7; })), a);
  State longer = flat_state([](auto) { return false; });
  longer.add_model("extra", DType::kU8, {2}, Region::flat(FlatRange{0, 0}));
  EXPECT_NE(key_of(longer), a);
}

}  // namespace
}  // namespace floe
