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

// What one rank tells the others: before writing, its blobs; after, its
// pieces' checksums (in layout order of its writer pieces), to rank 0.
struct RankContribution {
  std::vector<std::uint64_t> piece_xxh3;
  std::vector<BlobRecord> blobs;  // name, nbytes, xxh3 (offsets unset)

  std::string encode() const;
  static RankContribution decode(const std::string& bytes);
};

struct ExtentPlan {
  // With `records`: every written piece with its offset (checksums 0, for
  // the caller to fill in); without: empty.
  std::vector<TensorRecord> tensors;
  std::vector<std::uint64_t> offsets;  // `rank`'s written pieces', layout order
  std::vector<BlobRecord> blobs;       // every rank's
  std::uint64_t file_size = 0;
};

// Lays out `file`: rank r's extent starts at a multiple of `alignment`
// after rank r-1's; inside it, r's writer pieces in layout order, then its
// blobs (`ranks`' blobs; their checksums are not used). Only the rank that
// writes the manifest needs `records`: every rank's records of 20,000
// tensors cost more than the offsets (a copy of each spec and region).
ExtentPlan plan_extents(const GlobalLayout& layout,
                        const std::vector<RankContribution>& ranks,
                        const std::string& file, std::uint64_t alignment,
                        int rank, bool records);

}  // namespace floe
