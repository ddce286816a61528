#include "floe/layout.hpp"

#include <algorithm>
#include <string_view>
#include <unordered_map>

#include <xxhash.h>

#include "core/comm.hpp"
#include "core/layout_cache.hpp"
#include "core/layout_wire.hpp"
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

namespace layout_wire {

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

std::string_view specs_of(std::string_view message) {
  WireReader r(message);
  return r.take(r.u64());
}

ListKey list_key(std::string_view specs) {
  const XXH128_hash_t hash = XXH3_128bits(specs.data(), specs.size());
  return {hash.low64, hash.high64};
}

std::string part(std::string_view mine, int list_of) {
  WireReader message(mine);
  const std::string_view specs = message.take(message.u64());
  const std::uint64_t count = WireReader(specs).u64();
  WireReader regions(message.rest());
  WireWriter held;
  std::uint64_t n = 0;
  for (std::uint64_t t = 0; t < count; ++t) {
    const Region region = read_region(regions);
    if (region.elements() == 0) continue;
    held.u64(t);
    write_region(held, region);
    ++n;
  }
  WireWriter head;
  if (list_of < 0) {
    head.u8(kOwnList);
    head.str(specs);
  } else {
    head.u8(kListOf);
    head.u64(static_cast<std::uint64_t>(list_of));
  }
  head.u64(n);
  return head.bytes() + held.bytes();
}

PartHead read_head(WireReader& part) {
  PartHead head;
  head.own = part.u8() == kOwnList;
  if (head.own) {
    head.specs = part.str_view();
  } else {
    head.of = part.u64();
  }
  head.held = part.u64();
  return head;
}

int list_of(std::string_view mine, std::string_view first_specs, MPI_Comm mpi_comm) {
  const Comm comm(mpi_comm);
  const std::string_view specs = specs_of(mine);
  const bool follows = specs == first_specs;
  // Each rank's word 0 says whether it has a key (1) or follows rank 0 (0).
  std::vector<std::uint64_t> mine_key{0, 0, 0};
  if (!follows) {
    const ListKey key = list_key(specs);
    mine_key = {1, key[0], key[1]};
  }
  const std::vector<std::uint64_t> keys = comm.allgather(mine_key);
  if (follows) return 0;
  const auto same = [&](int rank) {
    return std::equal(mine_key.begin(), mine_key.end(), keys.begin() + 3 * rank);
  };
  for (int rank = 0; rank < comm.rank(); ++rank) {
    if (same(rank)) return rank;
  }
  return -1;
}

}  // namespace layout_wire

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

// One tensor's spec as encode() wrote it; `shape` is reused from call to
// call (no allocation for shapes of up to Shape's inline size).
struct SpecView {
  TensorGroup group;
  std::string_view name, opt_key;
  DType dtype;

  TensorSpec spec(const Shape& shape) const {
    TensorSpec out;
    out.group = group;
    out.name = name;
    out.opt_key = opt_key;
    out.dtype = dtype;
    out.shape = shape;
    return out;
  }
};

SpecView read_spec(WireReader& r, Shape& shape) {
  SpecView v;
  v.group = static_cast<TensorGroup>(r.u8());
  v.name = r.str_view();
  v.opt_key = r.str_view();
  v.dtype = static_cast<DType>(r.u8());
  shape.resize(r.u64());
  for (auto& d : shape) d = r.u64();
  return v;
}

// gather_layout of the ranks' messages (encode()), this rank's `mine`.
GlobalLayout gather_encoded(const std::string& mine, MPI_Comm mpi_comm) {
  const Comm comm(mpi_comm);
  const std::string first_specs =
      comm.broadcast_bytes(std::string(layout_wire::specs_of(mine)), 0);
  const auto all = comm.allgather_bytes(
      layout_wire::part(mine, layout_wire::list_of(mine, first_specs, mpi_comm)));

  GlobalLayout layout;
  layout.world_size = comm.size();
  // Ranks usually list the same tensors in the same order (they send no
  // specs). Another rank's tensor t is first compared, in place in
  // its message, with the layout's tensor t, and only tensors found
  // elsewhere are looked up by key, in an index built at the first such
  // one. A state of many tensors then costs one hash lookup per piece at
  // most, and no allocation but its region's (at 20,000 tensors and 4
  // ranks, decoding every spec into strings was half of a save's
  // instructions). A rank's own list has each key once (State refuses
  // duplicates).
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
  // Room in each tensor for as many pieces as the ranks sent regions per
  // tensor of rank 0's list, on average, up to 8:
  // every rank's where dim-0 shards split every tensor, one where a ZeRO
  // partition gives each tensor to one rank (8 there held ~1 KB a tensor
  // unused).
  WireReader r0(first_specs);
  const std::uint64_t first_count = r0.u64();
  std::uint64_t listed = 0;
  for (const auto& part : all) {
    WireReader r(part);
    listed += layout_wire::read_head(r).held;
  }
  const std::uint64_t per_tensor =
      first_count == 0 ? 8 : (listed + first_count - 1) / first_count;
  const auto room = static_cast<std::size_t>(std::clamp<std::uint64_t>(per_tensor, 1, 8));
  Shape shape;  // the current spec's, reused from tensor to tensor
  // A tensor another rank listed first must have its dtype and shape
  // (`shape`: that of `v`, as read).
  const auto check_same_spec = [&](std::size_t at, const SpecView& v, int rank) {
    const TensorSpec& first = layout.tensors[at].spec;
    if (first.dtype != v.dtype || first.shape != shape) {
      throw Error(ErrorCode::kMismatch,
                  "tensor \"" + first.key() + "\": rank " + std::to_string(first_rank[at]) +
                      " has " + shape_text(first.dtype, first.shape) + " but rank " +
                      std::to_string(rank) + " has " + shape_text(v.dtype, shape));
    }
  };
  const auto add_tensor = [&](TensorSpec spec, int rank) {
    if (indexed) index.emplace(spec.key(), layout.tensors.size());
    first_rank.push_back(rank);
    layout.tensors.push_back(TensorLayout{std::move(spec), {}});
    layout.tensors.back().pieces.reserve(room);
    return layout.tensors.size() - 1;
  };
  layout.tensors.reserve(first_count);
  for (std::uint64_t t = 0; t < first_count; ++t) add_tensor(read_spec(r0, shape).spec(shape), 0);
  // Places the tensors of a rank's own list (its specs; rank 0's list is
  // rank 0's, so only another rank sends one) in the layout, adding those
  // no rank before it listed, and returns where each one is.
  const auto place_own_list = [&](std::string_view specs, int rank) {
    WireReader r(specs);
    const std::uint64_t count = r.u64();
    std::vector<std::size_t> places;
    places.reserve(count);
    for (std::uint64_t t = 0; t < count; ++t) {
      const SpecView v = read_spec(r, shape);
      if (t < layout.tensors.size() && layout.tensors[t].spec.group == v.group &&
          layout.tensors[t].spec.name == v.name && layout.tensors[t].spec.opt_key == v.opt_key) {
        check_same_spec(t, v, rank);
        places.push_back(t);
        continue;
      }
      if (!indexed) {
        index.reserve(2 * layout.tensors.size());
        for (std::size_t i = 0; i < layout.tensors.size(); ++i) {
          index.emplace(layout.tensors[i].spec.key(), i);
        }
        indexed = true;
      }
      TensorSpec spec = v.spec(shape);
      const auto it = index.find(spec.key());
      if (it == index.end()) {
        places.push_back(add_tensor(std::move(spec), rank));
      } else {
        check_same_spec(it->second, v, rank);
        places.push_back(it->second);
      }
    }
    return places;
  };
  // Where each tensor of each list a rank sent is in the layout, by rank.
  std::unordered_map<int, std::vector<std::size_t>> lists;
  for (int rank = 0; rank < comm.size(); ++rank) {
    WireReader part(all[rank]);
    const layout_wire::PartHead head = layout_wire::read_head(part);
    const std::vector<std::size_t>* places = nullptr;  // none: rank 0's list
    if (head.own) {
      places = &(lists[rank] = place_own_list(head.specs, rank));
    } else if (head.of != 0) {
      const auto it = lists.find(static_cast<int>(head.of));
      if (head.of >= static_cast<std::uint64_t>(rank) || it == lists.end()) {
        throw Error(ErrorCode::kInternal, "layout exchange: rank " + std::to_string(rank) +
                                              " repeats the list of rank " +
                                              std::to_string(head.of) + ", which sent none");
      }
      places = &it->second;
    }
    const std::uint64_t listed_here = places ? places->size() : first_count;
    for (std::uint64_t i = 0; i < head.held; ++i) {
      const std::uint64_t t = part.u64();
      if (t >= listed_here) {
        throw Error(ErrorCode::kInternal,
                    "layout exchange: rank " + std::to_string(rank) + " sent a region of tensor " +
                        std::to_string(t) + " of a list of " + std::to_string(listed_here));
      }
      add_piece(places ? (*places)[t] : t, rank, read_region(part));
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
  return gather_encoded(layout_wire::encode(state), comm);
}

GlobalLayout exchange_layout(const State& state, MPI_Comm comm) {
  return exchange_encoded(layout_wire::encode(state), comm);
}

std::shared_ptr<const GlobalLayout> LayoutCache::exchange(const State& state,
                                                          MPI_Comm mpi_comm) {
  const Comm comm(mpi_comm);
  std::string mine = layout_wire::encode(state);
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
