// One collective HDF5 transfer (H5Dwrite or H5Dread) of one rank's share,
// and what HDF5 reports it actually did: collective I/O is verified, not
// assumed.
#pragma once

#include <cstdint>
#include <string>

#include "engines/hdf5/h5_handle.hpp"
#include "engines/hdf5/h5_selection.hpp"
#include "floe/error.hpp"

namespace floe::h5 {

// Counts of the transfers a rank made, as HDF5 reports them
// (H5Pget_mpio_actual_io_mode / H5Pget_mpio_no_collective_cause).
struct TransferStats {
  std::uint64_t transfers = 0;   // H5Dwrite / H5Dread calls
  std::uint64_t collective = 0;  // ... that HDF5 did as collective I/O
  std::string first_cause;       // why the first other one was not
  // Small tensors written by the batched MPI-IO write (not counted in
  // `transfers`: HDF5 does not move their bytes), or tensors read directly
  // after the reader's constructor planned them (from the manifest's
  // storage_offset, or its own check of the dataset).
  std::uint64_t batched = 0;
  // Tensors read with pread of their contiguous storage after read()'s
  // collective check (not counted in `transfers` either).
  std::uint64_t direct = 0;
  // Datasets this rank opened and checked in the reader's constructor: its
  // share of the tensors read directly whose manifest record gives no
  // storage_offset (a checkpoint written before Floe recorded it).
  std::uint64_t checked = 0;

  bool all_collective() const { return collective == transfers; }
};

enum class Direction { kWrite, kRead };

// One rank's side of one collective transfer, built before the collective
// call (everything that can fail on one rank alone happens here): the file
// selection, the memory space and where in the buffer it starts.
struct PreparedTransfer {
  Space file_space;
  Space memory_space;
  unsigned char* at = nullptr;
};

// Local. Prepares `transfer` (nullptr: this rank moves nothing and only
// takes part) of a dataset of `shape` for `buffer` (its start, element_size
// bytes per element). Throws Error(code) naming `what`.
PreparedTransfer prepare_transfer(const Shape& shape, const Transfer* transfer,
                                  void* buffer, std::size_t element_size,
                                  const std::string& what, ErrorCode code);

// A transfer property list asking for collective I/O; reusable.
Plist collective_dxpl();

// Collective over the dataset's file: every rank calls it for the same
// dataset with its own prepared share. Moves it between the buffer and
// dataset `dataset`, whose stored type `type` is also the memory type, with
// `dxpl` (collective_dxpl()); records in `stats` what HDF5 did. Throws
// Error(code) naming `what`.
void run_transfer(Direction direction, hid_t dataset, hid_t type, hid_t dxpl,
                  const PreparedTransfer& prepared, TransferStats& stats,
                  const std::string& what, ErrorCode code);

// Both of the above with a fresh transfer property list.
void collective_transfer(Direction direction, hid_t dataset, hid_t type,
                         const Shape& shape, const Transfer* transfer,
                         void* buffer, std::size_t element_size,
                         TransferStats& stats, const std::string& what,
                         ErrorCode code);

// One non-collective read of all of `dataset` (of `elements` elements of
// `type`) into `buffer`, for blobs that one rank reads alone.
void independent_read_all(hid_t dataset, hid_t type, void* buffer,
                          const std::string& what, ErrorCode code);

}  // namespace floe::h5
