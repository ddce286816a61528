// Reading committed checkpoints without a trainer: open, verify, list.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <mpi.h>

#include "floe/engine.hpp"
#include "floe/manifest.hpp"

namespace floe {

// A committed checkpoint opened for reading.
struct OpenCheckpoint {
  std::filesystem::path dir;
  Manifest manifest;
  std::unique_ptr<CheckpointReader> reader;
};

// Collective. Reads `dir`'s manifest (rank 0 reads, every rank gets it),
// checks the files' sizes against it, and opens it with the reader of the
// engine that wrote it. Throws the same Error on every rank: kNotFound when
// `dir` has no manifest, kCorrupt naming the file when one is missing or its
// size differs (a truncated file). `check_structure`, `direct_io`: see
// ReadContext.
OpenCheckpoint open_checkpoint(const std::filesystem::path& dir, MPI_Comm comm,
                               FileSystem& fs = *posix_file_system(),
                               bool check_structure = false, bool direct_io = false);

struct VerifyReport {
  std::uint64_t pieces_checked = 0;
  std::uint64_t blobs_checked = 0;
  std::uint64_t bytes_checked = 0;
  // One line per problem, naming the file and the tensor or blob.
  std::vector<std::string> problems;

  bool ok() const { return problems.empty(); }
};

// Called on every rank after each tensor is checked, with the tensors done
// and the total (the blobs count as one last step), e.g. to show progress.
// It must not throw: the other ranks would be left in the next collective.
using VerifyProgress = std::function<void(std::size_t done, std::size_t total)>;

// Collective. Reads every saved piece and blob once, split across the ranks,
// and checks its checksum. Problems found in the data are reported, not
// thrown; an unreadable checkpoint (no manifest, a truncated file) throws
// as open_checkpoint does. Every rank returns the same report.
VerifyReport verify_checkpoint(const std::filesystem::path& dir, MPI_Comm comm,
                               FileSystem& fs = *posix_file_system(),
                               const VerifyProgress& progress = {});

}  // namespace floe
