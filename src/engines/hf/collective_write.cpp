#include "engines/hf/collective_write.hpp"

#include <algorithm>
#include <climits>
#include <exception>
#include <string>
#include <utility>

#include "core/comm.hpp"
#include "engines/hf/early_writeback.hpp"
#include "engines/hf/float_cast.hpp"
#include "engines/hf/write_hints.hpp"
#include "floe/error.hpp"
#include "io/mpi_file.hpp"

namespace floe::hf {
namespace {

constexpr std::uint64_t kMaxBlock = 1ull << 30;  // bytes per hindexed block

std::string mpi_message(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  return std::string(text, static_cast<std::size_t>(length));
}

// An MPI_Datatype that is freed when it goes out of scope.
class OwnedType {
 public:
  OwnedType() = default;
  ~OwnedType() {
    if (type_ != MPI_DATATYPE_NULL) MPI_Type_free(&type_);
  }
  OwnedType(const OwnedType&) = delete;
  OwnedType& operator=(const OwnedType&) = delete;
  MPI_Datatype* out() { return &type_; }
  MPI_Datatype get() const { return type_; }

 private:
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
};

// The first failure on this rank; later MPI calls still run (with no data),
// so every rank makes the same collective calls, and the failure is agreed
// on once the file is closed.
class Failure {
 public:
  explicit Failure(std::string path) : path_(std::move(path)) {}
  bool check(int rc, const char* call) {
    if (rc != MPI_SUCCESS && message_.empty()) {
      message_ = path_ + ": " + call + " failed: " + mpi_message(rc);
    }
    return rc == MPI_SUCCESS;
  }
  void set(const std::string& why) {
    if (message_.empty()) message_ = path_ + ": " + why;
  }
  bool failed() const { return !message_.empty(); }
  std::exception_ptr error() const {
    return failed() ? std::make_exception_ptr(Error(ErrorCode::kIo, message_))
                    : nullptr;
  }

 private:
  std::string path_;
  std::string message_;
};

// The file type covering `runs`: adjacent runs merged, blocks of <= 1 GiB.
void build_file_type(const std::vector<WriteRun>& runs, OwnedType& type,
                     Failure& failure) {
  std::vector<int> lengths;
  std::vector<MPI_Aint> offsets;
  std::uint64_t open_end = 0;
  for (const WriteRun& r : runs) {
    std::uint64_t at = r.file_offset, left = r.bytes();
    if (!lengths.empty() && at == open_end &&
        static_cast<std::uint64_t>(lengths.back()) + left <= kMaxBlock) {
      lengths.back() += static_cast<int>(left);
      open_end += left;
      continue;
    }
    while (left > 0) {
      const std::uint64_t block = std::min(left, kMaxBlock);
      lengths.push_back(static_cast<int>(block));
      offsets.push_back(static_cast<MPI_Aint>(at));
      at += block;
      left -= block;
    }
    open_end = at;
    if (lengths.size() > static_cast<std::size_t>(INT_MAX)) {
      failure.set("more than INT_MAX separate runs for one rank");
      return;
    }
  }
  if (lengths.empty()) return;  // the caller views the file as bytes
  if (failure.check(MPI_Type_create_hindexed(static_cast<int>(lengths.size()),
                                             lengths.data(), offsets.data(),
                                             MPI_BYTE, type.out()),
                    "MPI_Type_create_hindexed")) {
    failure.check(MPI_Type_commit(type.out()), "MPI_Type_commit");
  }
}

// Runs at least this long that need no conversion are written straight
// from the caller's buffer; shorter ones (the header, small boxes' rows) and
// converted ones are packed into the staging buffer with their file
// neighbours, so they cost one write per buffer instead of one each.
constexpr std::uint64_t kDirectRun = 1ull << 20;

// Independent writes move at most this much per call, and start its
// writeback (EarlyWriteback) before the next.
constexpr std::uint64_t kWritebackChunk = 16ull << 20;

bool direct(const WriteRun& run) {
  return run.from == run.to && run.bytes() >= kDirectRun;
}

// Bytes of `runs` that go through the staging buffer.
std::uint64_t packed_bytes(const std::vector<WriteRun>& runs) {
  std::uint64_t total = 0;
  for (const WriteRun& r : runs) {
    if (!direct(r)) total += r.bytes();
  }
  return total;
}

// This rank's runs, written with independent MPI_File_write_at calls (no
// rank waits for another until the file is synced): direct runs from their
// own memory, runs adjacent in both file and memory as one call; the others
// converted into `staging` and written a buffer at a time. After a failure
// it writes nothing more.
class IndependentWriter {
 public:
  IndependentWriter(MPI_File fh, const std::filesystem::path& path,
                    Failure& failure, unsigned char* staging,
                    std::uint64_t capacity)
      : fh_(fh),
        writeback_(path),
        failure_(failure),
        staging_(staging),
        capacity_(capacity) {}

  void write(const std::vector<WriteRun>& runs) {
    for (std::size_t i = 0; i < runs.size() && !failure_.failed();) {
      if (!direct(runs[i])) {
        pack(runs[i++]);
        continue;
      }
      flush();
      const std::uint64_t offset = runs[i].file_offset;
      const unsigned char* const src = runs[i].src;
      std::uint64_t n = runs[i].bytes();
      for (++i; i < runs.size() && direct(runs[i]) &&
                runs[i].file_offset == offset + n && runs[i].src == src + n;
           ++i) {
        n += runs[i].bytes();
      }
      put(offset, src, n);
    }
    flush();
  }

 private:
  void pack(const WriteRun& r) {
    const std::size_t in_size = dtype_size(r.from);
    const std::size_t out_size = dtype_size(r.to);
    for (std::uint64_t element = 0; element < r.count;) {
      const std::uint64_t at = r.file_offset + element * out_size;
      if (packed_ > 0 && packed_offset_ + packed_ != at) flush();
      if (capacity_ - packed_ < out_size) flush();
      if (packed_ == 0) packed_offset_ = at;
      const std::uint64_t n =
          std::min(r.count - element, (capacity_ - packed_) / out_size);
      cast_elements(r.src + element * in_size, r.from, staging_ + packed_, r.to,
                    n);
      packed_ += n * out_size;
      element += n;
    }
  }

  void flush() {
    if (packed_ == 0) return;
    put(packed_offset_, staging_, packed_);
    packed_ = 0;
  }

  // `n` bytes at `data` to file offset `offset`, kWritebackChunk a call,
  // each chunk's writeback started as soon as it is written.
  void put(std::uint64_t offset, const unsigned char* data, std::uint64_t n) {
    while (n > 0 && !failure_.failed()) {
      const std::uint64_t take = std::min(n, kWritebackChunk);
      MPI_Status status;
      if (failure_.check(
              MPI_File_write_at(fh_, static_cast<MPI_Offset>(offset), data,
                                static_cast<int>(take), MPI_BYTE, &status),
              "MPI_File_write_at")) {
        int written = 0;
        MPI_Get_count(&status, MPI_BYTE, &written);
        if (static_cast<std::uint64_t>(written) != take) {
          failure_.set("MPI_File_write_at wrote " + std::to_string(written) +
                       " of " + std::to_string(take) + " bytes at offset " +
                       std::to_string(offset));
        }
        writeback_.written(offset, take);
      }
      offset += take;
      data += take;
      n -= take;
    }
  }

  MPI_File fh_;
  EarlyWriteback writeback_;
  Failure& failure_;
  unsigned char* staging_;
  std::uint64_t capacity_;
  std::uint64_t packed_offset_ = 0, packed_ = 0;
};

// The collective rounds for small runs: one file view over this rank's
// runs, then MPI_File_write_all of at most `round_bytes` packed bytes per
// rank per call, `rounds` calls on every rank.
void write_rounds(MPI_File fh, const std::vector<WriteRun>& runs,
                  std::uint64_t rounds, std::uint64_t round_bytes,
                  std::vector<unsigned char>& staging, Failure& failure) {
  OwnedType type;
  build_file_type(runs, type, failure);
  const MPI_Datatype view =
      type.get() != MPI_DATATYPE_NULL ? type.get() : MPI_BYTE;
  failure.check(
      MPI_File_set_view(fh, 0, MPI_BYTE, view, "native", MPI_INFO_NULL),
      "MPI_File_set_view");
  RunPacker packer(runs);
  for (std::uint64_t round = 0; round < rounds; ++round) {
    // After a failure this rank still joins every round, with no data. The
    // packer never takes more than the runs hold, which fits `staging`.
    const std::uint64_t n =
        failure.failed() ? 0 : packer.pack(staging.data(), round_bytes);
    MPI_Status status;
    if (failure.check(
            MPI_File_write_all(fh, staging.data(), static_cast<int>(n),
                               MPI_BYTE, &status),
            "MPI_File_write_all") &&
        n > 0) {  // no status is promised for a count of 0
      int written = 0;
      MPI_Get_count(&status, MPI_BYTE, &written);
      if (static_cast<std::uint64_t>(written) != n) {
        failure.set("MPI_File_write_all wrote " + std::to_string(written) +
                    " of " + std::to_string(n) + " bytes");
      }
    }
  }
  if (!failure.failed() && !packer.done())
    failure.set("internal error: data left after the last round");
}

}  // namespace

void write_file_collectively(MPI_Comm mpi_comm,
                             const std::filesystem::path& path,
                             std::uint64_t file_size,
                             const std::vector<WriteRun>& runs,
                             std::uint64_t round_bytes,
                             std::vector<unsigned char>& staging) {
  const Comm comm(mpi_comm);
  Failure failure(path.string());
  const std::uint64_t my_bytes = run_bytes(runs);
  const std::uint64_t all_bytes = comm.allreduce_sum(my_bytes);
  const std::uint64_t all_runs =
      comm.allreduce_sum(static_cast<std::uint64_t>(runs.size()));
  const bool independent = large_runs(all_bytes, all_runs);
  // Independent writes stage only what they pack; rounds stage everything.
  const std::uint64_t staged =
      std::min(round_bytes, independent ? packed_bytes(runs) : my_bytes);
  const std::uint64_t rounds =
      independent ? 0
                  : comm.allreduce_max(rounds_needed(my_bytes, round_bytes));
  if (staging.size() < staged) staging.resize(staged);

  const MpiInfo hints = write_hints(all_bytes, all_runs);
  MPI_File fh = MPI_FILE_NULL;
  failure.check(
      MPI_File_open(mpi_comm, path.c_str(), MPI_MODE_CREATE | MPI_MODE_WRONLY,
                    hints.get(), &fh),
      "MPI_File_open");
  // The rest is collective on the file: if any rank could not open it, none
  // go on (a rank that did keeps its handle open rather than wait in a
  // close the others never reach; open fails alike on all ranks in practice).
  if (comm.allreduce_max(failure.failed() ? 1 : 0) != 0) {
    agree_on_error(comm, failure.error());
    throw Error(ErrorCode::kIo,
                path.string() + ": MPI_File_open failed on another rank");
  }
  failure.check(MPI_File_set_size(fh, static_cast<MPI_Offset>(file_size)),
                "MPI_File_set_size");
  if (independent) {
    IndependentWriter(fh, path, failure, staging.data(), staged).write(runs);
  } else {
    write_rounds(fh, runs, rounds, round_bytes, staging, failure);
  }
  failure.check(MPI_File_sync(fh), "MPI_File_sync");
  failure.check(MPI_File_close(&fh), "MPI_File_close");
  agree_on_error(comm, failure.error());
}

}  // namespace floe::hf
