// The MPI-IO hints of the export's writes, and the choice between writing
// each rank's runs independently and writing them in collective rounds.
#pragma once

#include <cstdint>

#include "io/mpi_file.hpp"

namespace floe::hf {

// True when `bytes` written in `runs` contiguous runs (over all ranks and
// calls) average at least 1 MiB a run. Such runs gain nothing from ROMIO's
// collective buffering, which ships every rank's bytes to one aggregator per
// node that writes for everyone (BENCHMARKS.md, "HF export": 0.30 -> 0.60 of
// raw at 4 ranks with it off): each rank writes its own runs, straight from
// its buffers. Smaller runs keep collective writes, where aggregation pays.
// Collective in effect: every rank must pass the same numbers.
bool large_runs(std::uint64_t bytes, std::uint64_t runs);

// Hints for such a write: with large_runs, ROMIO's collective buffering and
// data sieving off (romio_cb_write and romio_ds_write "disable"), so that
// any collective call still writes each rank's runs where they are; ROMIO's
// defaults otherwise.
MpiInfo write_hints(std::uint64_t bytes, std::uint64_t runs);

}  // namespace floe::hf
