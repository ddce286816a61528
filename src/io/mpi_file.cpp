#include "io/mpi_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>

#include "core/comm.hpp"
#include "core/page_memory.hpp"
#include "floe/error.hpp"
#include "io/early_writeback.hpp"

namespace floe {
namespace {

// What an open in `mode` failed to do, for messages.
const char* open_failure(MpiFile::Mode mode) {
  return mode == MpiFile::Mode::kCreate ? "cannot create" : "cannot open";
}

void check(int rc, const std::string& what, const std::filesystem::path& path) {
  if (rc == MPI_SUCCESS) return;
  throw Error(ErrorCode::kIo,
              what + " " + path.string() + ": " + mpi_error_text(rc));
}

// Runs shorter than this are copied into a staging buffer and written with
// their file neighbours in one transfer; longer ones go straight from the
// caller's memory.
constexpr std::uint64_t kPackBelow = 1ull << 20;
// write_all moves at most this much per call from the caller's memory and
// then starts the writeback of it, so the device writes one piece while
// the next is copied into the page cache.
constexpr std::uint64_t kWritebackUnit = 32ull << 20;
// The staging buffer for packed runs, reused by every transfer.
constexpr std::uint64_t kPackBytes = 16ull << 20;
// The most bytes one round of write_scattered_all moves per rank.
constexpr std::uint64_t kScatterBytes = 64ull << 20;

// Where runs are packed before a transfer: grows to the largest transfer
// and is never zero-filled, since every byte sent is copied in first
// (vector::resize wrote zeros over the whole 20 MiB of a batched hdf5
// write of 20,000 small tensors, ~1,000 instructions a tensor, before the
// copy wrote them again).
class PackBuffer {
 public:
  char* at_least(std::uint64_t bytes) {
    if (bytes > size_) {
      data_.reset();  // the old bytes are not kept
      data_ = page_block(bytes);
      size_ = bytes;
    }
    return reinterpret_cast<char*>(data_.get());
  }

 private:
  PageBlock data_;
  std::uint64_t size_ = 0;
};

// One transfer: `length` bytes to file offset `offset`, contiguous in the
// file, from runs[first, last) (which continue each other in the file).
// `direct` when they are one contiguous piece of memory too.
struct Segment {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::size_t first = 0, last = 0;
  bool direct = false;
};

// `runs` with each run longer than `most` cut into pieces of at most `most`
// bytes (file offset and memory advancing together).
std::vector<IoRun> split_runs(const std::vector<IoRun>& runs, std::uint64_t most) {
  std::vector<IoRun> out;
  for (IoRun run : runs) {
    while (run.length > 0) {
      const std::uint64_t take = std::min(run.length, most);
      out.push_back(IoRun{run.offset, run.memory, take});
      run.offset += take;
      run.memory = static_cast<const char*>(run.memory) + take;
      run.length -= take;
    }
  }
  return out;
}

// `runs` with each run that continues the one before it in both the file
// and memory joined to it, up to `most` bytes per run.
std::vector<IoRun> join_runs(const std::vector<IoRun>& runs, std::uint64_t most) {
  std::vector<IoRun> out;
  for (const IoRun& run : runs) {
    if (!out.empty()) {
      IoRun& last = out.back();
      if (last.offset + last.length == run.offset &&
          static_cast<const char*>(last.memory) + last.length == run.memory &&
          last.length + run.length <= most) {
        last.length += run.length;
        continue;
      }
    }
    out.push_back(run);
  }
  return out;
}

// Cuts `runs` into segments, each contiguous in the file and moved by one
// MPI_File_write_at_all with contiguous memory: ROMIO writes such a call
// with one pwrite from the caller's buffer, where a derived memory type
// makes it copy everything through a 512 KiB buffer. Runs adjacent in both
// file and memory are joined first (up to kWritebackUnit), so many small
// tensors laid out back to back (an asynchronous save's staging pool) go
// straight from memory like one large one; the small runs left that are
// adjacent in the file share a packed segment. `runs` is rewritten in place
// (split, then joined, at kWritebackUnit).
std::vector<Segment> plan_segments(std::vector<IoRun>& runs) {
  runs = join_runs(split_runs(runs, kWritebackUnit), kWritebackUnit);
  std::vector<Segment> out;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const IoRun& run = runs[i];
    if (!out.empty()) {
      Segment& last = out.back();
      const bool file_next = last.offset + last.length == run.offset;
      if (file_next && !last.direct && run.length < kPackBelow &&
          last.length + run.length <= kPackBytes) {
        last.length += run.length;
        last.last = i + 1;
        continue;
      }
    }
    out.push_back(Segment{run.offset, run.length, i, i + 1, run.length >= kPackBelow});
  }
  return out;
}

}  // namespace

MpiInfo::MpiInfo() { check_mpi(MPI_Info_create(&info_), "MPI_Info_create"); }

MpiInfo::~MpiInfo() {
  if (info_ != MPI_INFO_NULL) MPI_Info_free(&info_);
}

void MpiInfo::set(const std::string& key, const std::string& value) {
  check_mpi(MPI_Info_set(info_, key.c_str(), value.c_str()), "MPI_Info_set");
}

MpiType::~MpiType() {
  if (type_ != MPI_DATATYPE_NULL) MPI_Type_free(&type_);
}

MpiType& MpiType::operator=(MpiType&& other) noexcept {
  if (this != &other) {
    if (type_ != MPI_DATATYPE_NULL) MPI_Type_free(&type_);
    type_ = std::exchange(other.type_, MPI_DATATYPE_NULL);
  }
  return *this;
}

MpiFile::MpiFile(MPI_Comm comm, const std::filesystem::path& path, Mode mode,
                 const MpiInfo& info)
    : comm_(comm), path_(path) {
  const int amode = mode == Mode::kCreate  ? (MPI_MODE_CREATE | MPI_MODE_WRONLY)
                    : mode == Mode::kWrite ? MPI_MODE_WRONLY
                                           : MPI_MODE_RDONLY;
  check_open_on_every_rank(comm, path, mode);
  const int rc = MPI_File_open(comm, path.c_str(), amode, info.get(), &file_);
  // Agreed on: if the open failed on some ranks only, every rank throws.
  // A rank whose open succeeded then keeps its handle (the destructor does
  // not run) rather than wait in a collective close the others never make.
  agree(rc, open_failure(mode));
}

MpiFile::~MpiFile() {
  if (file_ != MPI_FILE_NULL) MPI_File_close(&file_);
}

void MpiFile::write_all(MPI_Comm comm, std::vector<IoRun> runs) {
  const std::vector<Segment> segments = plan_segments(runs);
  const Comm c(comm);
  const std::uint64_t rounds = c.allreduce_max(segments.size());
  EarlyWriteback writeback(path_);
  PackBuffer pack;
  // A rank whose transfer fails keeps joining the remaining rounds with
  // nothing to write, so no rank waits in a collective call; the first
  // error is thrown at the end.
  std::exception_ptr error;
  for (std::uint64_t r = 0; r < rounds; ++r) {
    const void* memory = nullptr;
    std::uint64_t offset = 0, length = 0;
    if (!error && r < segments.size()) {
      const Segment& s = segments[r];
      offset = s.offset;
      length = s.length;
      memory = runs[s.first].memory;
      if (!s.direct) {
        // Without memory for the packing buffer, this rank writes nothing
        // from here on but joins the remaining rounds.
        try {
          char* const packed = pack.at_least(s.length);
          char* at = packed;
          for (std::size_t i = s.first; i < s.last; ++i) {
            std::memcpy(at, runs[i].memory, runs[i].length);
            at += runs[i].length;
          }
          memory = packed;
        } catch (...) {
          error = std::current_exception();
          memory = nullptr;
          offset = length = 0;
        }
      }
    }
    MPI_Status status;
    const int rc = MPI_File_write_at_all(file_, static_cast<MPI_Offset>(offset),
                                         const_cast<void*>(memory),
                                         static_cast<int>(length), MPI_BYTE, &status);
    if (error) continue;
    try {
      check(rc, "cannot write", path_);
      const std::uint64_t wrote = bytes_written(status, length);
      if (wrote != length) {
        throw Error(ErrorCode::kIo, "cannot write " + path_.string() + ": wrote " +
                                        std::to_string(wrote) + " of " +
                                        std::to_string(length) +
                                        " bytes at offset " + std::to_string(offset));
      }
      writeback.written(offset, length);
    } catch (...) {
      error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

void MpiFile::write_scattered_all(MPI_Comm comm, const std::vector<IoRun>& input) {
  // Rounds of runs: [first, last) of `runs`, at most kScatterBytes in all.
  const std::vector<IoRun> runs = split_runs(input, kScatterBytes);
  std::vector<std::pair<std::size_t, std::size_t>> rounds;
  std::uint64_t bytes = 0;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    if (rounds.empty() || bytes + runs[i].length > kScatterBytes) {
      rounds.emplace_back(i, i);
      bytes = 0;
    }
    rounds.back().second = i + 1;
    bytes += runs[i].length;
  }
  const Comm c(comm);
  const std::uint64_t count = c.allreduce_max(rounds.size());
  PackBuffer pack;
  char* packed = nullptr;
  std::vector<int> lengths;
  std::vector<MPI_Aint> offsets;
  std::exception_ptr error;
  for (std::uint64_t r = 0; r < count; ++r) {
    // This rank's view for the round: its runs, or the whole file (and
    // nothing to write) when it has none left.
    MpiType view;
    std::uint64_t length = 0;
    if (!error && r < rounds.size()) {
      // Packing can fail (no memory for the buffer) on this rank alone:
      // it then writes nothing, and joins the remaining rounds.
      try {
        lengths.clear();
        offsets.clear();
        for (std::size_t i = rounds[r].first; i < rounds[r].second; ++i) {
          const IoRun& run = runs[i];
          // Runs that continue each other in the file are one block.
          if (!offsets.empty() &&
              static_cast<std::uint64_t>(offsets.back()) + lengths.back() == run.offset) {
            lengths.back() += static_cast<int>(run.length);
          } else {
            offsets.push_back(static_cast<MPI_Aint>(run.offset));
            lengths.push_back(static_cast<int>(run.length));
          }
          length += run.length;
        }
        packed = pack.at_least(length);
        char* at = packed;
        for (std::size_t i = rounds[r].first; i < rounds[r].second; ++i) {
          std::memcpy(at, runs[i].memory, runs[i].length);
          at += runs[i].length;
        }
        MPI_Datatype type = MPI_DATATYPE_NULL;
        check(MPI_Type_create_hindexed(static_cast<int>(lengths.size()), lengths.data(),
                                       offsets.data(), MPI_BYTE, &type),
              "cannot describe the writes to", path_);
        view = MpiType(type);
        check(MPI_Type_commit(&type), "cannot describe the writes to", path_);
      } catch (...) {
        error = std::current_exception();
        length = 0;
      }
    }
    // Setting the view is collective: every rank sets one every round.
    const int view_rc =
        MPI_File_set_view(file_, 0, MPI_BYTE, length > 0 ? view.get() : MPI_BYTE,
                          "native", MPI_INFO_NULL);
    // At offset 0 of the view, not MPI_File_write_all (bytes_written).
    MPI_Status status;
    const int rc = MPI_File_write_at_all(file_, 0, length > 0 ? packed : nullptr,
                                         static_cast<int>(length), MPI_BYTE, &status);
    if (error) continue;
    try {
      check(view_rc, "cannot set the file view of", path_);
      check(rc, "cannot write", path_);
      const std::uint64_t wrote = bytes_written(status, length);
      if (wrote != length) {
        throw Error(ErrorCode::kIo, "cannot write " + path_.string() + ": wrote " +
                                        std::to_string(wrote) + " of " +
                                        std::to_string(length) + " bytes in " +
                                        std::to_string(lengths.size()) + " runs");
      }
    } catch (...) {
      error = std::current_exception();
    }
  }
  const int reset_rc =
      MPI_File_set_view(file_, 0, MPI_BYTE, MPI_BYTE, "native", MPI_INFO_NULL);
  if (error) std::rethrow_exception(error);
  check(reset_rc, "cannot set the file view of", path_);
}

std::uint64_t bytes_written(const MPI_Status& status, std::uint64_t asked) {
  if (asked == 0) return 0;
  int count = 0;
  MPI_Get_count(&status, MPI_BYTE, &count);
  return count < 0 ? 0 : static_cast<std::uint64_t>(count);
}

void MpiFile::set_size(std::uint64_t bytes) {
  agree(MPI_File_set_size(file_, static_cast<MPI_Offset>(bytes)),
        "cannot set the size of");
}

void MpiFile::sync() { agree(MPI_File_sync(file_), "cannot sync"); }

void MpiFile::close() {
  const int rc = MPI_File_close(&file_);
  file_ = MPI_FILE_NULL;  // not closed again by the destructor, whatever rc
  agree(rc, "cannot close");
}

void check_open_on_every_rank(MPI_Comm comm, const std::filesystem::path& path,
                              MpiFile::Mode mode) {
  collectively(Comm(comm), [&] {
    const int flags = mode == MpiFile::Mode::kCreate  ? (O_WRONLY | O_CREAT)
                      : mode == MpiFile::Mode::kWrite ? O_WRONLY
                                                      : O_RDONLY;
    const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
    if (fd < 0) {
      const int err = errno;
      throw Error(ErrorCode::kIo, std::string(open_failure(mode)) + " " + path.string() +
                                      ": " + std::strerror(err));
    }
    ::close(fd);
  });
}

void MpiFile::agree(int rc, const char* what) const {
  agree_mpi(Comm(comm_), rc, std::string(what) + " " + path_.string());
}

std::uint64_t MpiFile::size() const {
  MPI_Offset size = 0;
  check(MPI_File_get_size(file_, &size), "cannot get the size of", path_);
  return static_cast<std::uint64_t>(size);
}

}  // namespace floe
