#include "floe/layout.hpp"

#include <algorithm>
#include <unordered_map>

#include "core/comm.hpp"
#include "core/layout_cache.hpp"
#include "core/shape_text.hpp"
#include "core/wire.hpp"
#include "floe/error.hpp"

namespace floe {
namespace {

void write_region(WireWriter& w, const Region& region) {
  w.u8(region.kind() == Region::Kind::kBox ? 0 : 1);
  w.u8(region.is_replicated() ? 1 : 0);
  if (region.kind() == Region::Kind::kFlatRange) {
    w.u64(region.as_flat().begin);
    w.u64(region.as_flat().end);
    return;
  }
  const Box& box = region.as_box();
  w.u64(box.offset.size());
  for (auto v : box.offset) w.u64(v);
  for (auto v : box.extent) w.u64(v);
}

Region read_region(WireReader& r) {
  const bool flat = r.u8() == 1;
  const bool replicated = r.u8() == 1;
  Region region;
  if (flat) {
    const auto begin = r.u64();
    region = Region::flat(FlatRange{begin, r.u64()});
  } else {
    Box box;
    box.offset.resize(r.u64());
    box.extent.resize(box.offset.size());
    for (auto& v : box.offset) v = r.u64();
    for (auto& v : box.extent) v = r.u64();
    region = Region::box(std::move(box));
  }
  return replicated ? region.replicated() : region;
}

// A rank's message: the size of its specs, its specs (count, then each
// tensor's group, name, optimizer key, dtype and shape), then its regions
// in the same order. Specs apart from regions let a rank whose tensor list
// is rank 0's, byte for byte (the usual case), be told by one comparison.
std::string encode(const State& state) {
  WireWriter specs;
  specs.u64(state.tensors().size());
  for (const auto& shard : state.tensors()) {
    const TensorSpec& spec = shard.spec();
    specs.u8(static_cast<std::uint8_t>(spec.group));
    specs.str(spec.name);
    specs.str(spec.opt_key);
    specs.u8(static_cast<std::uint8_t>(spec.dtype));
    specs.u64(spec.shape.size());
    for (auto d : spec.shape) specs.u64(d);
  }
  WireWriter out;
  out.u64(specs.bytes().size());
  std::string message = out.bytes() + specs.bytes();
  WireWriter regions;
  for (const auto& shard : state.tensors()) write_region(regions, shard.region());
  return message + regions.bytes();
}

// Marks writers and checks that the written pieces tile the tensor exactly.
// The pieces hold elements (gather_encoded leaves empty regions out), so no
// engine writes or lists a piece of 0 bytes.
void settle(TensorLayout& tensor) {
  for (std::size_t i = 0; i < tensor.pieces.size(); ++i) {
    Piece& p = tensor.pieces[i];
    p.writer = true;
    if (!p.region.is_replicated()) continue;
    for (std::size_t j = 0; j < i; ++j) {
      if (tensor.pieces[j].region == p.region) {
        p.writer = false;
        break;
      }
    }
  }
  // Written boxes, sorted by their first offset, must not overlap; with no
  // overlap, summing to the tensor's size means they cover it. A box
  // region's box is used where it is (no copy: settle runs for every tensor
  // of every save); only flat ranges are split into boxes.
  // The flat ranges' boxes, a vector per range: moving a vector keeps its
  // elements where they are.
  std::vector<std::vector<Box>> split;
  std::vector<std::pair<const Box*, int>> boxes;
  std::uint64_t covered = 0;
  const auto add = [&](const Box& b, int rank) {
    covered += b.elements();
    if (!b.empty()) boxes.emplace_back(&b, rank);
  };
  for (const auto& p : tensor.pieces) {
    if (!p.writer) continue;
    if (p.region.kind() == Region::Kind::kBox) {
      add(p.region.as_box(), p.rank);
      continue;
    }
    for (const Box& b : split.emplace_back(p.region.boxes(tensor.spec.shape))) {
      add(b, p.rank);
    }
  }
  if (!tensor.spec.shape.empty()) {
    std::sort(boxes.begin(), boxes.end(), [](const auto& a, const auto& b) {
      return a.first->offset[0] < b.first->offset[0];
    });
  }
  for (std::size_t i = 0; i < boxes.size(); ++i) {
    const Box& a = *boxes[i].first;
    const std::uint64_t a_end = a.offset.empty() ? 1 : a.offset[0] + a.extent[0];
    for (std::size_t j = i + 1; j < boxes.size(); ++j) {
      const Box& b = *boxes[j].first;
      if (!b.offset.empty() && b.offset[0] >= a_end) break;
      if (intersect(a, b)) {
        throw Error(ErrorCode::kMismatch,
                    "tensor \"" + tensor.spec.key() + "\": the regions of ranks " +
                        std::to_string(boxes[i].second) + " and " +
                        std::to_string(boxes[j].second) +
                        " overlap; mark regions that several ranks hold as "
                        "replicated (identical on each)");
      }
    }
  }
  const std::uint64_t total = num_elements(tensor.spec.shape);
  if (covered != total) {
    throw Error(ErrorCode::kMismatch,
                "tensor \"" + tensor.spec.key() + "\": the ranks' regions cover " +
                    std::to_string(covered) + " of its " + std::to_string(total) +
                    " elements; every element must be held by some rank");
  }
}

}  // namespace

std::vector<const Piece*> TensorLayout::writers() const {
  std::vector<const Piece*> out;
  for (const auto& p : pieces) {
    if (p.writer) out.push_back(&p);
  }
  return out;
}

long GlobalLayout::find(const std::string& key) const {
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].spec.key() == key) return static_cast<long>(i);
  }
  return -1;
}

namespace {

// gather_layout of the ranks' messages (encode()), this rank's `mine`.
GlobalLayout gather_encoded(const std::string& mine, MPI_Comm mpi_comm) {
  const Comm comm(mpi_comm);
  const auto all = comm.allgather_bytes(mine);

  GlobalLayout layout;
  layout.world_size = comm.size();
  // Ranks usually list the same tensors in the same order: tensor t of a
  // rank is first compared, in place in the message, with the layout's
  // tensor t, and only tensors found elsewhere are looked up by key, in an
  // index built at the first such one. A state of many tensors then costs
  // one hash lookup per piece at most, and no allocation but its region's
  // (at 20,000 tensors and 4 ranks, decoding every spec into strings was
  // half of a save's instructions). A rank's own list has each key once
  // (State refuses duplicates).
  std::unordered_map<std::string, std::size_t> index;
  bool indexed = false;
  // The rank that listed each tensor first (an error names it).
  std::vector<int> first_rank;
  // A region of no elements is no piece: in a ZeRO-like partition most of
  // a tensor's regions are empty, and at 1,024 ranks and 1,000 tensors
  // keeping them held ~1M pieces (152 bytes each) on every rank.
  const auto add_piece = [&](std::size_t at, int rank, Region region) {
    if (region.elements() == 0) return;
    layout.tensors[at].pieces.push_back(Piece{rank, std::move(region), true});
  };
  const auto add_tensor = [&](TensorSpec spec, int rank) {
    if (indexed) index.emplace(spec.key(), layout.tensors.size());
    first_rank.push_back(rank);
    layout.tensors.push_back(TensorLayout{std::move(spec), {}});
    // Room for a piece from each rank where every rank holds every tensor
    // (ZeRO, dim-0 shards), up to 8: pipeline stages hold few tensors each.
    layout.tensors.back().pieces.reserve(static_cast<std::size_t>(std::min(comm.size(), 8)));
    return layout.tensors.size() - 1;
  };
  Shape shape;  // the current spec's, reused from tensor to tensor
  std::string_view first_specs;  // rank 0's
  for (int rank = 0; rank < comm.size(); ++rank) {
    WireReader message(all[rank]);
    const std::string_view specs = message.take(message.u64());
    WireReader r(specs);
    WireReader regions(message.rest());
    const std::uint64_t count = r.u64();
    if (rank == 0) {
      layout.tensors.reserve(count);
      first_specs = specs;
    } else if (specs == first_specs) {
      // Rank 0's tensors, in its order: only the regions are new.
      for (std::uint64_t t = 0; t < count; ++t) add_piece(t, rank, read_region(regions));
      continue;
    }
    for (std::uint64_t t = 0; t < count; ++t) {
      const auto group = static_cast<TensorGroup>(r.u8());
      const std::string_view name = r.str_view();
      const std::string_view opt_key = r.str_view();
      const auto dtype = static_cast<DType>(r.u8());
      shape.resize(r.u64());
      for (auto& d : shape) d = r.u64();
      Region region = read_region(regions);
      const auto spec = [&] {
        TensorSpec out;
        out.group = group;
        out.name = name;
        out.opt_key = opt_key;
        out.dtype = dtype;
        out.shape = shape;
        return out;
      };
      std::size_t at = layout.tensors.size();
      bool added = false;
      if (rank == 0) {
        at = add_tensor(spec(), rank);
        added = true;
      } else if (t < layout.tensors.size() && layout.tensors[t].spec.group == group &&
                 layout.tensors[t].spec.name == name &&
                 layout.tensors[t].spec.opt_key == opt_key) {
        at = t;
      } else {
        if (!indexed) {
          index.reserve(2 * layout.tensors.size());
          for (std::size_t i = 0; i < layout.tensors.size(); ++i) {
            index.emplace(layout.tensors[i].spec.key(), i);
          }
          indexed = true;
        }
        const auto it = index.find(spec().key());
        if (it != index.end()) {
          at = it->second;
        } else {
          at = add_tensor(spec(), rank);
          added = true;
        }
      }
      if (!added) {
        const TensorSpec& first = layout.tensors[at].spec;
        if (first.dtype != dtype || first.shape != shape) {
          throw Error(
              ErrorCode::kMismatch,
              "tensor \"" + first.key() + "\": rank " + std::to_string(first_rank[at]) +
                  " has " + shape_text(first.dtype, first.shape) +
                  " but rank " + std::to_string(rank) + " has " +
                  shape_text(dtype, shape));
        }
      }
      add_piece(at, rank, std::move(region));
    }
  }
  return layout;
}

GlobalLayout exchange_encoded(const std::string& mine, MPI_Comm comm) {
  GlobalLayout layout = gather_encoded(mine, comm);
  for (auto& tensor : layout.tensors) settle(tensor);
  return layout;
}

}  // namespace

GlobalLayout gather_layout(const State& state, MPI_Comm comm) {
  return gather_encoded(encode(state), comm);
}

GlobalLayout exchange_layout(const State& state, MPI_Comm comm) {
  return exchange_encoded(encode(state), comm);
}

std::shared_ptr<const GlobalLayout> LayoutCache::exchange(const State& state,
                                                          MPI_Comm mpi_comm) {
  const Comm comm(mpi_comm);
  std::string mine = encode(state);
  const bool same = layout_ && layout_->world_size == comm.size() && mine == message_;
  reused_ = comm.allreduce_min(same ? 1 : 0) == 1;
  if (reused_) return layout_;
  // Forgotten first: a failed exchange leaves nothing to reuse.
  layout_.reset();
  message_.clear();
  auto layout = std::make_shared<const GlobalLayout>(exchange_encoded(mine, mpi_comm));
  std::uint64_t pieces = 0;
  for (const auto& tensor : layout->tensors) pieces += tensor.pieces.size();
  // The same on every rank: every rank holds the same layout.
  if (pieces <= max_kept_pieces_) {
    layout_ = layout;
    message_ = std::move(mine);
  }
  return layout;
}

}  // namespace floe
