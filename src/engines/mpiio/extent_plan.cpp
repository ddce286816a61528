#include "engines/mpiio/extent_plan.hpp"

#include "core/wire.hpp"
#include "floe/error.hpp"

namespace floe {

std::string RankContribution::encode() const {
  WireWriter w;
  w.u64(piece_xxh3.size());
  for (auto v : piece_xxh3) w.u64(v);
  w.u64(blobs.size());
  for (const auto& b : blobs) {
    w.str(b.name);
    w.u64(b.nbytes);
    w.u64(b.xxh3);
  }
  return w.bytes();
}

RankContribution RankContribution::decode(const std::string& bytes) {
  WireReader r(bytes);
  RankContribution out;
  out.piece_xxh3.resize(r.u64());
  for (auto& v : out.piece_xxh3) v = r.u64();
  out.blobs.resize(r.u64());
  for (auto& b : out.blobs) {
    b.name = r.str();
    b.nbytes = r.u64();
    b.xxh3 = r.u64();
  }
  return out;
}

ExtentPlan plan_extents(const GlobalLayout& layout,
                        const std::vector<RankContribution>& ranks,
                        const std::string& file, std::uint64_t alignment) {
  const int world = static_cast<int>(ranks.size());
  ExtentPlan plan;
  plan.tensors.resize(layout.tensors.size());
  for (std::size_t t = 0; t < layout.tensors.size(); ++t) {
    plan.tensors[t].spec = layout.tensors[t].spec;
  }
  std::uint64_t cursor = 0;
  for (int rank = 0; rank < world; ++rank) {
    cursor = (cursor + alignment - 1) / alignment * alignment;
    std::size_t next = 0;  // index into this rank's piece checksums
    for (std::size_t t = 0; t < layout.tensors.size(); ++t) {
      const TensorLayout& tensor = layout.tensors[t];
      const std::size_t element = dtype_size(tensor.spec.dtype);
      for (const auto& piece : tensor.pieces) {
        if (piece.rank != rank || !piece.writer) continue;
        if (next >= ranks[rank].piece_xxh3.size()) {
          throw Error(ErrorCode::kInternal, "rank " + std::to_string(rank) +
                                                " sent too few checksums");
        }
        const std::uint64_t bytes = piece.region.elements() * element;
        plan.tensors[t].pieces.push_back(PieceRecord{
            rank, piece.region, file, cursor, bytes, ranks[rank].piece_xxh3[next++]});
        cursor += bytes;
      }
    }
    for (BlobRecord blob : ranks[rank].blobs) {
      blob.rank = rank;
      blob.file = file;
      blob.offset = cursor;
      cursor += blob.nbytes;
      plan.blobs.push_back(std::move(blob));
    }
  }
  plan.file_size = cursor;
  return plan;
}

}  // namespace floe
