#include "core/state_snapshot.hpp"

#include <cstring>

#include "cuda/device_copy.hpp"
#include "floe/error.hpp"

namespace floe {
namespace {

std::uint64_t aligned(std::uint64_t n) {
  return (n + kStagingAlignment - 1) / kStagingAlignment * kStagingAlignment;
}

bool same_tensor(const TensorShard& a, const TensorShard& b) {
  const TensorSpec& x = a.spec();
  const TensorSpec& y = b.spec();
  return x.group == y.group && x.dtype == y.dtype && x.name == y.name &&
         x.opt_key == y.opt_key && x.shape == y.shape && a.region() == b.region();
}

bool same_scalar_names(const State& a, const State& b) {
  if (a.scalars().size() != b.scalars().size()) return false;
  auto it = b.scalars().begin();
  for (const auto& [name, value] : a.scalars()) {
    if (name != (it++)->first) return false;
  }
  return true;
}

// Copies one shard's bytes: through the copier when either side is on the
// device, with memcpy when both are host memory.
void copy_shard(void* to, const void* from, std::uint64_t bytes, bool from_device,
                bool to_device, DeviceCopier* copier) {
  if (bytes == 0) return;
  if (from_device) {
    copier->copy_to_host_async(to, from, bytes);
  } else if (to_device) {
    copier->copy_to_device_async(to, from, bytes);
  } else {
    std::memcpy(to, from, bytes);
  }
}

}  // namespace

std::uint64_t staging_bytes(const State& state) {
  std::uint64_t total = 0;
  for (const auto& shard : state.tensors()) total += aligned(shard.nbytes());
  return total;
}

bool StateSnapshot::matches(const State& state, const StagingPool& pool) const {
  if (!copy_ || pool_generation_ != pool.generation()) return false;
  const auto& mine = copy_->tensors();
  const auto& theirs = state.tensors();
  if (mine.size() != theirs.size()) return false;
  for (std::size_t i = 0; i < mine.size(); ++i) {
    if (!same_tensor(mine[i], theirs[i])) return false;
  }
  return same_scalar_names(*copy_, state);
}

State& StateSnapshot::prepare(const State& state, StagingPool& pool,
                              DeviceCopier* copier, std::uint64_t limit) {
  pool.reserve(staging_bytes(state), limit, copier);
  if (!matches(state, pool)) {
    // The state's tensors changed (or the pool moved): lay them out afresh.
    // Otherwise the copy from the last save is reused as it is, so a save
    // costs its memcpy and not 20,000 State::add calls.
    copy_.reset();
    auto fresh = std::make_unique<State>();
    std::uint64_t offset = 0;
    for (const auto& shard : state.tensors()) {
      fresh->add(shard.spec(), shard.region(), pool.data() + offset);
      offset += aligned(shard.nbytes());
    }
    for (const auto& [name, value] : state.scalars()) fresh->set_scalar(name, value);
    copy_ = std::move(fresh);
    pool_generation_ = pool.generation();
  }
  for (const auto& [name, value] : state.scalars()) copy_->set_scalar(name, value);
  copy_->clear_blobs();
  for (const auto& [name, bytes] : state.blobs()) copy_->set_blob(name, bytes);
  copy_->metadata() = state.metadata();
  return *copy_;
}

State& StateSnapshot::capture(const State& state, StagingPool& pool,
                              DeviceCopier* copier, std::uint64_t limit) {
  State& copy = prepare(state, pool, copier, limit);
  bool queued = false;
  auto to = copy.tensors().begin();
  for (const auto& shard : state.tensors()) {
    const bool on_device = copier && copier->is_device_pointer(shard.data());
    copy_shard(to->data(), shard.data(), shard.nbytes(), on_device, false, copier);
    queued |= on_device;
    ++to;
  }
  if (queued) copier->synchronize();
  return copy;
}

State& StateSnapshot::mirror(const State& state, StagingPool& pool,
                             DeviceCopier* copier, std::uint64_t limit) {
  return prepare(state, pool, copier, limit);
}

void StateSnapshot::copy_back(State& state, DeviceCopier* copier) const {
  if (!copy_) throw Error(ErrorCode::kInternal, "copy_back() before mirror()");
  bool queued = false;
  auto from = copy_->tensors().cbegin();
  for (auto& shard : state.tensors()) {
    const bool on_device = copier && copier->is_device_pointer(shard.data());
    copy_shard(shard.data(), from->data(), shard.nbytes(), false, on_device, copier);
    queued |= on_device;
    ++from;
  }
  if (queued) copier->synchronize();
  for (const auto& [name, value] : copy_->scalars()) state.set_scalar(name, value);
  state.clear_blobs();
  for (const auto& [name, bytes] : copy_->blobs()) state.set_blob(name, bytes);
  state.metadata() = copy_->metadata();
}

}  // namespace floe
