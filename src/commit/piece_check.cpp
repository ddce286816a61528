#include "commit/piece_check.hpp"

#include <algorithm>

#include "core/box_chunks.hpp"
#include "floe/error.hpp"
#include "floe/layout.hpp"
#include "io/checksum.hpp"

namespace floe {
namespace {

// Groups the boxes of the pieces one rank checks, in piece order, into
// reads of at most kCheckReadBytes: a larger box is split into reads of its
// own, smaller ones are joined. `add` takes the boxes of one read.
class ReadGrouper {
 public:
  ReadGrouper(std::uint64_t element, std::vector<std::vector<Box>>* reads)
      : element_(element), reads_(reads) {}

  void add(const Box& box) {
    const std::uint64_t n = box.elements() * element_;
    // A box of no elements (an empty piece, as older manifests list them)
    // is no read: count and plan must agree for a collective reader.
    if (n == 0) return;
    if (n > kCheckReadBytes) {
      end_read();
      split_.clear();
      split_box(box, element_, kCheckReadBytes, split_);
      for (Box& part : split_) {
        ++count_;
        if (reads_) reads_->push_back({std::move(part)});
      }
      return;
    }
    if (open_bytes_ + n > kCheckReadBytes) end_read();
    if (open_bytes_ == 0 && reads_) reads_->emplace_back();
    if (reads_) reads_->back().push_back(box);
    open_bytes_ += n;
  }
  // Ends the read being joined (if any); returns the reads planned.
  std::uint32_t finish() {
    end_read();
    return count_;
  }

 private:
  void end_read() {
    if (open_bytes_ == 0) return;
    ++count_;
    open_bytes_ = 0;
  }

  std::uint64_t element_;
  std::vector<std::vector<Box>>* reads_;  // null: count only
  std::vector<Box> split_;
  std::uint64_t open_bytes_ = 0;
  std::uint32_t count_ = 0;
};

// Adds the boxes of the pieces of `t` that `rank` checks (who[k] == rank)
// to `grouper`, in piece order, and calls `piece(k, bytes)` after each with
// the bytes its boxes hold. What check_pieces reads and what
// collective_check_reads counts, from one walk.
template <typename OnPiece>
void group_pieces(ReadGrouper& grouper, const TensorRecord& t, Assignment::Pieces who,
                  int rank, OnPiece&& piece) {
  const std::uint64_t element = dtype_size(t.spec.dtype);
  for (std::size_t k = 0; k < t.pieces.size(); ++k) {
    if (who[k] != rank) continue;
    std::uint64_t bytes = 0;
    for (const Box& box : t.pieces[k].region.boxes(t.spec.shape)) {
      grouper.add(box);
      bytes += box.elements() * element;
    }
    piece(k, bytes);
  }
}

}  // namespace

std::string describe_piece(const TensorRecord& t, const PieceRecord& p) {
  return "checksum mismatch in " + p.file + " for tensor \"" + t.spec.key() +
         "\" (piece " + p.region.to_string() + " written by rank " +
         std::to_string(p.rank) + ")";
}

std::vector<std::uint32_t> collective_check_reads(
    const CheckpointReader& reader, const std::vector<TensorRecord>& tensors,
    const Assignment& who, const Comm& comm, const std::function<bool(std::size_t)>& checked) {
  if (reader.reads_independently()) return {};
  // This rank's count, as its own plan makes it; the allreduce takes the
  // most. `checked` is the same on every rank: with nothing checked, no
  // rank reduces.
  std::vector<std::uint32_t> calls(tensors.size(), 0);
  bool any = false;
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    if (!checked(t)) continue;
    any = true;
    ReadGrouper grouper(dtype_size(tensors[t].spec.dtype), nullptr);
    group_pieces(grouper, tensors[t], who[t], comm.rank(), [](std::size_t, std::uint64_t) {});
    calls[t] = std::max<std::uint32_t>(1, grouper.finish());
  }
  if (any) comm.allreduce_max(calls);
  return calls;
}

void check_pieces(CheckpointReader& reader, const TensorRecord& t, Assignment::Pieces who,
                  int rank, std::uint32_t calls, PageBytes& buffer,
                  std::vector<std::string>& problems, std::uint64_t& pieces,
                  std::uint64_t& bytes, std::uint32_t& reads) {
  const std::uint64_t element = dtype_size(t.spec.dtype);
  std::vector<std::vector<Box>> planned;
  std::vector<const PieceRecord*> mine;
  std::vector<std::uint64_t> sizes;  // each piece's bytes, as its boxes give them
  ReadGrouper grouper(element, &planned);
  group_pieces(grouper, t, who, rank, [&](std::size_t k, std::uint64_t bytes) {
    mine.push_back(&t.pieces[k]);
    sizes.push_back(bytes);
  });
  grouper.finish();

  // The pieces in order, each hashed as its bytes go by; a piece may span
  // reads, and a read hold several pieces.
  std::size_t next = 0;
  std::uint64_t left = 0;
  Xxh3Stream hash;
  const auto finish_piece = [&](std::size_t i) {
    if (hash.digest() != mine[i]->xxh3) problems.push_back(describe_piece(t, *mine[i]));
    ++pieces;
    bytes += mine[i]->nbytes;
    hash = Xxh3Stream();
  };
  // Pieces of no bytes complete at once.
  const auto skip_empty = [&] {
    while (next < mine.size() && sizes[next] == 0) finish_piece(next++);
    left = next < mine.size() ? sizes[next] : 0;
  };
  skip_empty();
  for (const std::vector<Box>& read : planned) {
    std::uint64_t n = 0;
    for (const Box& box : read) n += box.elements() * element;
    buffer.resize(n);
    ++reads;
    reader.read(t, read, buffer.data());
    std::uint64_t at = 0;
    while (at < n) {
      // The pieces' sizes come from the same boxes as the reads'.
      if (next == mine.size()) {
        throw Error(ErrorCode::kInternal, "check_pieces: bytes past the last piece");
      }
      const std::uint64_t take = std::min(left, n - at);
      hash.update(buffer.data() + at, take);
      at += take;
      left -= take;
      if (left == 0) {
        finish_piece(next++);
        skip_empty();
      }
    }
  }
  while (reads < calls) {
    ++reads;
    reader.read(t, {}, nullptr);
  }
}

void idle_read(CheckpointReader& reader, const TensorRecord& t, std::uint32_t calls) {
  for (std::uint32_t i = 0; i < calls; ++i) {
    try {
      reader.read(t, {}, nullptr);
    } catch (...) {
      // This rank already has its error; the agreement reports it.
    }
  }
}

}  // namespace floe
