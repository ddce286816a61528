#include "engines/hdf5/hdf5_rank_report.hpp"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <variant>

#include "core/wire.hpp"
#include "io/checksum.hpp"

namespace floe::h5 {
namespace {

enum ScalarTag : std::uint8_t { kBoolTag, kIntTag, kDoubleTag, kStringTag };

std::string encode(const RankReport& report) {
  WireWriter w;
  w.u64(report.piece_xxh3.size());
  for (const auto& [index, xxh3] : report.piece_xxh3) {
    w.u64(index);
    w.u64(xxh3);
  }
  w.u64(report.blobs.size());
  for (const auto& blob : report.blobs) {
    w.str(blob.name);
    w.u64(blob.nbytes);
    w.u64(blob.xxh3);
  }
  w.u64(report.scalars.size());
  for (const auto& [name, value] : report.scalars) {
    w.str(name);
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, bool>) {
            w.u8(kBoolTag);
            w.u64(v ? 1 : 0);
          } else if constexpr (std::is_same_v<T, std::int64_t>) {
            w.u8(kIntTag);
            w.u64(static_cast<std::uint64_t>(v));
          } else if constexpr (std::is_same_v<T, double>) {
            w.u8(kDoubleTag);
            std::uint64_t bits;
            std::memcpy(&bits, &v, sizeof bits);
            w.u64(bits);
          } else {
            w.u8(kStringTag);
            w.str(v);
          }
        },
        value);
  }
  w.str(report.metadata);
  return w.bytes();
}

RankReport decode(const std::string& bytes) {
  WireReader r(bytes);
  RankReport report;
  const std::uint64_t pieces = r.u64();
  // Not trusted for the reservation: each piece takes 16 bytes.
  report.piece_xxh3.reserve(std::min<std::uint64_t>(pieces, bytes.size() / 16));
  for (std::uint64_t n = pieces; n > 0; --n) {
    const std::uint64_t index = r.u64();
    report.piece_xxh3.emplace_back(index, r.u64());
  }
  for (std::uint64_t n = r.u64(); n > 0; --n) {
    RankReport::Blob blob;
    blob.name = r.str();
    blob.nbytes = r.u64();
    blob.xxh3 = r.u64();
    report.blobs.push_back(std::move(blob));
  }
  for (std::uint64_t n = r.u64(); n > 0; --n) {
    std::string name = r.str();
    const std::uint8_t tag = r.u8();
    Scalar value;
    if (tag == kStringTag) {
      value = r.str();
    } else {
      const std::uint64_t bits = r.u64();
      if (tag == kBoolTag) value = bits != 0;
      if (tag == kIntTag) value = static_cast<std::int64_t>(bits);
      if (tag == kDoubleTag) {
        double d;
        std::memcpy(&d, &bits, sizeof d);
        value = d;
      }
    }
    report.scalars.emplace(std::move(name), std::move(value));
  }
  report.metadata = r.str();
  return report;
}

RankReport local_report(const SaveContext& ctx) {
  RankReport report;
  const auto& tensors = ctx.layout.tensors;
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    for (const Piece& piece : tensors[t].pieces) {
      if (piece.rank != ctx.rank || !piece.writer) continue;
      const TensorShard& shard = shard_of(ctx.state, tensors[t].spec, t);
      // Tensors in ascending order, as RankReport keeps them.
      report.piece_xxh3.emplace_back(t, xxh3_64(shard.data(), shard.nbytes()));
    }
  }
  for (const auto& [name, bytes] : ctx.state.blobs()) {
    report.blobs.push_back(
        {name, bytes.size(), xxh3_64(bytes.data(), bytes.size())});
  }
  if (ctx.rank == 0) {
    report.scalars = ctx.state.scalars();
    report.metadata = ctx.state.metadata().dump(
        -1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  return report;
}

}  // namespace

const TensorShard& shard_of(const State& state, const TensorSpec& spec,
                            std::size_t hint) {
  if (hint < state.tensors().size()) {
    const TensorShard& shard = state.tensors()[hint];
    const TensorSpec& held = shard.spec();
    // The fields the key is made of: equal fields, equal keys.
    if (held.group == spec.group && held.name == spec.name &&
        held.opt_key == spec.opt_key) {
      return shard;
    }
  }
  return shard_of(state, spec);
}

const TensorShard& shard_of(const State& state, const TensorSpec& spec) {
  const TensorShard* shard = state.find(spec.key());
  if (!shard) {
    throw Error(
        ErrorCode::kInternal,
        "tensor \"" + spec.key() + "\" is in the layout but not in the state");
  }
  return *shard;
}

std::vector<RankReport> exchange_reports(const SaveContext& ctx) {
  const Comm comm(ctx.comm);
  const std::string mine =
      collectively(comm, [&] { return encode(local_report(ctx)); });
  const auto all = comm.allgather_bytes(mine);
  return collectively(comm, [&] {
    std::vector<RankReport> reports;
    for (const auto& bytes : all) reports.push_back(decode(bytes));
    return reports;
  });
}

}  // namespace floe::h5
