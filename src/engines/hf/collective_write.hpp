// Writing one export file: every rank opens it with MPI-IO and writes its
// own runs, independently when they are large, in collective rounds when
// they are small.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <vector>

#include <mpi.h>

#include "engines/hf/write_runs.hpp"

namespace floe::hf {

// Collective over `comm`. Creates (or truncates to `file_size`) `path` and
// writes every rank's `runs` (sorted, non-overlapping, inside the file),
// then MPI_File_sync and close. When the runs of all ranks average >= 1 MiB
// (large_runs), each rank writes its own independently through a
// FileWriter (a thread of its own, O_DIRECT where possible, two buffers of
// at most 8 MiB and half of `round_bytes`), copying or converting the runs
// into its buffers; no rank waits for another until the file is synced.
// Otherwise the ranks write through a file view with MPI_File_write_all, at
// most `round_bytes` packed bytes per rank per call (every rank makes the
// same number of calls, agreed with one allreduce), so ROMIO can aggregate
// small runs; `staging` is grown as needed for them.
//
// `meanwhile`, if given, runs on the calling thread while this rank's runs
// are written (the copying then runs on a thread of its own), or before the
// rounds; every rank runs it, so it may make MPI calls that all ranks make.
// An exception from it is rethrown after the file is closed.
//
// A write failure on any rank throws the same Error(kIo) on every rank,
// naming the file and the call; no rank is left in a collective.
// `round_bytes` must be in [16, 1 GiB].
void write_file_collectively(MPI_Comm comm, const std::filesystem::path& path,
                             std::uint64_t file_size,
                             const std::vector<WriteRun>& runs,
                             std::uint64_t round_bytes,
                             std::vector<unsigned char>& staging,
                             const std::function<void()>& meanwhile = {});

}  // namespace floe::hf
