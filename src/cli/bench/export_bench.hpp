// `floe bench --export`: the Hugging Face export of a synthetic state,
// side by side with a raw write of the same bytes in the same run, and each
// rank's peak resident memory against the part of the model it holds.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "floe/state.hpp"

namespace floe::bench {

struct ExportBenchOptions {
  std::filesystem::path dir;    // scratch (emptied)
  int repeat = 3;
  std::uint64_t buffer = 32ull << 20;  // HfExportOptions::round_bytes
  std::string json;             // also write the results here (rank 0)
};

// Collective over MPI_COMM_WORLD. Per repetition, interleaved, each write
// after the page cache of `dir` is dropped (untimed): a raw write of every
// rank's bytes to a new file (fsync; also timed with the removal of the
// previous repetition's file), floe::export_hf of `state` (the in-memory
// export, what a trainer calls), the hf engine's save (export plus read-back
// checksums and the commit protocol), and floe::export_checkpoint_hf of an
// mpiio checkpoint of the same state (`floe export-hf`), with that
// checkpoint's pages dropped first and compared with raw read + raw write.
// Memory: before each export the peak (VmHWM) is reset through
// /proc/self/clear_refs; afterwards each rank reports its peak and its
// resident size before. Prints medians and ratios on rank 0.
void run_export_bench(State& state, const ExportBenchOptions& options);

}  // namespace floe::bench
