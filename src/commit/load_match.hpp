// Matching a load's state with a checkpoint's manifest (load), and who
// checks each piece's checksum (load and verify).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

#include "core/comm.hpp"
#include "floe/checkpoint.hpp"
#include "floe/engine.hpp"

namespace floe {

// Who checks each piece: a rank whose load region equals the piece checks
// the bytes it loaded for free; other pieces are read once more by ranks in
// turn. Indexed [tensor][piece]; -1 - r means "rank r, inline". One list
// for all pieces (a list per tensor cost an allocation per tensor: ~300
// instructions each at 20,000 tensors).
class Assignment {
 public:
  // One tensor's pieces' checkers, valid while the Assignment lives.
  class Pieces {
   public:
    Pieces(const int* first, std::size_t count) : first_(first), count_(count) {}
    const int* begin() const { return first_; }
    const int* end() const { return first_ + count_; }
    std::size_t size() const { return count_; }
    int operator[](std::size_t k) const { return first_[k]; }

   private:
    const int* first_;
    std::size_t count_;
  };

  Assignment() = default;
  // Room for `tensors` tensors and `pieces` pieces in all.
  Assignment(std::size_t tensors, std::size_t pieces) {
    start_.reserve(tensors + 1);
    start_.push_back(0);
    who_.reserve(pieces);
  }
  // Appends the next tensor's pieces' checkers, in piece order.
  void add_piece(int who) { who_.push_back(who); }
  // Ends the current tensor (its pieces: those added since the last end).
  void end_tensor() { start_.push_back(who_.size()); }

  std::size_t size() const { return start_.empty() ? 0 : start_.size() - 1; }
  Pieces operator[](std::size_t t) const {
    return Pieces(who_.data() + start_[t], start_[t + 1] - start_[t]);
  }

 private:
  std::vector<int> who_;            // every tensor's pieces, in manifest order
  std::vector<std::size_t> start_;  // tensor t's: [start_[t], start_[t + 1])
};

// No rank loads exactly this piece (see InlineRanks).
constexpr std::uint32_t kNoRank = UINT32_MAX;

// For each piece of each manifest tensor, flattened in manifest order: the
// lowest rank whose load region is exactly that piece, or kNoRank.
using InlineRanks = std::vector<std::uint32_t>;

// Pieces some rank loads as they are (`inline_ranks`; null for verify,
// which loads nothing) are checked by that rank; the others go round the
// ranks in turn.
Assignment assign_checks(const Manifest& manifest, const InlineRanks* inline_ranks,
                         int world_size);

// What a load's ranks agreed on: this rank's shard of each manifest tensor
// and, with verify, who checks each piece.
struct LoadMatch {
  std::vector<TensorShard*> shards;  // by manifest tensor; null: none here
  Assignment who;                    // empty without verify
};

// Finds the state's shard of each manifest tensor, asked in manifest order.
// The shard after the last one found is tried first, by comparing names: a
// state usually lists its tensors in the manifest's order (the program that
// saved it built it alike), and one comparison costs far less than
// State::find, whose ordered index is cold by then (20,000 tensors: ~15
// nodes and keys to fetch a lookup). Anything else goes to State::find, and
// the next try is the shard after the one it found: a state whose tensors
// are in the manifest's order in stretches (blocks swapped, some left out)
// pays one State::find per jump between stretches, and one per manifest
// tensor it lacks. The first State::find that finds a shard also indexes
// the shards by address once (O(n)). Equal names mean equal keys, so the
// answer is State::find's in every case.
class ShardFinder {
 public:
  explicit ShardFinder(State& state);

  // The shard of the tensor `spec` names, or null.
  TensorShard* find(const TensorSpec& spec);

  // How many calls of find() went to State::find.
  std::size_t finds() const { return finds_; }

 private:
  std::deque<TensorShard>& shards_;
  State& state_;
  std::size_t next_ = 0;
  std::size_t finds_ = 0;
  std::unordered_map<const TensorShard*, std::size_t> position_;  // see find()
};

// Collective. Matches the state with the manifest in one allreduce (the
// minimum, element-wise) of: [0] 0 when this rank's names fail; [1 + t] 0
// when this rank has tensor t; then, with verify, per piece this rank's
// number when its region is exactly the piece (kNoRank if not). Anything
// wrong is then explained the thorough way, with every rank's layout
// (gather_layout, names_match, explain_names), so a bad state fails with the
// same error as before this shortcut.
LoadMatch match_state(const OpenCheckpoint& checkpoint, State& state, const Comm& comm,
                      bool verify, const LoadOptions& options);

}  // namespace floe
