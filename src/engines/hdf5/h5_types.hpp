// How Floe's element types and attribute values are represented in HDF5
// (docs/hdf5_layout.md is the reader's side of this file).
#pragma once

#include <cstddef>
#include <string>

#include "engines/hdf5/h5_handle.hpp"
#include "floe/dtype.hpp"
#include "floe/state.hpp"

namespace floe::h5 {

// The HDF5 type datasets of `dtype` are stored as: the little-endian IEEE
// and integer types; F16 as IEEE half (built from F32, as h5py does); BF16 as
// U16 and F8_* as U8 holding the raw bits (no HDF5 type h5py reads as those
// exists; the `floe_dtype` attribute names the real one); BOOL as h5py's
// bool enum. Transfers use the same type in memory, so HDF5 never converts,
// which would also make it break a collective transfer into independent ones.
Type stored_type(DType dtype);

// A fixed-length UTF-8 string type of `size` bytes (at least 1), null-padded.
Type utf8_string(std::size_t size);

// Creates attribute `name` on `object` holding `value` as a fixed-length
// UTF-8 string. `where` names the object in errors.
void write_string_attribute(hid_t object, const std::string& name,
                            const std::string& value, const std::string& where);

// Reads string attribute `name` of `object`; throws Error(code) naming
// `where` when it is missing or not a string.
std::string read_string_attribute(hid_t object, const std::string& name,
                                  const std::string& where, ErrorCode code);

// Creates attribute `name` on `object` holding a scalar: BOOL as h5py's bool
// enum, integers as I64, numbers as F64, strings as UTF-8.
void write_scalar_attribute(hid_t object, const std::string& name,
                            const Scalar& value, const std::string& where);

}  // namespace floe::h5
