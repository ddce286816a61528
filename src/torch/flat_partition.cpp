// FlatPartition: ZeRO-1's cut of the flattened parameters into one slice per
// rank. Kept apart from the adapter so it compiles without LibTorch.
#include <algorithm>
#include <string>

#include "floe/error.hpp"
#include "floe/torch.hpp"

namespace floe::torch {

FlatPartition::FlatPartition(std::vector<std::uint64_t> numels, int rank,
                             int world_size)
    : numels_(std::move(numels)), rank_(rank), world_size_(world_size) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    throw Error(ErrorCode::kInvalidArgument,
                "FlatPartition: rank " + std::to_string(rank) +
                    " is not in a world of " + std::to_string(world_size));
  }
  offsets_.reserve(numels_.size() + 1);
  offsets_.push_back(0);
  for (const std::uint64_t n : numels_) {
    if (offsets_.back() + n < offsets_.back()) {
      throw Error(ErrorCode::kInvalidArgument,
                  "FlatPartition: the parameters' element count overflows");
    }
    offsets_.push_back(offsets_.back() + n);
  }
}

std::uint64_t FlatPartition::begin(int r) const {
  // floor(total * r / W), without total * r overflowing.
  const auto w = static_cast<std::uint64_t>(world_size_);
  const auto k = static_cast<std::uint64_t>(r);
  return total() / w * k + total() % w * k / w;
}

std::uint64_t FlatPartition::end(int r) const { return begin(r + 1); }

FlatRange FlatPartition::local_range(std::size_t i) const {
  const std::uint64_t lo = std::max(offsets_[i], begin());
  const std::uint64_t hi = std::min(offsets_[i + 1], end());
  if (lo >= hi) return FlatRange{0, 0};
  return FlatRange{lo - offsets_[i], hi - offsets_[i]};
}

}  // namespace floe::torch
