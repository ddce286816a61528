// The skeleton of an hdf5 checkpoint file, which the writer fills: the file
// itself, its top groups and root attributes, and the property lists and
// call every tensor's dataset is created with (docs/hdf5_layout.md).
// Collective where HDF5's metadata operations are; failures throw Error.
#pragma once

#include <filesystem>
#include <string>

#include <mpi.h>

#include "engines/hdf5/h5_handle.hpp"
#include "engines/hdf5/hdf5_options.hpp"
#include "engines/hdf5/hdf5_rank_report.hpp"
#include "floe/layout.hpp"

namespace floe::h5 {

// The property lists every dataset of the file is created with.
struct CreateLists {
  Plist link;     // makes the groups a '/' in a name asks for
  Plist dataset;  // contiguous, allocated at creation, never filled
};

// Contiguous, allocated at creation, never filled, no modification times;
// links make intermediate groups and are UTF-8.
CreateLists create_lists();

// Creates `path` (scalar dataspace for an empty shape) of stored `type`.
Dataset create_dataset(hid_t file, const CreateLists& lists,
                       const std::string& path, hid_t type, const Shape& shape,
                       const std::string& where);

// /model and /optimizer (creation order tracked), /scalars and /ranks.
void create_top_groups(hid_t file, const std::string& where);

// The format name and version, world size and metadata on the root, the
// scalars as attributes of /scalars.
void write_root_attributes(hid_t file, const GlobalLayout& layout,
                           const RankReport& root, const std::string& where);

// A file made from a template (hdf5_template.hpp): the root's metadata
// attribute and every scalar replaced by those of `root`. The format
// attributes and the world size are part of the template's structure.
void rewrite_root_attributes(hid_t file, const RankReport& root,
                             const std::string& where);

// HDF5's metadata block size (H5Pset_meta_block_size) for a file of
// `objects` datasets: about an eighth of their metadata, a power of two from
// HDF5's default 2 KiB up to 1 MiB. With 2 KiB blocks a new block lands
// after the dataset just allocated, so the object headers of many small
// datasets lie between their data, and every collective metadata flush
// rewrites the data around them (ROMIO reads and writes back each 512 KiB
// it touches); in a few large blocks they sit apart. A file of few datasets
// keeps the default, so it holds no large unused block.
hsize_t metadata_block_bytes(std::uint64_t objects);

// Creates the file at `path`, collective over `comm`, for `objects`
// datasets (tensors and blobs).
File create_file(const std::filesystem::path& path, MPI_Comm comm,
                 const Hdf5Options& options, std::uint64_t objects);

// Opens the file a template made at `path` for writing, collective over
// `comm`, with the settings create_file uses.
File open_file_to_write(const std::filesystem::path& path, MPI_Comm comm,
                        const Hdf5Options& options);

}  // namespace floe::h5
