#include "io/mpi_file.hpp"

#include <algorithm>
#include <limits>

#include "core/comm.hpp"
#include "floe/error.hpp"

namespace floe {
namespace {

// Each MPI transfer moves at most this many bytes (counts are ints, and
// Linux moves at most 0x7ffff000 bytes per write()).
constexpr std::uint64_t kMaxTransfer = 1ull << 30;

void check(int rc, const std::string& what, const std::filesystem::path& path) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw Error(ErrorCode::kIo,
              what + " " + path.string() + ": " + std::string(text, length));
}

// Splits `runs` into rounds of at most kMaxTransfer bytes, cutting runs.
std::vector<std::vector<IoRun>> split_rounds(const std::vector<IoRun>& runs) {
  std::vector<std::vector<IoRun>> rounds(1);
  std::uint64_t used = 0;
  for (IoRun run : runs) {
    while (run.length > 0) {
      if (used == kMaxTransfer) {
        rounds.emplace_back();
        used = 0;
      }
      const std::uint64_t take = std::min(run.length, kMaxTransfer - used);
      rounds.back().push_back(IoRun{run.offset, run.memory, take});
      used += take;
      run.offset += take;
      run.memory = static_cast<const char*>(run.memory) + take;
      run.length -= take;
    }
  }
  if (rounds.back().empty()) rounds.pop_back();
  return rounds;
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
    : path_(path) {
  const int amode = mode == Mode::kCreate ? (MPI_MODE_CREATE | MPI_MODE_WRONLY)
                                          : MPI_MODE_RDONLY;
  check(MPI_File_open(comm, path.c_str(), amode, info.get(), &file_),
        mode == Mode::kCreate ? "cannot create" : "cannot open", path);
}

MpiFile::~MpiFile() {
  if (file_ != MPI_FILE_NULL) MPI_File_close(&file_);
}

void MpiFile::write_all(MPI_Comm comm, const std::vector<IoRun>& runs) {
  const auto rounds = split_rounds(runs);
  const Comm c(comm);
  const std::uint64_t total_rounds = c.allreduce_max(rounds.size());
  for (std::uint64_t r = 0; r < total_rounds; ++r) {
    std::vector<int> lengths;
    std::vector<MPI_Aint> file_offsets, memory;
    if (r < rounds.size()) {
      for (const auto& run : rounds[r]) {
        lengths.push_back(static_cast<int>(run.length));
        file_offsets.push_back(static_cast<MPI_Aint>(run.offset));
        MPI_Aint address = 0;
        MPI_Get_address(run.memory, &address);
        memory.push_back(address);
      }
    }
    const int n = static_cast<int>(lengths.size());
    MPI_Datatype raw_file = MPI_BYTE, raw_memory = MPI_BYTE;
    MpiType file_type, memory_type;
    if (n > 0) {
      check_mpi(MPI_Type_create_hindexed(n, lengths.data(), file_offsets.data(),
                                         MPI_BYTE, &raw_file),
                "MPI_Type_create_hindexed");
      check_mpi(MPI_Type_commit(&raw_file), "MPI_Type_commit");
      file_type = MpiType(raw_file);
      check_mpi(MPI_Type_create_hindexed(n, lengths.data(), memory.data(),
                                         MPI_BYTE, &raw_memory),
                "MPI_Type_create_hindexed");
      check_mpi(MPI_Type_commit(&raw_memory), "MPI_Type_commit");
      memory_type = MpiType(raw_memory);
    }
    check(MPI_File_set_view(file_, 0, MPI_BYTE, n > 0 ? raw_file : MPI_BYTE,
                            "native", MPI_INFO_NULL),
          "cannot set a view of", path_);
    MPI_Status status;
    check(MPI_File_write_at_all(file_, 0, n > 0 ? MPI_BOTTOM : nullptr,
                                n > 0 ? 1 : 0, n > 0 ? raw_memory : MPI_BYTE,
                                &status),
          "cannot write", path_);
  }
  check(MPI_File_set_view(file_, 0, MPI_BYTE, MPI_BYTE, "native", MPI_INFO_NULL),
        "cannot reset the view of", path_);
}

void MpiFile::read_at(std::uint64_t offset, void* memory, std::uint64_t length) {
  auto* out = static_cast<char*>(memory);
  while (length > 0) {
    const std::uint64_t take = std::min(length, kMaxTransfer);
    MPI_Status status;
    check(MPI_File_read_at(file_, static_cast<MPI_Offset>(offset), out,
                           static_cast<int>(take), MPI_BYTE, &status),
          "cannot read", path_);
    int got = 0;
    MPI_Get_count(&status, MPI_BYTE, &got);
    if (static_cast<std::uint64_t>(got) != take) {
      throw Error(ErrorCode::kCorrupt,
                  path_.string() + ": short read at offset " +
                      std::to_string(offset) + " (file truncated?)");
    }
    offset += take;
    out += take;
    length -= take;
  }
}

void MpiFile::sync() { check(MPI_File_sync(file_), "cannot sync", path_); }

void MpiFile::close() {
  check(MPI_File_close(&file_), "cannot close", path_);
  file_ = MPI_FILE_NULL;
}

std::uint64_t MpiFile::size() const {
  MPI_Offset size = 0;
  check(MPI_File_get_size(file_, &size), "cannot get the size of", path_);
  return static_cast<std::uint64_t>(size);
}

}  // namespace floe
