#include "commit/manifest_parts.hpp"

#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "commit/manifest_text.hpp"
#include "core/wire.hpp"

namespace floe {
namespace {

// A part's message: a status byte (1: the sender's part was as written, 0:
// not, and nothing follows), the count of its records, then each record
// in core/wire.hpp's form, numbers as varints (most are small: ranks,
// dimensions, sizes) but the checksums. Keys are not sent: each is a span
// of the text every rank holds.
enum TensorFlags : std::uint8_t {
  kOptimizer = 1,
  kDataset = 2,
  kStorageOffset = 4
};

std::string encode_part(const ManifestPart& part, std::string_view text) {
  WireWriter w;
  w.u8(1);
  w.varint(part.manifest.tensors.size());
  for (std::size_t i = 0; i < part.manifest.tensors.size(); ++i) {
    const TensorRecord& t = part.manifest.tensors[i];
    w.varint(static_cast<std::uint64_t>(part.keys[i].data() - text.data()));
    w.varint(part.keys[i].size());
    const bool optimizer = t.spec.group == TensorGroup::kOptimizer;
    w.u8(static_cast<std::uint8_t>((optimizer ? kOptimizer : 0) |
                                   (t.dataset.empty() ? 0 : kDataset) |
                                   (t.storage_offset ? kStorageOffset : 0)));
    w.u8(static_cast<std::uint8_t>(t.spec.dtype));
    w.short_str(t.spec.name);
    if (optimizer) w.short_str(t.spec.opt_key);
    if (!t.dataset.empty()) w.short_str(t.dataset);
    if (t.storage_offset) w.varint(*t.storage_offset);
    w.varint(t.spec.shape.size());
    for (const std::uint64_t d : t.spec.shape) w.varint(d);
    w.varint(t.pieces.size());
    for (const PieceRecord& p : t.pieces) {
      w.varint(static_cast<std::uint64_t>(p.rank));
      write_region(w, p.region);
      w.short_str(p.file);
      w.varint(p.offset);
      w.varint(p.nbytes);
      w.u64(p.xxh3);
    }
  }
  return w.bytes();
}

// Appends the records of `message` to `out` and their keys to `keys`.
void decode_part(std::string_view message, std::string_view text,
                 std::vector<TensorRecord>& out,
                 std::vector<std::string_view>& keys) {
  WireReader r(message);
  r.u8();
  const std::uint64_t count = r.varint();
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::uint64_t key_at = r.varint();
    keys.push_back(text.substr(key_at, r.varint()));
    TensorRecord& t = out.emplace_back();
    const std::uint8_t flags = r.u8();
    t.spec.group =
        flags & kOptimizer ? TensorGroup::kOptimizer : TensorGroup::kModel;
    t.spec.dtype = static_cast<DType>(r.u8());
    t.spec.name.assign(r.short_str_view());
    if (flags & kOptimizer) t.spec.opt_key.assign(r.short_str_view());
    if (flags & kDataset) t.dataset.assign(r.short_str_view());
    if (flags & kStorageOffset) t.storage_offset = r.varint();
    t.spec.shape.resize(r.varint());
    for (std::uint64_t& d : t.spec.shape) d = r.varint();
    t.pieces.resize(r.varint());
    for (PieceRecord& p : t.pieces) {
      p.rank = static_cast<int>(r.varint());
      p.region = read_region(r);
      p.file.assign(r.short_str_view());
      p.offset = r.varint();
      p.nbytes = r.varint();
      p.xxh3 = r.u64();
    }
  }
}

}  // namespace

Manifest parse_manifest_on_ranks(std::string_view text,
                                 const std::filesystem::path& path,
                                 const Comm& comm, std::size_t split_from) {
  if (comm.size() == 1 || text.size() < split_from)
    return parse_manifest_text(text, path);
  // Each rank's part, or a status byte alone: 0 when its part is not as
  // written, 2 when scanning or encoding it threw (out of memory, say).
  // Nothing here may throw before the allgather (a rank that left would
  // leave the others in it).
  std::optional<ManifestPart> part;
  std::string message;
  std::exception_ptr error;
  try {
    part = parse_part_as_written(text, comm.rank(), comm.size());
    if (part) message = encode_part(*part, text);
  } catch (...) {
    error = std::current_exception();
    part.reset();
  }
  if (!part) message.assign(1, error ? '\2' : '\0');
  std::vector<std::string> parts = comm.allgather_bytes(message);
  message = std::string();
  // A rank that failed so fails the call on every rank, with its error:
  // the general parser would need far more memory than the scan.
  for (const std::string& p : parts) {
    if (p[0] == '\2') {
      agree_on_error(comm, error);
      break;
    }
  }
  bool all_as_written = true;
  for (const std::string& p : parts) {
    all_as_written = all_as_written && p[0] == '\1';
  }
  if (all_as_written) {
    Manifest m = std::move(part->manifest);
    std::vector<TensorRecord> own = std::move(m.tensors);
    m.tensors = {};
    std::uint64_t records = 0;
    for (const std::string& p : parts)
      records += WireReader(std::string_view(p).substr(1)).varint();
    m.tensors.reserve(records);
    std::vector<std::string_view> keys;
    keys.reserve(records);
    for (int r = 0; r < comm.size(); ++r) {
      if (r == comm.rank()) {
        for (TensorRecord& t : own) m.tensors.push_back(std::move(t));
        keys.insert(keys.end(), part->keys.begin(), part->keys.end());
      } else {
        decode_part(parts[static_cast<std::size_t>(r)], text, m.tensors, keys);
      }
      parts[static_cast<std::size_t>(r)] = std::string();
    }
    // The same keys on every rank: every rank decides alike.
    if (keys_distinct(keys)) return m;
  }
  return parse_manifest_general(text, path);
}

}  // namespace floe
