// The MPI-IO hints of the export's collective writes.
#pragma once

#include <cstdint>

#include "io/mpi_file.hpp"

namespace floe::hf {

// Hints for writing `bytes` in `runs` contiguous runs (over all ranks and
// calls). When the average run is at least 1 MiB, ROMIO's collective
// buffering and data sieving are turned off (romio_cb_write and
// romio_ds_write "disable"): each rank then writes its own runs straight
// from its buffer, instead of shipping them to one aggregator per node that
// writes for everyone (BENCHMARKS.md, "HF export": 0.30 -> 0.60 of raw at 4
// ranks). Smaller runs keep ROMIO's defaults, where aggregation pays.
// Collective in effect: every rank must pass the same numbers.
MpiInfo write_hints(std::uint64_t bytes, std::uint64_t runs);

}  // namespace floe::hf
