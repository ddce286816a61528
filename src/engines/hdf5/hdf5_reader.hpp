// The hdf5 engine's reader: tensors out of one checkpoint.h5 by collective
// hyperslab reads, whatever partition wrote them; blobs by independent reads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <mpi.h>

#include "engines/hdf5/h5_handle.hpp"
#include "engines/hdf5/h5_transfer.hpp"
#include "floe/engine.hpp"

namespace floe::h5 {

class Hdf5Reader : public CheckpointReader {
 public:
  // Collective over ctx.comm. Opens the data file the manifest names, which
  // must stay inside ctx.dir (no absolute path, "..", or symlink out), with
  // the MPI-IO driver. Throws the same Error on every rank: kCorrupt naming
  // the file when it is missing, outside the directory, not HDF5, or not a
  // Floe hdf5 checkpoint; kUnsupported for a newer format.
  explicit Hdf5Reader(const ReadContext& ctx);
  // Collective: closing the file is (MPI_File_close).
  ~Hdf5Reader() override;
  Hdf5Reader(const Hdf5Reader&) = delete;
  Hdf5Reader& operator=(const Hdf5Reader&) = delete;

  // Collective (see CheckpointReader). Every rank opens the tensor's dataset
  // (collective metadata reads) and checks its floe_dtype, stored type and
  // shape against `tensor`: kCorrupt naming the file and dataset when it is
  // missing or differs. kInvalidArgument for a box outside the tensor.
  void read(const TensorRecord& tensor, const std::vector<Box>& boxes,
            void* out) override;

  // Not collective: reads /ranks/<rank>/<name> with independent I/O through
  // a handle of this rank's own (MPI_COMM_SELF), which keeps the collective
  // handle's metadata cache the same on every rank. kCorrupt naming the file
  // and dataset when it is missing or its size differs from the record.
  std::vector<std::uint8_t> read_blob(const BlobRecord& blob) override;

  // This rank's tensor transfers so far, as HDF5 reported them.
  const TransferStats& stats() const { return stats_; }

 private:
  MPI_Comm comm_;
  std::filesystem::path dir_;
  std::string file_text_;  // the data file's path, for messages
  File file_;
  Plist dataset_access_;  // collective metadata reads
  std::string blob_file_name_;
  File blob_file_;
  TransferStats stats_;
  Plist transfer_list_;  // collective transfers, made once
  std::map<DType, Type> types_;
  const Type& type_of(DType dtype);
};

// Collective. The ReaderFactory registered for "hdf5".
std::unique_ptr<CheckpointReader> open_hdf5_reader(const ReadContext& ctx);

}  // namespace floe::h5
