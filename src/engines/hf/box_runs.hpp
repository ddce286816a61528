// A box of a row-major tensor as the contiguous runs of elements it covers:
// how a region maps onto the consolidated tensor in a safetensors file.
#pragma once

#include <cstdint>
#include <functional>

#include "floe/region.hpp"

namespace floe::hf {

// One contiguous stretch of a box inside its tensor.
struct Run {
  std::uint64_t tensor_element = 0;  // first element, row-major in the tensor
  std::uint64_t box_element = 0;     // first element, row-major in the box
  std::uint64_t count = 0;           // elements, > 0
};

// Calls `fn` for each run of `box` (inside a tensor of `shape`), in
// increasing order of both tensor_element and box_element. Trailing
// dimensions the box spans whole are merged into one run, so a dim-0 shard
// or a whole tensor is a single run; an empty box has none; a rank-0
// tensor's box is one run of one element. The box must lie inside `shape`.
void for_each_run(const Shape& shape, const Box& box,
                  const std::function<void(const Run&)>& fn);

// The number of runs for_each_run makes, without making them.
std::uint64_t count_runs(const Shape& shape, const Box& box);

}  // namespace floe::hf
