// The hf export: plans it, copies side files, writes every file
// collectively, writes the index, and checksums each tensor's bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include <mpi.h>

#include "engines/hf/shard_plan.hpp"
#include "floe/file_system.hpp"
#include "floe/hf.hpp"
#include "floe/layout.hpp"
#include "floe/state.hpp"

namespace floe::hf {

struct ExportOutcome {
  ExportPlan plan;
  // XXH3-64 of each planned tensor's bytes as they are in its file (empty
  // when write_export was asked for none).
  std::vector<std::uint64_t> xxh3;
  // Every file written, relative to the directory: data files, the index,
  // then the copied files.
  std::vector<std::string> files;
};

// Collective over `comm`. Exports the model tensors of `layout` (from
// exchange_layout; every rank's own `state`) into the existing directory
// `dir`: plan_export, a check that every rank planned the same bytes (a
// rename that differs between ranks is an error), copy_files (rank 0,
// through `fs`), each data file with write_file_collectively, the index
// (rank 0, through `fs`), a check (rank 0, through `fs`) that each file has
// its planned size, then, with `checksums`, each tensor's checksum
// (TensorChecksums: from the writers' buffers while the first file is
// written, or read back at the end). Throws the same Error on every rank.
ExportOutcome write_export(const GlobalLayout& layout, const State& state,
                           MPI_Comm comm, const std::filesystem::path& dir,
                           const HfExportOptions& options, FileSystem& fs,
                           bool checksums = true);

}  // namespace floe::hf
