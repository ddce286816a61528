// The names inside checkpoint.h5 (docs/hdf5_layout.md): where tensors and
// blobs live, the attributes Floe writes, and the check that every tensor and
// blob gets a dataset of its own.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "floe/state.hpp"

namespace floe::h5 {

inline constexpr const char* kFileName = "checkpoint.h5";

// The file's format, in the root group's attributes.
inline constexpr const char* kFormatName = "floe-hdf5";
inline constexpr int kFormatVersion = 1;
inline constexpr const char* kFormatAttribute = "floe_format";
inline constexpr const char* kFormatVersionAttribute = "floe_format_version";
inline constexpr const char* kWorldSizeAttribute = "floe_world_size";
inline constexpr const char* kMetadataAttribute = "floe_metadata";  // JSON
// Every tensor dataset's safetensors dtype name ("BF16", "F32", ...).
inline constexpr const char* kDtypeAttribute = "floe_dtype";

// "major.minor.release" of the HDF5 library in use.
std::string hdf5_library_version();

// "/model/<name>" or "/optimizer/<name>/<opt_key>". A '/' inside a name
// makes groups, as h5py's f["model/a/b"] expects.
std::string dataset_path(const TensorSpec& spec);

// "/ranks/<rank>/<name>".
std::string blob_path(int rank, const std::string& name);

// One dataset path and what it stores (for errors: `tensor "model/x"`).
struct NamedPath {
  std::string path;
  std::string owner;
};

// Throws Error(kInvalidArgument) naming the owner when a path cannot be a
// dataset of its own: an empty, "." or ".." part (from "a//b", a leading or
// trailing '/'), a NUL, or a path that another one needs as a group
// ("model/a" and "model/a/b").
void check_dataset_paths(const std::vector<NamedPath>& paths);

}  // namespace floe::h5
