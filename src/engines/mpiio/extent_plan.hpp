// Where each rank's bytes go in an mpiio data file: one aligned extent per
// rank, holding its written pieces and then its blobs, packed in order.
// Every rank computes the same plan from the layout and one exchange.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "floe/layout.hpp"
#include "floe/manifest.hpp"

namespace floe {

// What one rank tells the others before writing: its pieces' checksums (in
// layout order of its writer pieces) and its blobs.
struct RankContribution {
  std::vector<std::uint64_t> piece_xxh3;
  std::vector<BlobRecord> blobs;  // name, nbytes, xxh3 (offsets unset)

  std::string encode() const;
  static RankContribution decode(const std::string& bytes);
};

struct ExtentPlan {
  std::vector<TensorRecord> tensors;  // every written piece with its offset
  std::vector<BlobRecord> blobs;
  std::uint64_t file_size = 0;
};

// Lays out `file`: rank r's extent starts at a multiple of `alignment`
// after rank r-1's; inside it, r's writer pieces in layout order, then its
// blobs.
ExtentPlan plan_extents(const GlobalLayout& layout,
                        const std::vector<RankContribution>& ranks,
                        const std::string& file, std::uint64_t alignment);

}  // namespace floe
