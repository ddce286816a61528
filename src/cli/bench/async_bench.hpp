// `floe bench --async`: how long an asynchronous save() blocks the trainer,
// side by side with a plain memcpy of the same state, interleaved over
// repetitions; the background write's remaining time is reported apart.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "floe/state.hpp"

namespace floe::bench {

struct AsyncBenchOptions {
  std::filesystem::path dir;         // scratch: one output dir per engine
  std::vector<std::string> engines;  // resumable engines, saved with async: true
  int repeat = 3;
  std::optional<std::filesystem::path> json;  // also write the results here
};

// Collective over MPI_COMM_WORLD (MPI_THREAD_MULTIPLE). For each repetition:
// a memcpy of every shard into a buffer allocated and touched beforehand,
// then each engine's save() (the time it blocks), then its wait() (timed
// apart). Every time is the slowest rank's. Prints medians and the ratio
// of save() blocking to memcpy on rank 0, then the trainer thread's own
// usage during each memcpy and save() (getrusage(RUSAGE_THREAD): CPU
// seconds, page faults, involuntary and voluntary context switches, each
// the largest over the ranks), which tells a save() that copies from one
// that waits.
void run_async_bench(State& state, const AsyncBenchOptions& options);

}  // namespace floe::bench
