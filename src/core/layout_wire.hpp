// What ranks send one another to agree on a layout (layout.cpp), apart so
// that tests can look at the bytes a rank sends.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "floe/state.hpp"

namespace floe::layout_wire {

// A rank's message: the size of its specs, its specs (count, then each
// tensor's group, name, optimizer key, dtype and shape), then its regions
// in the same order. Specs apart from regions let a rank whose tensor list
// is rank 0's, byte for byte (the usual case), be told by one comparison.
std::string encode(const State& state);

// The specs of a message of encode().
std::string_view specs_of(std::string_view message);

// The first byte of what a rank sends in the gather (part()).
constexpr std::uint8_t kOwnList = 0;
constexpr std::uint8_t kRankZerosList = 1;

// What a rank whose message is `mine` sends in the gather, once rank 0 has
// broadcast its specs `first_specs`: the regions of its tensors that hold
// elements, each after its tensor's index in its list (every rank receives
// every rank's part, and in a ZeRO-like partition most regions are empty:
// at 1,024 ranks and 1,000 tensors whole lists and every region came to
// ~65 MB a rank). A rank whose tensor list is rank 0's, byte for byte (the
// usual case), sends kRankZerosList, the count of those regions and the
// regions. Another (a pipeline stage's, say) sends kOwnList, its specs
// (their size first), then the count and the regions as the first does.
std::string part(std::string_view mine, std::string_view first_specs);

}  // namespace floe::layout_wire
