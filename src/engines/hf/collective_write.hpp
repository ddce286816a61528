// Writing one export file with MPI-IO: every rank opens it, sets a file view
// over its own runs, and moves its bytes in bounded collective rounds.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include <mpi.h>

#include "engines/hf/write_runs.hpp"

namespace floe::hf {

// Collective over `comm`. Creates (or truncates to `file_size`) `path` and
// writes every rank's `runs` (sorted, non-overlapping, inside the file)
// through a file view with MPI_File_write_all, at most `round_bytes` per
// rank per call (every rank makes the same number of calls, agreed with one
// allreduce), using `staging` (at least min(round_bytes, this rank's bytes)
// large) to pack and convert; then MPI_File_sync and close. A failure on any
// rank throws the same Error(kIo) on every rank, naming the file and the MPI
// call; no rank is left in a collective. `round_bytes` must be in
// [16, 1 GiB].
void write_file_collectively(MPI_Comm comm, const std::filesystem::path& path,
                             std::uint64_t file_size,
                             const std::vector<WriteRun>& runs,
                             std::uint64_t round_bytes,
                             std::vector<unsigned char>& staging);

}  // namespace floe::hf
