#include "engines/hf/collective_write.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <exception>
#include <new>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "core/comm.hpp"
#include "engines/hf/file_writer.hpp"
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
  // A message that names the file itself; empty: no failure.
  void set_message(const std::string& message) {
    if (message_.empty()) message_ = message;
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

// Bytes of each buffer independent writes go through (and at most
// `round_bytes`, the caller's bound on staging memory, over the buffers).
constexpr std::uint64_t kWriterBuffer = 4ull << 20;

std::uint64_t writer_capacity(std::uint64_t round_bytes) {
  return std::max<std::uint64_t>(
      std::min(round_bytes / FileWriter::kBuffers, kWriterBuffer), 8);
}

// Runs at least this long that need no conversion are written straight
// from the caller's memory, in pieces of kStraightPiece (each one's
// writeback started as soon as it is written).
constexpr std::uint64_t kStraightRun = 1ull << 20;
constexpr std::uint64_t kStraightPiece = 16ull << 20;

// This rank's runs (sorted by file offset) handed to the FileWriter: long
// unconverted ones straight from their memory, the others copied (converted
// where asked) into its buffers; runs adjacent in the file share a buffer,
// so the header and small runs cost one write per buffer, not one each.
// Stops early once the writer has failed.
class IndependentWriter {
 public:
  explicit IndependentWriter(FileWriter& out) : out_(out) {}

  void write(const std::vector<WriteRun>& runs) {
    for (const WriteRun& r : runs) {
      if (out_.failed()) break;
      if (!out_.direct() && r.from == r.to && r.bytes() >= kStraightRun) {
        // Written from the caller's memory, no copy (not for O_DIRECT,
        // which needs aligned memory).
        flush();
        for (std::uint64_t done = 0; done < r.bytes(); done += kStraightPiece) {
          out_.write_from(r.file_offset + done, r.src + done,
                          std::min(kStraightPiece, r.bytes() - done));
        }
        continue;
      }
      const std::size_t in_size = dtype_size(r.from);
      const std::size_t out_size = dtype_size(r.to);
      for (std::uint64_t element = 0; element < r.count;) {
        const std::uint64_t at = r.file_offset + element * out_size;
        if (buffer_ && (offset_ + filled_ != at || room_ - filled_ < out_size))
          flush();
        if (!buffer_) {
          buffer_ = out_.acquire(at);
          offset_ = at;
          room_ = out_.room(at);
          filled_ = 0;
        }
        const std::uint64_t n =
            std::min(r.count - element, (room_ - filled_) / out_size);
        if (r.from == r.to) {
          std::memcpy(buffer_ + filled_, r.src + element * in_size,
                      n * out_size);
        } else {
          cast_elements(r.src + element * in_size, r.from, buffer_ + filled_,
                        r.to, n);
        }
        filled_ += n * out_size;
        element += n;
      }
    }
    flush();
  }

 private:
  void flush() {
    if (!buffer_) return;
    out_.submit(filled_);
    buffer_ = nullptr;
  }

  FileWriter& out_;
  unsigned char* buffer_ = nullptr;
  std::uint64_t offset_ = 0, room_ = 0, filled_ = 0;
};

// Runs `fill` on a thread of its own while the calling thread runs
// `meanwhile` (if any); rethrows the first exception of either once both
// are done. Where no thread can start, runs both here, one after the
// other: `meanwhile` may be collective, and must run on every rank.
void fill_alongside(const std::function<void()>& fill,
                    const std::function<void()>& meanwhile) {
  if (!meanwhile) {
    fill();
    return;
  }
  std::exception_ptr fill_error, meanwhile_error;
  const auto run_fill = [&] {
    try {
      fill();
    } catch (...) {
      fill_error = std::current_exception();
    }
  };
  std::thread filler;
  try {
    filler = std::thread(run_fill);
  } catch (const std::system_error&) {
    run_fill();
  }
  try {
    meanwhile();
  } catch (...) {
    meanwhile_error = std::current_exception();
  }
  if (filler.joinable()) filler.join();
  if (meanwhile_error) std::rethrow_exception(meanwhile_error);
  if (fill_error) std::rethrow_exception(fill_error);
}

// The collective rounds for small runs: one file view over this rank's
// runs, then MPI_File_write_at_all of at most `round_bytes` packed bytes per
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
  std::uint64_t at = 0;  // where this round starts in the view
  for (std::uint64_t round = 0; round < rounds; ++round) {
    // After a failure this rank still joins every round, with no data. The
    // packer never takes more than the runs hold, which fits `staging`.
    const std::uint64_t n =
        failure.failed() ? 0 : packer.pack(staging.data(), round_bytes);
    // At an explicit offset in the view, not MPI_File_write_all
    // (bytes_written).
    MPI_Status status;
    const auto offset = static_cast<MPI_Offset>(at);
    at += n;
    if (failure.check(
            MPI_File_write_at_all(fh, offset, staging.data(), static_cast<int>(n),
                                  MPI_BYTE, &status),
            "MPI_File_write_at_all")) {
      const std::uint64_t written = bytes_written(status, n);
      if (written != n) {
        failure.set("MPI_File_write_at_all wrote " + std::to_string(written) +
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
                             std::vector<unsigned char>& staging,
                             const std::function<void()>& meanwhile) {
  const Comm comm(mpi_comm);
  Failure failure(path.string());
  const std::uint64_t my_bytes = run_bytes(runs);
  const std::uint64_t all_bytes = comm.allreduce_sum(my_bytes);
  const std::uint64_t all_runs =
      comm.allreduce_sum(static_cast<std::uint64_t>(runs.size()));
  const bool independent = large_runs(all_bytes, all_runs);
  // Rounds stage everything; independent writes go through FileWriter.
  const std::uint64_t rounds =
      independent ? 0
                  : comm.allreduce_max(rounds_needed(my_bytes, round_bytes));
  // Agreed on before the file is opened, so no rank leaves alone.
  collectively(comm, [&] {
    if (!independent && staging.size() < std::min(round_bytes, my_bytes)) {
      staging.resize(std::min(round_bytes, my_bytes));
    }
  });

  const MpiInfo hints = write_hints(all_bytes, all_runs);
  check_open_on_every_rank(mpi_comm, path, MpiFile::Mode::kCreate);
  MPI_File fh = MPI_FILE_NULL;
  failure.check(
      MPI_File_open(mpi_comm, path.c_str(), MPI_MODE_CREATE | MPI_MODE_WRONLY,
                    hints.get(), &fh),
      "MPI_File_open");
  // The rest is collective on the file: if any rank could not open it, none
  // go on (a rank that did keeps its handle open rather than wait in a
  // close the others never reach).
  if (comm.allreduce_max(failure.failed() ? 1 : 0) != 0) {
    agree_on_error(comm, failure.error());
    throw Error(ErrorCode::kIo,
                path.string() + ": MPI_File_open failed on another rank");
  }
  failure.check(MPI_File_set_size(fh, static_cast<MPI_Offset>(file_size)),
                "MPI_File_set_size");
  std::exception_ptr meanwhile_error;
  if (independent && !failure.failed()) {
    // The file exists on every rank now (MPI_File_open created it).
    std::optional<FileWriter> writer;
    try {
      writer.emplace(path, writer_capacity(round_bytes));
    } catch (const std::bad_alloc&) {
      failure.set("cannot allocate the write buffers");
    } catch (const std::system_error& e) {
      failure.set(std::string("cannot start the writer threads: ") + e.what());
    }
    if (writer) {
      try {
        fill_alongside([&] { IndependentWriter(*writer).write(runs); },
                       meanwhile);
      } catch (...) {
        meanwhile_error = std::current_exception();
      }
      failure.set_message(writer->finish());
    } else if (meanwhile) {
      // Still run here: it may be collective (the checksums' exchange),
      // and the other ranks run it.
      try {
        meanwhile();
      } catch (...) {
        meanwhile_error = std::current_exception();
      }
    }
  } else {
    if (meanwhile) {
      try {
        meanwhile();
      } catch (...) {
        meanwhile_error = std::current_exception();
      }
    }
    if (!independent) {
      write_rounds(fh, runs, rounds, round_bytes, staging, failure);
    }
  }
  failure.check(MPI_File_sync(fh), "MPI_File_sync");
  failure.check(MPI_File_close(&fh), "MPI_File_close");
  agree_on_error(comm, failure.error());
  if (meanwhile_error) std::rethrow_exception(meanwhile_error);
}

}  // namespace floe::hf
