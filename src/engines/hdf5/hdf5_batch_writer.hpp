// The hdf5 engine's batched write of small tensors (docs/hdf5_layout.md,
// "Small tensors are written together"): their datasets are created like
// the others, but their bytes go in with one collective MPI-IO write into
// the closed file, at the offsets HDF5 gave their storage.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/comm.hpp"
#include "engines/hdf5/h5_handle.hpp"
#include "engines/hdf5/hdf5_options.hpp"
#include "floe/region.hpp"
#include "floe/state.hpp"
#include "io/mpi_file.hpp"

namespace floe::h5 {

// True for the tensors written by the batched write: the same on every
// rank (it depends on the tensor's global size alone).
bool is_batched(const TensorSpec& spec, const Hdf5Options& options);

// Where HDF5 put the contiguous storage of `dataset` (allocated at
// creation) in the file: the same address on every rank, since every rank
// makes the same metadata calls. Throws Error(kInternal) with HDF5's error
// stack, naming `where`, when it has none.
haddr_t storage_offset(hid_t dataset, const std::string& where);

// This rank's piece of one batched tensor whose dataset has storage.
// batch_runs reads `shape` and `boxes`; the runs it returns point into
// `buffer`.
struct BatchPiece {
  std::uint64_t offset = 0;  // of the tensor's contiguous storage in the file
  const Shape* shape = nullptr;    // the tensor's global shape
  std::uint64_t element_size = 0;  // bytes per element
  // The piece's `box_count` boxes (each a set of row-major runs of the
  // tensor's storage), laid out one after the other in `buffer`.
  const Box* boxes = nullptr;
  std::size_t box_count = 0;
  const void* buffer = nullptr;
};

// Local: this rank's runs of the batched write, sorted by file offset.
std::vector<IoRun> batch_runs(const std::vector<BatchPiece>& pieces);

// Collective over `comm`: the batched write into the closed file at `path`
// (whose datasets are allocated: the bytes go where HDF5 put their
// storage), made durable (MPI_File_sync). Every rank takes part, with no
// runs or with some. Throws Error(kIo) naming `path`; a write that fails on
// one rank is agreed on before the sync, so every rank throws the same one.
void write_batch(const Comm& comm, const std::filesystem::path& path,
                 const Hdf5Options& options, const std::vector<IoRun>& runs);

}  // namespace floe::h5
