// The hdf5 engine's save: every rank's pieces and blobs into one
// parallel-HDF5 file, <checkpoint>/checkpoint.h5 (docs/hdf5_layout.md).
#pragma once

#include "engines/hdf5/h5_transfer.hpp"
#include "engines/hdf5/hdf5_options.hpp"
#include "engines/hdf5/hdf5_template.hpp"
#include "floe/engine.hpp"

namespace floe::h5 {

// Collective over ctx.comm. Creates <ctx.dir>/checkpoint.h5 with the MPI-IO
// driver, one dataset of the global shape per tensor (written collectively,
// each piece by its writer), one per blob (each written by its rank), the
// scalars and metadata of rank 0 as attributes; flushes (MPI_File_sync) and
// closes it. Returns on every rank the records of every rank's pieces and
// blobs, with XXH3-64 of their bytes. Adds this rank's tensor transfers to
// `stats`. Throws the same Error on every rank: kInvalidArgument naming the
// tensor or blob whose name cannot be a dataset, kIo with HDF5's error stack.
// With options.reuse_structure, a save whose structure matches
// `saved.file` (an earlier save's, hdf5_template.hpp) is written from it
// without creating the datasets, and a save made in full leaves its own
// template there; `saved.reused` says which it was.
WriteResult write_checkpoint(const SaveContext& ctx, const Hdf5Options& options,
                             TransferStats& stats, SavedStructure& saved);

}  // namespace floe::h5
