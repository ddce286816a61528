// The hdf5 reader's checks of a stored dataset: that it exists, holds what
// the manifest records (floe_dtype, stored type, shape), that a request fits
// the tensor, and where its bytes lie when Floe wrote them contiguously.
// Every failure is Error(kCorrupt) naming the dataset and file (a bad
// request: kInvalidArgument naming the tensor).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engines/hdf5/h5_handle.hpp"
#include "floe/layout.hpp"

namespace floe::h5 {

// Opens `path` in `file`; a missing dataset (or group on its way) is
// reported as such, naming `owner` (e.g. the tensor).
Dataset open_dataset(hid_t file, const std::string& path, hid_t access,
                     const std::string& file_text, const std::string& owner);

// The dataset's extent; Shape{} for a scalar dataspace.
Shape extent_of(hid_t dataset, const std::string& where);

// Throws Error(kCorrupt) naming the dataset unless it holds what `spec` says.
void check_dataset(hid_t dataset, const TensorSpec& spec, const std::string& where);

// Every requested box lies inside the tensor, and a non-empty request has
// somewhere to go; throws naming the tensor.
void check_request(const TensorSpec& spec, const std::vector<Box>& boxes, const void* out);

// The address of `dataset`'s bytes in the file when they lie there as Floe
// writes them (contiguous layout, allocated, exactly the tensor's size);
// nothing otherwise (HDF5 is then left to find them).
std::optional<std::uint64_t> contiguous_storage(hid_t dataset, const TensorSpec& spec);

}  // namespace floe::h5
