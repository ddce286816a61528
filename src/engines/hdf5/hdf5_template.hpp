// Later saves of the same structure (docs/hdf5_layout.md, "Later saves of
// the same structure"): creating one dataset costs HDF5 1.10 tens of
// microseconds, every save, although a trainer saves the same tensors, with
// the same names, types and shapes, every time. After a save the engine
// keeps the file's HDF5 structure (every byte outside the datasets'
// storage, and where that storage lies); the next save of the same
// structure writes those bytes into its new file, rewrites the attributes
// that change (metadata, scalars) with HDF5 and writes the data where the
// storage lies. The file is the one a full save would make, attribute
// placement aside.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/comm.hpp"
#include "engines/hdf5/hdf5_options.hpp"
#include "engines/hdf5/hdf5_rank_report.hpp"
#include "floe/layout.hpp"
#include "io/mpi_file.hpp"

namespace floe::h5 {

// Of a dataset without storage (no elements).
inline constexpr std::uint64_t kNoStorage = ~std::uint64_t{0};

// A finished checkpoint file's structure. Every rank holds the same
// `structure` and offsets; rank 0 alone holds the bytes.
struct FileTemplate {
  // describe_structure() of the save that made the file.
  std::string structure;
  std::uint64_t file_size = 0;
  // Where each tensor's storage starts, in layout order (kNoStorage: none).
  std::vector<std::uint64_t> tensor_offsets;
  // Where each blob's storage starts, by rank, in the rank's report order.
  std::vector<std::vector<std::uint64_t>> blob_offsets;
  // Rank 0: the file's bytes outside every dataset's storage, in 4 KiB
  // blocks that are not all zero (a new file reads zeros elsewhere).
  struct Run {
    std::uint64_t offset = 0;
    std::vector<char> bytes;
  };
  std::vector<Run> image;
  // image_xxh3() of `image` and `file_size` (every rank holds it).
  std::uint64_t image_xxh3 = 0;
};

// XXH3-64 of a file's structure bytes as a template keeps them: for each
// run in file order its offset and length (8 bytes each, little-endian),
// then its bytes; then the file's size (8 bytes). Every byte outside the
// storage enters it (a zero block left out changes the runs), so a
// checkpoint's manifest can name the structure its file must still have to
// serve as a template (docs/manifest.md, engine_info).
std::uint64_t image_xxh3(const std::vector<FileTemplate::Run>& image,
                         std::uint64_t file_size);

// The most bytes of structure a template keeps (rank 0's memory): about
// 350 bytes per dataset, so up to ~150,000 tensors. Larger states save in
// full every time.
inline constexpr std::uint64_t kMaxTemplateBytes = 64ull << 20;

// A loaded checkpoint's file, which may serve as the template of the next
// save (hdf5_loaded_template.hpp): what its manifest says the file's
// structure is. The same on every rank.
struct LoadedFile {
  std::filesystem::path path;        // <checkpoint>/checkpoint.h5
  std::uint64_t structure_xxh3 = 0;  // of describe_structure() of its save
  std::uint64_t image_xxh3 = 0;      // of its structure bytes (image_xxh3())
  // Where each tensor's and each blob's storage starts, in manifest order
  // (kNoStorage: none).
  std::vector<std::uint64_t> tensor_offsets;
  std::vector<std::uint64_t> blob_offsets;
};

// What the engine keeps from one save for the next.
struct SavedStructure {
  std::optional<FileTemplate> file;
  bool reused = false;  // whether the last save was written from `file`
  // The checkpoint load() read last, until the next save tried it as its
  // template (only when `file` is empty: a fresh engine that resumed).
  std::optional<LoadedFile> loaded;
};

// What the file's HDF5 structure depends on, the same on every rank (from
// the layout and the exchanged reports): the format, the HDF5 version, the
// options that place objects, and every tensor's dataset path, type and
// shape and every rank's blobs, in the order they are created. Two saves
// with the same description make the same objects at the same addresses;
// the metadata and scalars, which are rewritten, are not part of it.
std::string describe_structure(const GlobalLayout& layout,
                               const std::vector<RankReport>& reports,
                               const Hdf5Options& options);

// Collective over `comm`, after a save wrote `path` completely (or for a
// loaded checkpoint's file): the template of that file, or nothing (on
// every rank) when a tensor's or blob's storage address is unknown, when
// rank 0 cannot read the file, when its structure bytes exceed
// `max_image_bytes`, or when they hash to other than `expected_image_xxh3`
// (given). Never throws for those: a save without a template is only
// slower.
std::optional<FileTemplate> capture_template(
    const Comm& comm, const std::filesystem::path& path, std::string structure,
    const GlobalLayout& layout, const std::vector<RankReport>& reports,
    std::vector<std::uint64_t> tensor_offsets,
    std::vector<std::vector<std::uint64_t>> blob_offsets,
    std::uint64_t max_image_bytes,
    std::optional<std::uint64_t> expected_image_xxh3 = std::nullopt);

// Local (rank 0, after a save written from a template): image_xxh3() of
// the structure bytes of the finished file `path`, whose storage lies where
// `file` says; nothing when it cannot be read or they exceed
// `max_image_bytes`. Never throws.
std::optional<std::uint64_t> file_image_xxh3(
    const std::filesystem::path& path, const GlobalLayout& layout,
    const std::vector<RankReport>& reports, const FileTemplate& file,
    std::uint64_t max_image_bytes);

// Collective over `comm`: creates `path` (replacing any file there) with the
// template's bytes, `file_size` long, ready for H5Fopen. Throws the same
// Error(kIo) naming `path` on every rank.
void write_template(const Comm& comm, const std::filesystem::path& path,
                    const MpiInfo& hints, const FileTemplate& file);

}  // namespace floe::h5
