// How `floe diff` cuts a tensor into boxes small enough to read at once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "floe/region.hpp"

namespace floe::cli {

// Boxes tiling a tensor of `shape` in row-major order, each at most
// `max_bytes` (but at least one element): runs of whole rows of the first
// dimension when a row fits, else of the first dimension whose inner block
// fits, the dimensions before it fixed. None for a tensor of no elements;
// one, with no dimensions, for a rank-0 tensor.
std::vector<Box> chunk_boxes(const Shape& shape, std::size_t element_size,
                             std::uint64_t max_bytes);

// The global row-major index, in a tensor of `shape`, of element `i`
// (row-major) of `box`.
std::uint64_t global_index(const Shape& shape, const Box& box, std::uint64_t i);

// Element `flat` (row-major) of a tensor of `shape` as a multi-index:
// "[6,4]"; "[]" for a rank-0 tensor.
std::string index_text(const Shape& shape, std::uint64_t flat);

}  // namespace floe::cli
