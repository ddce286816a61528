// The collective reading half of `floe diff`: every tensor's values and the
// per-rank blobs of two checkpoints, compared in bounded chunks split
// across the ranks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cli/diff_values.hpp"
#include "core/comm.hpp"
#include "floe/engine.hpp"
#include "floe/manifest.hpp"

namespace floe::cli {

struct DiffOptions {
  Tolerance tolerance;
  // Differences listed, at most. Default: 10.
  std::size_t max_report = 10;
  // Bytes each rank reads from each checkpoint at once. Default: 32 MiB.
  std::uint64_t chunk_bytes = std::uint64_t{32} << 20;
};

// Two records of one tensor with the same dtype and shape.
struct TensorPair {
  const TensorRecord* a = nullptr;
  const TensorRecord* b = nullptr;
};

struct ValueReport {
  std::vector<std::uint64_t> differing;  // elements, per pair
  std::vector<double> max_abs;           // largest |a - b|, per pair
  // The first max_report differences, by pair then global index:
  // "<key>[i,j]: a=<x> b=<y>".
  std::vector<std::string> first;
};

// Collective over `comm`. Reads every pair's tensor from both readers in
// chunks of at most options.chunk_bytes per rank, dealt to the ranks in
// turn (every rank calls read() for every pair, round after round, with
// its chunk or none), and compares the values. Shows progress on a
// terminal. Every rank returns the same report.
ValueReport compare_tensor_values(CheckpointReader& a, CheckpointReader& b,
                                  const std::vector<TensorPair>& pairs,
                                  const DiffOptions& options, const Comm& comm);

struct BlobReport {
  std::uint64_t compared = 0;
  std::vector<std::string> lines;  // one per difference, by rank then name
};

// Collective over `comm`. Pairs the blobs of `ma` and `mb` by (rank, name),
// reports those on one side only, and compares the bytes of the others,
// each pair read by one rank. Every rank returns the same report.
BlobReport compare_blobs(CheckpointReader& a, const Manifest& ma,
                         CheckpointReader& b, const Manifest& mb,
                         const Comm& comm);

}  // namespace floe::cli
