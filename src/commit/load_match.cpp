#include "commit/load_match.hpp"

#include <string>
#include <unordered_map>

#include "core/shape_text.hpp"
#include "floe/error.hpp"
#include "floe/layout.hpp"

namespace floe {
namespace {

// Tensors of every rank's layout by key, for explaining a state that does
// not match: O(1) finds, so 20,000 tensors cost 20,000 lookups, not 20,000
// squared.
using LayoutIndex = std::unordered_map<std::string, const TensorLayout*>;

LayoutIndex index_of(const GlobalLayout& layout) {
  LayoutIndex out;
  out.reserve(layout.tensors.size());
  for (const auto& t : layout.tensors) out.emplace(t.spec.key(), &t);
  return out;
}

// Whether `a` and `b` hold the same elements in the same order (equal
// Region::boxes); two boxes compare without building the lists.
bool same_boxes(const Region& a, const Region& b, const Shape& shape) {
  if (a.kind() == Region::Kind::kBox && b.kind() == Region::Kind::kBox) {
    return a.as_box() == b.as_box();
  }
  return a.boxes(shape) == b.boxes(shape);
}

// Finds every state tensor's shard by the manifest's keys: true when each
// has a record of its dtype and shape and, unless extra tensors are
// allowed, every record is asked for by some rank. `shards[t]` is this
// rank's shard of tensor t (or null).
bool names_match(const Manifest& manifest, const std::vector<std::string>& keys,
                 State& state, const LayoutIndex& asked, const LoadOptions& options,
                 std::vector<TensorShard*>& shards) {
  std::size_t found = 0;
  for (std::size_t t = 0; t < manifest.tensors.size(); ++t) {
    const TensorSpec& spec = manifest.tensors[t].spec;
    TensorShard* shard = shards[t] = state.find(keys[t]);
    if (shard) {
      ++found;
      if (shard->spec().dtype != spec.dtype || shard->spec().shape != spec.shape) return false;
    }
    if (!options.allow_extra_tensors && !asked.count(keys[t])) return false;
  }
  return found == state.tensors().size();
}

// Throws the first problem names_match found, naming the tensor.
void explain_names(const Manifest& manifest, const State& state,
                   const LayoutIndex& asked_index, const OpenCheckpoint& checkpoint,
                   const LoadOptions& options) {
  std::unordered_map<std::string, const TensorRecord*> records;
  for (const auto& r : manifest.tensors) records.emplace(r.spec.key(), &r);
  for (const auto& shard : state.tensors()) {
    const TensorSpec& spec = shard.spec();
    auto it = records.find(spec.key());
    const TensorRecord* record = it == records.end() ? nullptr : it->second;
    if (!record) {
      throw Error(ErrorCode::kMismatch, "tensor \"" + spec.key() +
                                            "\" is not in checkpoint " +
                                            checkpoint.dir.string());
    }
    if (record->spec.dtype != spec.dtype || record->spec.shape != spec.shape) {
      throw Error(ErrorCode::kMismatch,
                  "tensor \"" + spec.key() + "\": checkpoint " +
                      checkpoint.dir.string() + " has " +
                      shape_text(record->spec.dtype, record->spec.shape) +
                      ", the state has " + shape_text(spec.dtype, spec.shape));
    }
  }
  if (options.allow_extra_tensors) return;
  for (const auto& record : manifest.tensors) {
    if (!asked_index.count(record.spec.key())) {
      throw Error(ErrorCode::kMismatch,
                  "checkpoint " + checkpoint.dir.string() + " has tensor \"" +
                      record.spec.key() +
                      "\" that no rank's state has (LoadOptions::"
                      "allow_extra_tensors skips such tensors)");
    }
  }
}

}  // namespace

ShardFinder::ShardFinder(State& state) : shards_(state.tensors()), state_(state) {}

TensorShard* ShardFinder::find(const TensorSpec& spec) {
  if (next_ < shards_.size()) {
    const TensorSpec& candidate = shards_[next_].spec();
    if (candidate.group == spec.group && candidate.name == spec.name &&
        candidate.opt_key == spec.opt_key) {
      return &shards_[next_++];
    }
  }
  ++finds_;
  TensorShard* shard = state_.find(spec.key());
  if (shard) {
    // Resume after it: the tensors that follow it in the manifest most
    // likely follow it in the state too.
    if (position_.empty()) {
      position_.reserve(shards_.size());
      for (std::size_t i = 0; i < shards_.size(); ++i) position_.emplace(&shards_[i], i);
    }
    next_ = position_.at(shard) + 1;
  }
  return shard;
}

// Pieces some rank loads as they are (`inline_ranks`; null for verify,
// which loads nothing) are checked by that rank; the others go round the
// ranks in turn.
Assignment assign_checks(const Manifest& manifest, const InlineRanks* inline_ranks,
                         int world_size) {
  std::size_t pieces = 0;
  for (const auto& record : manifest.tensors) pieces += record.pieces.size();
  Assignment out(manifest.tensors.size(), pieces);
  int turn = 0;
  std::size_t at = 0;
  for (std::size_t t = 0; t < manifest.tensors.size(); ++t) {
    const TensorRecord& record = manifest.tensors[t];
    for (std::size_t k = 0; k < record.pieces.size(); ++k, ++at) {
      const std::uint32_t rank = inline_ranks ? (*inline_ranks)[at] : kNoRank;
      out.add_piece(rank != kNoRank ? -1 - static_cast<int>(rank) : turn++ % world_size);
    }
    out.end_tensor();
  }
  return out;
}

LoadMatch match_state(const OpenCheckpoint& checkpoint, State& state, const Comm& comm,
                      bool verify, const LoadOptions& options) {
  const Manifest& manifest = checkpoint.manifest;
  const std::size_t count = manifest.tensors.size();
  LoadMatch out;
  out.shards.resize(count);
  std::vector<std::uint32_t> flags;
  collectively(comm, [&] {
    std::size_t pieces = 0;
    if (verify) {
      for (const auto& record : manifest.tensors) pieces += record.pieces.size();
    }
    flags.assign(1 + count + pieces, kNoRank);
    std::size_t found = 0, piece_at = 1 + count;
    bool names_ok = true;
    ShardFinder finder(state);
    for (std::size_t t = 0; t < count; ++t) {
      const TensorRecord& record = manifest.tensors[t];
      TensorShard* shard = out.shards[t] = finder.find(record.spec);
      const std::size_t first_piece = piece_at;
      if (verify) piece_at += record.pieces.size();
      if (!shard) continue;
      ++found;
      flags[1 + t] = 0;
      if (shard->spec().dtype != record.spec.dtype ||
          shard->spec().shape != record.spec.shape) {
        names_ok = false;
        continue;
      }
      if (!verify) continue;
      for (std::size_t k = 0; k < record.pieces.size(); ++k) {
        if (same_boxes(shard->region(), record.pieces[k].region, record.spec.shape)) {
          flags[first_piece + k] = static_cast<std::uint32_t>(comm.rank());
        }
      }
    }
    flags[0] = names_ok && found == state.tensors().size() ? 1 : 0;
  });
  comm.allreduce_min(flags);

  bool matched = flags[0] == 1;
  for (std::size_t t = 0; t < count && matched && !options.allow_extra_tensors; ++t) {
    matched = flags[1 + t] == 0;
  }
  if (!matched) {
    const GlobalLayout asked = gather_layout(state, comm.get());
    collectively(comm, [&] {
      std::vector<std::string> keys;
      keys.reserve(count);
      for (const auto& record : manifest.tensors) keys.push_back(record.spec.key());
      const LayoutIndex asked_index = index_of(asked);
      if (!names_match(manifest, keys, state, asked_index, options, out.shards)) {
        explain_names(manifest, state, asked_index, checkpoint, options);
        throw Error(ErrorCode::kInternal, "load: a tensor check failed without a reason");
      }
    });
    throw Error(ErrorCode::kInternal,
                "load: the tensor checks of the state disagree with each other");
  }
  if (verify) {
    const InlineRanks inline_ranks(flags.begin() + 1 + static_cast<std::ptrdiff_t>(count),
                                   flags.end());
    out.who = assign_checks(manifest, &inline_ranks, comm.size());
  }
  return out;
}

}  // namespace floe
