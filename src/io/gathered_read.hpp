// Reading many stretches of files with few system calls, for the readers'
// read_some(): stretches that follow each other in a file, small gaps
// included, go in one preadv.
#pragma once

#include <cstdint>
#include <vector>

#include "io/read_only_file.hpp"

namespace floe {

// A stretch of a file read into one place in memory.
struct FileRun {
  const ReadOnlyFile* file = nullptr;
  std::uint64_t offset = 0;
  char* memory = nullptr;
  std::uint64_t length = 0;
};

// Appends the run (`length` bytes of `file` at `offset` into `memory`) to
// `runs`, merged into the last one when it continues that in both the file
// and memory.
void append_run(std::vector<FileRun>& runs, const ReadOnlyFile& file,
                std::uint64_t offset, char* memory, std::uint64_t length);

// Reads every run of `runs`, which it sorts by file and offset first (runs
// must not overlap in memory). Each stretch of runs that follow each other
// in a file with gaps of at most 16 KiB is one preadv (the gaps read into
// scratch: a system call costs more than copying that much from the page
// cache, and aligned extents leave such gaps) of at most IOV_MAX parts.
// Throws what ReadOnlyFile::read_scattered throws, which names the file and
// range but not the tensor: a caller that must name it reads the requests
// again one by one (CheckpointReader::read_each).
void read_gathered(std::vector<FileRun>& runs);

}  // namespace floe
