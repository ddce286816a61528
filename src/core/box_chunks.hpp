// Cutting a box of a tensor into boxes of bounded bytes, in row-major
// order: what a reader that hashes or compares as it goes reads at a time
// (load()'s read-ahead, verify, `floe diff`).
#pragma once

#include <cstdint>
#include <vector>

#include "floe/region.hpp"

namespace floe {

// Appends boxes that tile `box` in its row-major order, each of at most
// `limit` bytes (`element` bytes an element) where the box allows it, a
// single element at the least: cut along the outermost dimension of extent
// above 1, and within one index of it where that alone is larger. Each
// box's elements follow the previous one's, so reading them one after the
// other yields the bytes of `box` in order.
void split_box(const Box& box, std::uint64_t element, std::uint64_t limit,
               std::vector<Box>& out);

}  // namespace floe
