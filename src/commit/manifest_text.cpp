// The text of manifest.json, written straight from a Manifest in canonical
// form (docs/manifest.md, "Self-checksum"): the bytes nlohmann::json would
// print for Manifest::to_json(), without building that tree. A manifest of
// 20,000 tensors is ~7.5 MB of JSON; the tree cost more than the rest of the
// save's bookkeeping together, and its canonical form was printed twice
// (once to hash, once to write).
//
// Keys are written in bytewise order by construction (each object below
// lists its members sorted); the one member outside the canonical form,
// manifest_xxh3, is spliced in at its sorted place once the rest is hashed.
// manifest_text_test compares this text with to_json().dump() byte for byte.
#include <algorithm>
#include <charconv>
#include <cstring>
#include <string_view>

#include "commit/manifest_text.hpp"
#include "floe/manifest.hpp"
#include "io/checksum.hpp"

namespace floe {
namespace {

class CanonicalWriter {
 public:
  explicit CanonicalWriter(std::string& out) : out_(out) {}

  void raw(std::string_view text) { out_.append(text.data(), text.size()); }

  // A JSON string as nlohmann::json::dump() prints it (no ASCII escaping):
  // printable ASCII other than '"' and '\\' is copied; anything else
  // (escapes, UTF-8 to check) is left to nlohmann, so the bytes and the
  // error for invalid UTF-8 are exactly its own.
  void string(std::string_view text) {
    for (const char c : text) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u >= 0x80 || c == '"' || c == '\\') {
        raw(nlohmann::json(std::string(text)).dump());
        return;
      }
    }
    out_ += '"';
    raw(text);
    out_ += '"';
  }

  // `"key":`; keys are Floe's own plain ASCII names.
  void key(std::string_view name) {
    out_ += '"';
    raw(name);
    raw("\":");
  }

  template <typename Int>
  void integer(Int value) {
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
    out_.append(digits, static_cast<std::size_t>(end - digits));
  }

  template <typename Ints>
  void integers(const Ints& values) {
    out_ += '[';
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (i) out_ += ',';
      integer(values[i]);
    }
    out_ += ']';
  }

  void checksum(std::uint64_t value) {
    static constexpr char kHex[] = "0123456789abcdef";
    char text[] = "\"xxh3:0000000000000000\"";
    for (int i = 0; i < 16; ++i) text[6 + i] = kHex[(value >> (60 - 4 * i)) & 0xf];
    out_.append(text, sizeof text - 1);
  }

  // User or engine JSON: nlohmann prints it canonically itself (objects
  // are std::maps, so members come sorted).
  void value(const nlohmann::json& json) { raw(json.dump()); }

 private:
  std::string& out_;
};

void write_region(CanonicalWriter& w, const Region& region) {
  if (region.kind() == Region::Kind::kFlatRange) {
    w.raw("{\"flat\":[");
    w.integer(region.as_flat().begin);
    w.raw(",");
    w.integer(region.as_flat().end);
    w.raw("]");
  } else {
    w.raw("{\"extent\":");
    w.integers(region.as_box().extent);
    w.raw(",\"offset\":");
    w.integers(region.as_box().offset);
  }
  if (region.is_replicated()) w.raw(",\"replicated\":true");
  w.raw("}");
}

// {"file","nbytes","offset","rank","region","xxh3"}
void write_piece(CanonicalWriter& w, const PieceRecord& p) {
  w.raw("{\"file\":");
  w.string(p.file);
  w.raw(",\"nbytes\":");
  w.integer(p.nbytes);
  w.raw(",\"offset\":");
  w.integer(p.offset);
  w.raw(",\"rank\":");
  w.integer(p.rank);
  w.raw(",\"region\":");
  write_region(w, p.region);
  w.raw(",\"xxh3\":");
  w.checksum(p.xxh3);
  w.raw("}");
}

// {"dataset"?,"dtype","group","key","name","opt_key"?,"pieces","shape",
//  "storage_offset"?}
void write_tensor(CanonicalWriter& w, const TensorRecord& t) {
  w.raw("{");
  if (!t.dataset.empty()) {
    w.key("dataset");
    w.string(t.dataset);
    w.raw(",");
  }
  w.key("dtype");
  w.string(dtype_name(t.spec.dtype));
  w.raw(",\"group\":");
  w.string(group_name(t.spec.group));
  w.raw(",\"key\":");
  w.string(t.spec.key());
  w.raw(",\"name\":");
  w.string(t.spec.name);
  if (t.spec.group == TensorGroup::kOptimizer) {
    w.raw(",\"opt_key\":");
    w.string(t.spec.opt_key);
  }
  w.raw(",\"pieces\":[");
  for (std::size_t k = 0; k < t.pieces.size(); ++k) {
    if (k) w.raw(",");
    write_piece(w, t.pieces[k]);
  }
  w.raw("],\"shape\":");
  w.integers(t.spec.shape);
  if (t.storage_offset) {
    w.raw(",\"storage_offset\":");
    w.integer(*t.storage_offset);
  }
  w.raw("}");
}

// {"file","name","nbytes","offset","rank","xxh3"}
void write_blob(CanonicalWriter& w, const BlobRecord& b) {
  w.raw("{\"file\":");
  w.string(b.file);
  w.raw(",\"name\":");
  w.string(b.name);
  w.raw(",\"nbytes\":");
  w.integer(b.nbytes);
  w.raw(",\"offset\":");
  w.integer(b.offset);
  w.raw(",\"rank\":");
  w.integer(b.rank);
  w.raw(",\"xxh3\":");
  w.checksum(b.xxh3);
  w.raw("}");
}

template <typename Item, typename Write>
void write_list(CanonicalWriter& w, const std::vector<Item>& items, Write&& write) {
  w.raw("[");
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) w.raw(",");
    write(w, items[i]);
  }
  w.raw("]");
}

}  // namespace

std::string storage_problem(const TensorRecord& t, const std::vector<FileRecord>& files) {
  if (!t.storage_offset) return "";
  const std::uint64_t offset = *t.storage_offset;
  const std::uint64_t bytes = t.spec.nbytes();
  // Spelled out only for a problem: the fast reader checks every tensor.
  const auto tensor = [&] { return "tensor \"" + t.spec.key() + "\": "; };
  std::uint64_t end = 0;
  if (__builtin_add_overflow(offset, bytes, &end)) {
    return tensor() + "storage_offset + the tensor's " + std::to_string(bytes) +
           " bytes overflows";
  }
  const std::string* checked = nullptr;  // the pieces of a tensor share a file
  for (const PieceRecord& piece : t.pieces) {
    if (checked && *checked == piece.file) continue;
    checked = &piece.file;
    const auto file = std::find_if(files.begin(), files.end(),
                                   [&](const FileRecord& f) { return f.path == piece.file; });
    if (file == files.end()) {
      return tensor() + "its data file \"" + piece.file + "\" is not listed in files";
    }
    if (end > file->size) {
      return tensor() + "its " + std::to_string(bytes) + " bytes at offset " +
             std::to_string(offset) + " end at byte " + std::to_string(end) + ", beyond the " +
             std::to_string(file->size) + " bytes files records for \"" + file->path + "\"";
    }
  }
  return "";
}

// Hashing the file's bytes costs a fraction of printing the parsed tree
// again. The first occurrence of the member's text is the top-level one
// in a file Floe wrote (the top-level keys before it hold only Floe's own
// records, and engine_info); when it is not, the hash differs and the
// canonical path decides too.
bool text_is_as_written(std::string_view text, std::uint64_t recorded) {
  const std::string member = std::string(",\"") + kSelfChecksumKey + "\":\"";
  const std::size_t at = text.find(member);
  if (at == std::string_view::npos) return false;
  const std::size_t end = at + member.size() + format_xxh3(0).size();  // closing quote
  if (end >= text.size() || text[end] != '"') return false;
  Xxh3Stream hash;
  hash.update(text.data(), at);
  hash.update(text.data() + end + 1, text.size() - end - 1);
  return hash.digest() == recorded;
}

std::string Manifest::dump() const {
  // Bytewise key order of the top level: blobs, created_utc, engine,
  // engine_info, epoch, files, floe_version, format, format_version,
  // [manifest_xxh3], metadata, scalars, step, tag, tensors, world_size.
  std::string out;
  std::size_t bytes = 1024;
  for (const auto& t : tensors) bytes += 160 + 2 * t.spec.name.size() + 180 * t.pieces.size();
  out.reserve(bytes);
  CanonicalWriter w(out);
  w.raw("{\"blobs\":");
  write_list(w, blobs, write_blob);
  w.raw(",\"created_utc\":");
  w.string(created_utc);
  w.raw(",\"engine\":");
  w.string(engine);
  w.raw(",\"engine_info\":");
  w.value(engine_info);
  w.raw(",\"epoch\":");
  w.integer(epoch);
  w.raw(",\"files\":");
  write_list(w, files, [](CanonicalWriter& w, const FileRecord& f) {
    w.raw("{\"path\":");
    w.string(f.path);
    w.raw(",\"size\":");
    w.integer(f.size);
    w.raw("}");
  });
  w.raw(",\"floe_version\":");
  w.string(floe_version);
  w.raw(",\"format\":\"floe-checkpoint\",\"format_version\":");
  w.integer(format_version);
  const std::size_t self_checksum_at = out.size();
  w.raw(",\"metadata\":");
  w.value(metadata);
  w.raw(",\"scalars\":");
  w.value(scalars);
  w.raw(",\"step\":");
  w.integer(step);
  w.raw(",\"tag\":");
  w.string(tag);
  w.raw(",\"tensors\":");
  write_list(w, tensors, write_tensor);
  w.raw(",\"world_size\":");
  w.integer(world_size);
  w.raw("}");
  if (format_version >= kFirstVersionWithSelfChecksum) {
    // The canonical form is everything written so far.
    const std::string member = std::string(",\"") + kSelfChecksumKey + "\":\"" +
                               format_xxh3(xxh3_64(out.data(), out.size())) + "\"";
    out.insert(self_checksum_at, member);
  }
  return out;
}

}  // namespace floe
