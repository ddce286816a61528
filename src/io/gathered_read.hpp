// Reading many stretches of files with few system calls, for the readers'
// read_some(): stretches that follow each other in a file, small gaps
// included, go in one preadv.
#pragma once

#include <atomic>
#include <cstddef>
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
// again one by one (CheckpointReader::read_each). Returns how many
// stretches it read (read_scattered calls: one preadv each unless the
// kernel returns less than asked).
std::size_t read_gathered(std::vector<FileRun>& runs);

// How a reader's read_some() calls of more than one request went.
struct GatheredReadStats {
  std::uint64_t batches = 0;           // calls read by read_gathered
  std::uint64_t batched_requests = 0;  // the requests those calls read
  std::uint64_t gathered_reads = 0;    // their stretches (read_gathered's count)
  // Calls read again request by request (CheckpointReader::read_each):
  // read_gathered failed, or a request cannot be read that way.
  std::uint64_t fallbacks = 0;
  std::uint64_t fallback_requests = 0;  // the requests those calls were given
};

// A reader's GatheredReadStats, counted from several threads at once.
class GatheredReadCounter {
 public:
  void count_batch(std::size_t requests, std::size_t gathered_reads) {
    batches_.fetch_add(1, std::memory_order_relaxed);
    batched_requests_.fetch_add(requests, std::memory_order_relaxed);
    gathered_reads_.fetch_add(gathered_reads, std::memory_order_relaxed);
  }
  void count_fallback(std::size_t requests) {
    fallbacks_.fetch_add(1, std::memory_order_relaxed);
    fallback_requests_.fetch_add(requests, std::memory_order_relaxed);
  }
  // A snapshot (each count read on its own).
  GatheredReadStats stats() const {
    GatheredReadStats out;
    out.batches = batches_.load(std::memory_order_relaxed);
    out.batched_requests = batched_requests_.load(std::memory_order_relaxed);
    out.gathered_reads = gathered_reads_.load(std::memory_order_relaxed);
    out.fallbacks = fallbacks_.load(std::memory_order_relaxed);
    out.fallback_requests = fallback_requests_.load(std::memory_order_relaxed);
    return out;
  }

 private:
  std::atomic<std::uint64_t> batches_{0}, batched_requests_{0}, gathered_reads_{0},
      fallbacks_{0}, fallback_requests_{0};
};

}  // namespace floe
