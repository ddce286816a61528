#include "floe/layout.hpp"

#include <algorithm>
#include <unordered_map>

#include "core/comm.hpp"
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

std::string encode(const State& state) {
  WireWriter w;
  w.u64(state.tensors().size());
  for (const auto& shard : state.tensors()) {
    const TensorSpec& spec = shard.spec();
    w.u8(static_cast<std::uint8_t>(spec.group));
    w.str(spec.name);
    w.str(spec.opt_key);
    w.u8(static_cast<std::uint8_t>(spec.dtype));
    w.u64(spec.shape.size());
    for (auto d : spec.shape) w.u64(d);
    write_region(w, shard.region());
  }
  return w.bytes();
}

// Marks writers and checks that the written pieces tile the tensor exactly.
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
  // overlap, summing to the tensor's size means they cover it.
  std::vector<std::pair<Box, int>> boxes;
  std::uint64_t covered = 0;
  for (const auto& p : tensor.pieces) {
    if (!p.writer) continue;
    for (auto& b : p.region.boxes(tensor.spec.shape)) {
      covered += b.elements();
      if (!b.empty()) boxes.emplace_back(std::move(b), p.rank);
    }
  }
  if (!tensor.spec.shape.empty()) {
    std::sort(boxes.begin(), boxes.end(), [](const auto& a, const auto& b) {
      return a.first.offset[0] < b.first.offset[0];
    });
  }
  for (std::size_t i = 0; i < boxes.size(); ++i) {
    const Box& a = boxes[i].first;
    const std::uint64_t a_end = a.offset.empty() ? 1 : a.offset[0] + a.extent[0];
    for (std::size_t j = i + 1; j < boxes.size(); ++j) {
      const Box& b = boxes[j].first;
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

GlobalLayout gather_layout(const State& state, MPI_Comm mpi_comm) {
  const Comm comm(mpi_comm);
  const auto all = comm.allgather_bytes(encode(state));

  GlobalLayout layout;
  layout.world_size = comm.size();
  // Ranks usually list the same tensors in the same order: tensor t of a
  // rank is first compared with the layout's tensor t, and only tensors
  // found elsewhere are looked up by key, in an index built at the first
  // such one (a state of many tensors then costs one hash lookup per piece,
  // not a string comparison per tree level). A rank's own list has each
  // key once (State refuses duplicates).
  std::unordered_map<std::string, std::size_t> index;
  bool indexed = false;
  const auto add_tensor = [&](TensorSpec spec) {
    if (indexed) index.emplace(spec.key(), layout.tensors.size());
    layout.tensors.push_back(TensorLayout{std::move(spec), {}});
    return layout.tensors.size() - 1;
  };
  for (int rank = 0; rank < comm.size(); ++rank) {
    WireReader r(all[rank]);
    const std::uint64_t count = r.u64();
    for (std::uint64_t t = 0; t < count; ++t) {
      TensorSpec spec;
      spec.group = static_cast<TensorGroup>(r.u8());
      spec.name = r.str();
      spec.opt_key = r.str();
      spec.dtype = static_cast<DType>(r.u8());
      spec.shape.resize(r.u64());
      for (auto& d : spec.shape) d = r.u64();
      Region region = read_region(r);
      std::size_t at = layout.tensors.size();
      bool added = false;
      if (rank == 0) {
        at = add_tensor(std::move(spec));
        added = true;
      } else if (t < layout.tensors.size() && layout.tensors[t].spec.group == spec.group &&
                 layout.tensors[t].spec.name == spec.name &&
                 layout.tensors[t].spec.opt_key == spec.opt_key) {
        at = t;
      } else {
        if (!indexed) {
          index.reserve(2 * layout.tensors.size());
          for (std::size_t i = 0; i < layout.tensors.size(); ++i) {
            index.emplace(layout.tensors[i].spec.key(), i);
          }
          indexed = true;
        }
        const auto it = index.find(spec.key());
        if (it != index.end()) {
          at = it->second;
        } else {
          at = add_tensor(std::move(spec));
          added = true;
        }
      }
      if (!added) {
        const TensorSpec& first = layout.tensors[at].spec;
        if (first.dtype != spec.dtype || first.shape != spec.shape) {
          throw Error(
              ErrorCode::kMismatch,
              "tensor \"" + spec.key() + "\": rank " +
                  std::to_string(layout.tensors[at].pieces.front().rank) +
                  " has " + shape_text(first.dtype, first.shape) +
                  " but rank " + std::to_string(rank) + " has " +
                  shape_text(spec.dtype, spec.shape));
        }
      }
      layout.tensors[at].pieces.push_back(Piece{rank, std::move(region), true});
    }
  }
  return layout;
}

GlobalLayout exchange_layout(const State& state, MPI_Comm comm) {
  GlobalLayout layout = gather_layout(state, comm);
  for (auto& tensor : layout.tensors) settle(tensor);
  return layout;
}

}  // namespace floe
