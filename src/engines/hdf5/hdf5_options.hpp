// The hdf5 engine's config keys: their schema (for the registry and config
// validation) and their parsed values, and the HDF5 file-access property list
// they describe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <mpi.h>

#include "engines/hdf5/h5_handle.hpp"
#include "floe/config.hpp"
#include "io/mpi_file.hpp"

namespace floe::h5 {

struct Hdf5Options {
  // H5Pset_alignment: objects of at least `alignment_threshold` bytes start
  // at a multiple of `alignment` (0 or 1: off). Default: 1 MiB, 1 MiB.
  std::uint64_t alignment = 1 << 20;
  std::uint64_t alignment_threshold = 1 << 20;
  // Collective metadata writes (H5Pset_coll_metadata_write) when saving,
  // and collective metadata reads of tensor datasets when loading. Default:
  // true.
  bool collective_metadata = true;
  // MPI-IO hints; 0 and "automatic" leave MPI-IO's own default.
  std::uint64_t cb_buffer_size = 0;
  std::string romio_cb_write = "automatic";
  std::uint64_t striping_factor = 0;
  std::uint64_t striping_unit = 0;
  // The most bytes one rank moves in one collective transfer; larger pieces
  // take several (0: no limit). Default: 1 GiB.
  std::uint64_t max_transfer_bytes = 1ull << 30;
  // Tensors of fewer bytes than this are written together, by one
  // collective MPI-IO write into their datasets' storage (H5Dget_offset),
  // instead of one collective H5Dwrite each (0: every tensor by H5Dwrite).
  // Default: 1 MiB.
  std::uint64_t small_tensor_bytes = 1ull << 20;
  // A save of the same tensors, blobs and shapes as the engine's previous
  // save copies that file's HDF5 structure instead of creating every
  // dataset again (hdf5_template.hpp). Default: true.
  bool reuse_structure = true;

  // Values from validated engine options; a key that is absent (a config
  // made by hand) keeps its default. Throws Error(kInvalidConfig) naming the
  // key on a bad value.
  static Hdf5Options from(const EngineOptions& options);
};

// The option specs registered with the engine.
std::vector<OptionSpec> hdf5_option_specs();

// A file-access property list for the MPI-IO driver on `comm` with the
// hints, alignment and metadata settings of `options`. With `for_writing`
// false the write-only settings (alignment, striping) are left out.
Plist file_access(MPI_Comm comm, const Hdf5Options& options, bool for_writing);

// The MPI-IO hints of `options` for opening the file to write (what
// file_access gives the MPI-IO driver with `for_writing`).
MpiInfo write_hints(const Hdf5Options& options);

}  // namespace floe::h5
