// Which elements one collective HDF5 transfer moves for a rank: the boxes a
// rank holds or asks for, cut into transfers whose dataset selection lists
// the elements in the same order as the rank's buffer.
#pragma once

#include <cstdint>
#include <vector>

#include <hdf5.h>

#include "floe/region.hpp"

namespace floe::h5 {

// One transfer of one rank: `elements` consecutive elements of its buffer,
// from `buffer_offset` (in elements), and the boxes of the dataset they are.
struct Transfer {
  std::uint64_t buffer_offset = 0;
  std::uint64_t elements = 0;
  std::vector<Box> boxes;
};

// Cuts `boxes` (a buffer laid out box after box, row-major within each box,
// in a tensor of `shape`) into transfers. HDF5 moves the elements of a union
// selection in row-major order of the dataset, so consecutive boxes share a
// transfer only while each starts after the previous one ends in that order
// (true of a flat range's boxes; two side-by-side column blocks are not);
// a box that overlaps or comes before its predecessor starts a new transfer.
// Each transfer holds at most `max_elements` elements (0: no limit); larger
// runs are cut along the row-major order, which keeps the order intact.
// Empty boxes are skipped. Pure: any rank can plan any rank's transfers.
std::vector<Transfer> plan_transfers(const Shape& shape,
                                     const std::vector<Box>& boxes,
                                     std::uint64_t max_elements);

// Selects the union of `boxes` in `space`, a dataspace of a tensor of
// `shape` (all of it for a rank-0 tensor); selects nothing for no boxes.
void select_boxes(hid_t space, const Shape& shape,
                  const std::vector<Box>& boxes);

}  // namespace floe::h5
