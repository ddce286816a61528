// What ranks send one another to agree on a layout (layout.cpp), apart so
// that tests can look at the bytes a rank sends.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include <mpi.h>

#include "core/wire.hpp"
#include "floe/state.hpp"

namespace floe::layout_wire {

// A rank's message: the size of its specs, its specs (count, then each
// tensor's group, name, optimizer key, dtype and shape), then its regions
// in the same order. Specs apart from regions let a rank whose tensor list
// is rank 0's, byte for byte (the usual case), be told by one comparison.
std::string encode(const State& state);

// The specs of a message of encode().
std::string_view specs_of(std::string_view message);

// The first byte of what a rank sends in the gather (part()): its own
// specs follow (their size first), or the rank whose list it repeats byte
// for byte (u64; 0 for rank 0's, which every rank has from the broadcast).
constexpr std::uint8_t kOwnList = 0;
constexpr std::uint8_t kListOf = 1;

// What tells ranks of one tensor list apart from others: the XXH3-128 of
// `specs` (low, high). Ranks whose list is not rank 0's (pipeline stages)
// gather these, and of the ranks with one list only the first sends it.
using ListKey = std::array<std::uint64_t, 2>;
ListKey list_key(std::string_view specs);

// What a rank whose message is `mine` sends in the gather: its list
// (kOwnList and its specs) when `list_of` is negative, else kListOf and
// `list_of`, the rank whose list it repeats (0: rank 0's, broadcast); then
// the count of its regions that hold elements, and each of them after its
// tensor's index in the list. Every rank receives every rank's part, and
// in a ZeRO-like partition most regions are empty and most ranks repeat a
// list: at 1,024 ranks and 1,000 tensors whole lists and every region came
// to ~65 MB a rank.
std::string part(std::string_view mine, int list_of);

// What comes before a part's regions, as part() writes it.
struct PartHead {
  bool own = false;        // kOwnList: `specs` are its list
  std::string_view specs;  // own lists only
  std::uint64_t of = 0;    // kListOf: the rank whose list it repeats
  std::uint64_t held = 0;  // the regions that follow
};
// Reads a part's head, leaving `part` at its first region.
PartHead read_head(WireReader& part);

// The `list_of` with which this rank calls part() (collective over `comm`;
// `first_specs`: rank 0's, broadcast): 0 where its tensor list is rank 0's,
// byte for byte (the usual case), else the first rank whose list has the
// same key, or -1 where that is this rank. Keys are 128-bit hashes: two
// different lists share one with a chance of about 2^-128 a pair. Ranks
// whose list is rank 0's send none (a flag says so): one MPI_Allgather of
// three words a rank.
int list_of(std::string_view mine, std::string_view first_specs, MPI_Comm comm);

}  // namespace floe::layout_wire
