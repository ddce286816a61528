// Writing one export file with MPI-IO: every rank opens it and writes its
// own runs, large ones straight from its buffers, small ones packed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include <mpi.h>

#include "engines/hf/write_runs.hpp"

namespace floe::hf {

// Collective over `comm`. Creates (or truncates to `file_size`) `path` and
// writes every rank's `runs` (sorted, non-overlapping, inside the file),
// then MPI_File_sync and close. When the runs of all ranks average >= 1 MiB
// (large_runs), each rank writes its own with independent
// MPI_File_write_at calls: a run of >= 1 MiB that needs no conversion
// straight from its buffer, the others converted and packed into `staging`
// (at most `round_bytes` of it). Otherwise the ranks write through a file
// view with MPI_File_write_all, at most `round_bytes` packed bytes per rank
// per call (every rank makes the same number of calls, agreed with one
// allreduce), so ROMIO can aggregate small runs. `staging` is grown as
// needed. A failure on any rank throws the same Error(kIo) on every rank,
// naming the file and the MPI call; no rank is left in a collective.
// `round_bytes` must be in [16, 1 GiB].
void write_file_collectively(MPI_Comm comm, const std::filesystem::path& path,
                             std::uint64_t file_size,
                             const std::vector<WriteRun>& runs,
                             std::uint64_t round_bytes,
                             std::vector<unsigned char>& staging);

}  // namespace floe::hf
