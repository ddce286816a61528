// The hdf5 engine's reader: tensors out of one checkpoint.h5, whatever
// partition wrote them, by direct reads (pread) of their contiguous storage,
// or by collective hyperslab reads where that storage is not Floe's or a
// rank asks for many small runs; blobs by independent reads.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <mpi.h>

#include "engines/hdf5/h5_handle.hpp"
#include "engines/hdf5/h5_transfer.hpp"
#include "floe/engine.hpp"
#include "io/gathered_read.hpp"
#include "io/read_only_file.hpp"
#include "io/run_planner.hpp"

namespace floe::h5 {

class Hdf5Reader : public CheckpointReader, public RunPlanner {
 public:
  // Tensors smaller than this are read directly (see the constructor): by
  // default, every tensor.
  static constexpr std::uint64_t kDirectReadBelow = ~std::uint64_t{0};

  // How read() moves the bytes of the tensors the constructor did not
  // check (see read()).
  enum class LargeReads {
    kDirect,      // pread where every rank's request allows it
    kCollective,  // always the collective H5Dread
  };

  // One contiguous piece of a request: `length` bytes at file offset
  // `offset` into `memory`.
  struct Run {
    std::uint64_t offset = 0;
    char* memory = nullptr;
    std::uint64_t length = 0;
  };

  // Collective over ctx.comm. Opens the data file the manifest names, which
  // must stay inside ctx.dir (no absolute path, "..", or symlink out), with
  // the MPI-IO driver. Throws the same Error on every rank: kCorrupt naming
  // the file when it is missing, outside the directory, not HDF5, or not a
  // Floe hdf5 checkpoint; kUnsupported for a newer format.
  //
  // Tensors of fewer than `direct_below` bytes (0: none; by default all)
  // are read directly: read() of such a tensor is a local pread of the
  // overlapping bytes with no collective call, so each rank streams its own
  // bytes without waiting for the others tensor by tensor. Where their
  // bytes lie comes from the manifest (TensorRecord::storage_offset, which
  // the writer records; no dataset is opened, and an offset whose bytes end
  // beyond the data file fails read() of that tensor with kCorrupt naming
  // the tensor and field). For records without it (checkpoints written
  // before Floe recorded it), the ranks split the checks of their datasets
  // between them here (each opens its share through its own handle, checks
  // it as read() would, and notes where its contiguous storage lies) and one
  // allgather shares the outcome. A dataset that failed its check fails
  // read() of that tensor on every rank with the error read() gives; one
  // that is not stored contiguously is read with H5Dread. Every rank reads only the bytes its
  // boxes overlap, one pread per run, also when they are many short ones
  // (a column block of a row-major tensor): on a parallel file system, a
  // reader with a smaller `direct_below` leaves such requests to the
  // collective H5Dread (see read()).
  explicit Hdf5Reader(const ReadContext& ctx,
                      std::uint64_t direct_below = kDirectReadBelow,
                      LargeReads large_reads = LargeReads::kDirect);
  // Collective: closing the file is (MPI_File_close).
  ~Hdf5Reader() override;
  Hdf5Reader(const Hdf5Reader&) = delete;
  Hdf5Reader& operator=(const Hdf5Reader&) = delete;

  // Collective (see CheckpointReader). For a tensor the constructor did not
  // plan (at least `direct_below` bytes), every rank opens its dataset
  // (collective metadata reads) and checks its floe_dtype, stored type and
  // shape against `tensor`: kCorrupt naming the file and dataset when it is
  // missing or differs. kInvalidArgument for a box outside the tensor. The
  // same allreduce that agrees on those checks tells whether every rank can
  // read its request directly: with LargeReads::kDirect, when the dataset's
  // storage is contiguous and each rank's request is a few runs or long
  // ones, each rank preads its own bytes (ROMIO's two-phase read adds a
  // copy and an exchange for no gain when every rank's bytes are long
  // runs); otherwise every rank takes part in the collective H5Dread. A
  // failed pread (kCorrupt or kIo naming the file) is the reading rank's
  // alone, as for a tensor the constructor planned, which is read with
  // pread alone, with no collective call.
  void read(const TensorRecord& tensor, const std::vector<Box>& boxes,
            void* out) override;

  // Not collective: reads /ranks/<rank>/<name> with independent I/O through
  // a handle of this rank's own (MPI_COMM_SELF), which keeps the collective
  // handle's metadata cache the same on every rank. kCorrupt naming the file
  // and dataset when it is missing or its size differs from the record.
  // Calls from several threads take turns (HDF5 is not thread-safe).
  std::vector<std::uint8_t> read_blob(const BlobRecord& blob) override;

  // True when read() of every tensor of the manifest is a pread alone, with
  // no collective call and no HDF5 call: every record gives storage_offset,
  // every tensor is below `direct_below`, and the structure is not to be
  // checked (ReadContext::check_structure). The same on every rank (it
  // depends on the manifest and the arguments alone). load() then reads on
  // a thread of its own (ReadAhead) while it checks what has arrived;
  // read() of those records is then thread-safe, and one whose offset does
  // not fit the file fails on the ranks that read it (the caller agrees on
  // the error). A record that is not the manifest's (a caller's own) is
  // still read collectively.
  bool reads_independently() const override { return independent_; }

  // Not collective; for the manifest's records while reads_independently()
  // (CheckpointReader::read_some): the runs of every request, sorted by
  // offset, are read with one preadv per stretch of runs that follow each
  // other in the file with small gaps (read_gathered), so
  // a batch of small tensors saved back to back takes a few system calls
  // instead of one pread each. When that fails, the requests are read again
  // one by one with read(): the first one that fails throws read()'s own
  // error, or ends the prefix returned.
  std::size_t read_some(const ReadRequest* requests, std::size_t count) override;

  // RunPlanner: the data file while reads_independently(), else null.
  const ReadOnlyFile* exchange_file() override {
    return independent_ ? data_.get() : nullptr;
  }
  // RunPlanner: the runs read_direct() reads, for a record it plans.
  bool append_runs(const ReadRequest& request, std::vector<FileRun>& runs) override;

  // How read_some() calls of more than one request went so far (all
  // threads): batches read by read_gathered and their stretches, and calls
  // read again request by request. stats().batched counts tensors of both.
  GatheredReadStats read_some_stats() const { return gathered_.stats(); }

  // This rank's tensor transfers so far, as HDF5 reported them, how many
  // tensors it read directly after the constructor's planning (`batched`)
  // or after read()'s own checks (`direct`), and how many datasets the
  // constructor opened to check (`checked`). A snapshot: `batched` counts
  // reads of every thread.
  TransferStats stats() const;

 private:
  // Where a tensor read directly lies, from the manifest or from the
  // constructor's checks.
  struct Direct {
    bool planned = false;      // false: not read directly (direct_below)
    bool collective = false;   // not contiguous: read with H5Dread after all
    std::uint64_t offset = 0;  // of its storage in the file
    ErrorCode code = ErrorCode::kCorrupt;
    std::string problem;  // non-empty: read() throws it
    // What was checked: the manifest's record. Its key and dataset path
    // lie in names_ (the key at names_at, the path right after it), its
    // dims in dims_ (note_record): copied into two buffers for all
    // tensors, where a string, a string and a Shape of each cost three
    // allocations a tensor to make and three to free at 20,000 tensors.
    DType dtype = DType::kU8;
    std::size_t names_at = 0, key_size = 0, dataset_size = 0;
    std::size_t dims_at = 0, rank = 0;
  };

  void plan_direct_reads(const ReadContext& ctx, const std::string& name);
  // The plan for `tensor` when it is the manifest's record of a tensor
  // planned for a direct read (and not found to need H5Dread); else null.
  const Direct* planned(const TensorRecord& tensor) const;
  // What the manifest's storage_offset tells, held to the data file's size.
  // `bytes`: tensor.spec.nbytes(), which the caller has.
  Direct recorded_direct(const TensorRecord& tensor, std::uint64_t bytes,
                         std::uint64_t file_size) const;
  Direct check_direct(hid_t file, const TensorRecord& tensor);
  // Copies what `d` keeps of the manifest's `tensor` (see Direct).
  void note_record(Direct& d, const TensorRecord& tensor);
  std::string_view key_of(const Direct& d) const;
  // Whether `tensor` names the dataset, dtype and shape `d` was made for.
  bool same_record(const Direct& d, const TensorRecord& tensor) const;
  // append_runs() with each_run's scratch `whole`, which read_some() keeps
  // from one request to the next.
  bool append_runs(const ReadRequest& request, std::vector<FileRun>& runs, Box& whole);
  void read_direct(const TensorRecord& tensor, const Direct& direct,
                   const std::vector<Box>& boxes, void* out);
  // The runs of `boxes` (into `out`, box after box) of a tensor whose
  // contiguous storage starts at file offset `storage`, merged where they
  // continue each other in both the file and memory.
  static std::vector<Run> runs_of(const TensorSpec& spec, std::uint64_t storage,
                                  const std::vector<Box>& boxes, void* out);
  void read_runs(const std::vector<Run>& runs);
  void read_collective(const TensorRecord& tensor,
                       const std::vector<Box>& boxes, void* out);
  // This rank's own handle (MPI_COMM_SELF) of data file `name`.
  hid_t own_file(const std::string& name, const std::string& owner);

  MPI_Comm comm_;
  std::filesystem::path dir_;
  std::string file_text_;  // the data file's path, for messages
  File file_;
  Plist dataset_access_;  // collective metadata reads
  std::mutex own_file_mutex_;  // read_blob's, from several threads
  std::string own_file_name_;
  File own_file_;  // MPI_COMM_SELF: blobs and the checks of direct reads
  TransferStats stats_;  // but `batched`: batched_
  // Reads by read_direct, which several threads may make at once.
  std::atomic<std::uint64_t> batched_{0};
  GatheredReadCounter gathered_;  // read_some's
  bool independent_ = false;  // see reads_independently()
  Plist transfer_list_;  // collective transfers, made once
  std::map<DType, Type> types_;
  const Type& type_of(DType dtype);
  bool direct_large_;
  std::uint64_t direct_below_;
  // By manifest index; made by the constructor and never changed after, so
  // read_direct may look it up from several threads.
  std::vector<Direct> direct_;
  std::string names_;                // Direct's keys and dataset paths
  std::vector<std::uint64_t> dims_;  // Direct's shapes
  std::size_t planned_count_ = 0;  // of direct_, those `planned`
  // planned()'s guess at the next tensor asked for.
  mutable std::atomic<std::size_t> next_guess_{0};
  // Index of direct_ by key, made at the first guess that misses.
  mutable std::once_flag by_key_made_;
  mutable std::unordered_map<std::string, std::size_t> by_key_;
  std::unique_ptr<ReadOnlyFile> data_;              // for pread
};

// Collective. The ReaderFactory registered for "hdf5".
std::unique_ptr<CheckpointReader> open_hdf5_reader(const ReadContext& ctx);

}  // namespace floe::h5
