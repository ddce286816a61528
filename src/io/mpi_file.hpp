// Move-only owners of MPI-IO handles (MPI_File, MPI_Info, MPI_Datatype) and
// the chunked transfers that keep every MPI call under 2 GiB.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <mpi.h>

namespace floe {

// Owns an MPI_Info; frees it on destruction.
class MpiInfo {
 public:
  MpiInfo();
  ~MpiInfo();
  MpiInfo(MpiInfo&& other) noexcept : info_(std::exchange(other.info_, MPI_INFO_NULL)) {}
  MpiInfo& operator=(MpiInfo&&) = delete;
  MpiInfo(const MpiInfo&) = delete;

  void set(const std::string& key, const std::string& value);
  MPI_Info get() const { return info_; }

 private:
  MPI_Info info_ = MPI_INFO_NULL;
};

// Owns a committed MPI_Datatype.
class MpiType {
 public:
  MpiType() = default;
  explicit MpiType(MPI_Datatype type) : type_(type) {}
  ~MpiType();
  MpiType(MpiType&& other) noexcept : type_(std::exchange(other.type_, MPI_DATATYPE_NULL)) {}
  MpiType& operator=(MpiType&& other) noexcept;
  MpiType(const MpiType&) = delete;

  MPI_Datatype get() const { return type_; }

 private:
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
};

// One contiguous run of bytes: `length` bytes at `memory` go to (or come
// from) file offset `offset`.
struct IoRun {
  std::uint64_t offset = 0;
  const void* memory = nullptr;
  std::uint64_t length = 0;
};

// Owns an open MPI_File; closes it on destruction (errors there are
// dropped: call close() to see them). The communicator it was opened on
// must outlive it.
class MpiFile {
 public:
  // kCreate: created if missing, write-only; kWrite: an existing file,
  // written in place; kRead: read-only.
  enum class Mode { kCreate, kWrite, kRead };

  // Collective over `comm`. Throws Error(kIo) naming `path` on every rank
  // when the open failed on any (check_open_on_every_rank first, then the
  // result of MPI_File_open itself).
  MpiFile(MPI_Comm comm, const std::filesystem::path& path, Mode mode,
          const MpiInfo& info);
  ~MpiFile();
  MpiFile(MpiFile&& other) noexcept
      : file_(std::exchange(other.file_, MPI_FILE_NULL)),
        comm_(other.comm_),
        path_(std::move(other.path_)) {}
  MpiFile(const MpiFile&) = delete;

  // Collective. Writes `runs` (sorted by offset, not overlapping). Each
  // MPI_File_write_at_all moves one range contiguous in both the file and
  // memory (at most 32 MiB): runs that continue each other in file and
  // memory merge first (however small each is), small runs left adjacent in
  // the file are packed into a 16 MiB staging buffer, large ones go from
  // the caller's memory. After each
  // call the rank starts the kernel's writeback of what it wrote
  // (EarlyWriteback; sync() still makes it durable). Every rank makes the
  // same number of calls whatever its share; a rank whose call fails keeps
  // joining the rest and throws Error(kIo) at the end.
  void write_all(MPI_Comm comm, std::vector<IoRun> runs);
  // Collective. Writes `runs` (sorted by offset, not overlapping, of any
  // size and anywhere in the file) in rounds of at most 64 MiB per rank:
  // each round packs this rank's runs into one buffer and moves it with one
  // collective write through a file view that lists their offsets, so
  // MPI-IO's collective buffering turns the small, scattered runs of every
  // rank into a few large writes. For many small runs (an hdf5
  // checkpoint's small tensors); write_all suits large ones. Resets the
  // view afterwards. Errors as in write_all.
  void write_scattered_all(MPI_Comm comm, const std::vector<IoRun>& runs);
  // Collective (the same `bytes` on every rank). MPI_File_set_size:
  // truncates or extends the file to `bytes`.
  void set_size(std::uint64_t bytes);
  // Collective. MPI_File_sync: the data is durable when it returns.
  void sync();
  // Collective.
  void close();
  // set_size, sync and close can fail on some ranks only (each rank's own
  // ftruncate, fsync and close: a deferred write error, a quota): every
  // rank then throws the same Error(kIo) (agree_mpi), so none goes on to
  // the next collective alone.
  std::uint64_t size() const;

 private:
  // agree_mpi over the file's communicator: "`what` <path>: MPI's message".
  void agree(int rc, const char* what) const;

  MPI_File file_ = MPI_FILE_NULL;
  MPI_Comm comm_ = MPI_COMM_NULL;
  std::filesystem::path path_;
};

// The bytes an MPI-IO write of `asked` bytes moved, from its status. Every
// write must check it: Open MPI 4.1's OMPIO returns MPI_SUCCESS from a
// write whose pwritev failed, and only the count tells (its
// MPI_File_write_all reports the bytes asked for even then: use the *_at
// forms). 0 for a zero-byte call, whose status not every MPI-IO fills in.
std::uint64_t bytes_written(const MPI_Status& status, std::uint64_t asked);

// Collective over `comm`. Each rank opens `path` as `mode` asks with plain
// POSIX calls (kCreate: created if missing, never truncated) and closes it
// again; when any rank cannot, every rank throws Error(kIo) "rank R: cannot
// create|open <path>: <OS error>" for the lowest such rank. Made before every
// collective open (MPI_File_open, and H5Fcreate/H5Fopen through the MPI-IO
// driver), which must not fail on some ranks only: a node that does not see
// the directory yet, or lacks the permission. Open MPI 4.1's OMPIO then
// deadlocks inside MPI_File_open (the failed rank waits in the barrier of
// its cleanup's close, the others in the open's own barrier), and HDF5 goes
// on into collective metadata I/O on the ranks whose open succeeded.
// ROMIO agrees on the open's result itself; this check costs one open and
// close per rank and one allreduce. It cannot see a failure that starts
// after it (a file removed in between); MPI_File_open's result is still
// agreed on after the open.
void check_open_on_every_rank(MPI_Comm comm, const std::filesystem::path& path,
                              MpiFile::Mode mode);

}  // namespace floe
