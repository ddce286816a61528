// The fast path of reading manifest.json: a scanner for the text exactly as
// Manifest::dump() writes it, straight into a Manifest. The general parser
// builds a JSON tree of the whole file first (20,000 tensors: ~7.5 MB of
// text, ~1 million tree nodes to make and free), which cost more than the
// rest of a load's bookkeeping together.
//
// The scanner expects each member at its written place and gives up
// (nullopt) at the first surprise: other formatting, another order, an
// unknown member, an escape or a non-ASCII byte in a record's string, a
// number written otherwise than as plain digits, and any value that fails
// one of Manifest::from_json's checks (which it repeats, with the same
// functions where there are some). The general parser then reads the text
// and names what is wrong, so error messages come from one place only.
// Members that are free-form JSON (scalars, metadata, engine_info) are
// delimited here and parsed by nlohmann::json.
#include <functional>
#include <string_view>

#include "commit/manifest_scanner.hpp"
#include "commit/manifest_text.hpp"
#include "commit/paths.hpp"
#include "floe/error.hpp"
#include "io/checksum.hpp"

namespace floe {
namespace {

using scan::NotAsWritten;
using scan::Scanner;

// A relative file name as check_relative_path accepts it; the pieces of a
// checkpoint name one or two files, so each distinct name is checked once.
class FileNames {
 public:
  const std::string& check(std::string_view name) {
    if (name != last_) {
      last_ = std::string(name);
      try {
        check_relative_path(last_, "");
      } catch (const Error&) {
        throw NotAsWritten{};
      }
    }
    return last_;
  }

 private:
  std::string last_ = std::string(1, '\0');  // no name equals it
};

Region scan_region(Scanner& s) {
  Region region;
  if (s.accept("{\"extent\":")) {
    Box box;
    box.extent = s.dims();
    s.expect(",\"offset\":");
    box.offset = s.dims();
    if (box.offset.size() != box.extent.size()) throw NotAsWritten{};
    region = Region::box(std::move(box));
  } else {
    s.expect("{\"flat\":");
    const Shape range = s.dims();
    if (range.size() != 2 || range[0] > range[1]) throw NotAsWritten{};
    region = Region::flat(FlatRange{range[0], range[1]});
  }
  if (s.accept(",\"replicated\":")) {
    if (s.accept("true")) {
      region = region.replicated();
    } else {
      s.expect("false");
    }
  }
  s.expect("}");
  return region;
}

// Into `p`, a new PieceRecord.
void scan_piece(Scanner& s, FileNames& files, PieceRecord& p) {
  s.expect("{\"file\":");
  p.file = files.check(s.plain_string());
  s.expect(",\"nbytes\":");
  p.nbytes = s.u64();
  s.expect(",\"offset\":");
  p.offset = s.u64();
  s.expect(",\"rank\":");
  const std::uint64_t rank = s.u64();
  if (rank > (1u << 24)) throw NotAsWritten{};  // checked against world_size later
  p.rank = static_cast<int>(rank);
  s.expect(",\"region\":");
  p.region = scan_region(s);
  s.expect(",\"xxh3\":");
  p.xxh3 = s.checksum();
  s.expect("}");
  std::uint64_t end = 0;
  if (__builtin_add_overflow(p.offset, p.nbytes, &end)) throw NotAsWritten{};
}

// A tensor's record into `t`, a new TensorRecord, and its key (a view of
// the text); its pieces are checked against its shape at the end (the
// shape comes last). Room for `pieces` pieces is reserved, the previous
// tensor's count: tensors saved by the same ranks have as many pieces, and
// growing the list from one moved it at each doubling (~600 instructions
// per tensor at 2 ranks).
void scan_tensor(Scanner& s, FileNames& files, TensorRecord& t, std::size_t pieces,
                 std::string_view* key_out) {
  s.expect("{");
  if (s.accept("\"dataset\":")) {
    t.dataset = std::string(s.plain_string());
    s.expect(",");
  }
  s.expect("\"dtype\":");
  try {
    t.spec.dtype = parse_dtype(s.plain_string());
  } catch (const Error&) {
    throw NotAsWritten{};
  }
  s.expect(",\"group\":");
  const std::string_view group = s.plain_string();
  if (group == "model") {
    t.spec.group = TensorGroup::kModel;
  } else if (group == "optimizer") {
    t.spec.group = TensorGroup::kOptimizer;
  } else {
    throw NotAsWritten{};
  }
  s.expect(",\"key\":");
  const std::string_view key = s.plain_string();
  s.expect(",\"name\":");
  t.spec.name = std::string(s.plain_string());
  if (t.spec.name.empty()) throw NotAsWritten{};
  if (t.spec.group == TensorGroup::kOptimizer) {
    s.expect(",\"opt_key\":");
    t.spec.opt_key = std::string(s.plain_string());
    if (t.spec.opt_key.empty()) throw NotAsWritten{};
  }
  s.expect(",\"pieces\":[");
  if (!s.accept("]")) {
    t.pieces.reserve(pieces);
    do {
      // Scanned in place (a PieceRecord costs more to move than to make).
      scan_piece(s, files, t.pieces.emplace_back());
    } while (s.accept(","));
    s.expect("]");
  }
  s.expect(",\"shape\":");
  t.spec.shape = s.dims();
  if (s.accept(",\"storage_offset\":")) {
    if (t.dataset.empty()) throw NotAsWritten{};
    t.storage_offset = s.u64();
  }
  s.expect("}");

  // group/name/opt_key spell the key: "model/<name>" or
  // "optimizer/<name>/<opt_key>".
  const std::string_view head = t.spec.group == TensorGroup::kModel ? "model/" : "optimizer/";
  const std::size_t name_at = head.size();
  const std::size_t opt_at = name_at + t.spec.name.size() + 1;
  const bool spelled =
      key.substr(0, name_at) == head && key.substr(name_at, t.spec.name.size()) == t.spec.name &&
      (t.spec.group == TensorGroup::kModel
           ? key.size() == name_at + t.spec.name.size()
           : key.size() == opt_at + t.spec.opt_key.size() && key[opt_at - 1] == '/' &&
                 key.substr(opt_at) == t.spec.opt_key);
  if (!spelled) throw NotAsWritten{};
  *key_out = key;
  const std::uint64_t element = dtype_size(t.spec.dtype);
  try {
    byte_size(t.spec.shape, element);
    for (const PieceRecord& p : t.pieces) {
      p.region.validate(t.spec.shape, "");
      if (p.nbytes != p.region.elements() * element) throw NotAsWritten{};
    }
  } catch (const Error&) {
    throw NotAsWritten{};
  }
}

BlobRecord scan_blob(Scanner& s, FileNames& files) {
  BlobRecord b;
  s.expect("{\"file\":");
  b.file = files.check(s.plain_string());
  s.expect(",\"name\":");
  b.name = std::string(s.plain_string());
  s.expect(",\"nbytes\":");
  b.nbytes = s.u64();
  s.expect(",\"offset\":");
  b.offset = s.u64();
  s.expect(",\"rank\":");
  const std::uint64_t rank = s.u64();
  if (rank > (1u << 24)) throw NotAsWritten{};
  b.rank = static_cast<int>(rank);
  s.expect(",\"xxh3\":");
  b.xxh3 = s.checksum();
  s.expect("}");
  return b;
}

template <typename Item, typename Scan>
std::vector<Item> scan_list(Scanner& s, Scan&& scan) {
  std::vector<Item> out;
  s.expect("[");
  if (s.accept("]")) return out;
  do {
    out.push_back(scan());
  } while (s.accept(","));
  s.expect("]");
  return out;
}

// What a tensor record with one piece takes at least, about, as dump()
// writes it (the piece alone: ~120 bytes).
constexpr std::size_t kFewestBytesPerTensor = 200;

// Every member but the tensor records, and where the records are: from
// `records_begin` (just after `"tensors":[`) to `records_end` (the `]`
// that closes the list, followed by `,"world_size":N}` and the end).
struct Frame {
  Manifest manifest;  // no tensors
  bool sealed = false;
  std::uint64_t recorded = 0;  // manifest_xxh3, when sealed
  std::size_t records_begin = 0;
  std::size_t records_end = 0;
};

Frame scan_frame(std::string_view text, FileNames& names) {
  Scanner s(text);
  Frame f;
  Manifest& m = f.manifest;
  s.expect("{\"blobs\":");
  m.blobs = scan_list<BlobRecord>(s, [&] { return scan_blob(s, names); });
  s.expect(",\"created_utc\":");
  m.created_utc = std::string(s.plain_string());
  s.expect(",\"engine\":");
  m.engine = std::string(s.plain_string());
  s.expect(",\"engine_info\":");
  m.engine_info = s.any_value();
  if (!m.engine_info.is_object()) throw NotAsWritten{};
  s.expect(",\"epoch\":");
  m.epoch = s.i64();
  s.expect(",\"files\":");
  m.files = scan_list<FileRecord>(s, [&] {
    FileRecord file;
    s.expect("{\"path\":");
    file.path = names.check(s.plain_string());
    s.expect(",\"size\":");
    file.size = s.u64();
    s.expect("}");
    return file;
  });
  s.expect(",\"floe_version\":");
  m.floe_version = std::string(s.plain_string());
  s.expect(",\"format\":\"floe-checkpoint\",\"format_version\":");
  const std::uint64_t version = s.u64();
  if (version < 1 || version > static_cast<std::uint64_t>(Manifest::kFormatVersion)) {
    throw NotAsWritten{};
  }
  m.format_version = static_cast<int>(version);
  f.sealed = s.accept(std::string(",\"") + kSelfChecksumKey + "\":");
  if (f.sealed) f.recorded = s.checksum();
  if (!f.sealed && m.format_version >= kFirstVersionWithSelfChecksum) throw NotAsWritten{};
  s.expect(",\"metadata\":");
  m.metadata = s.any_value();
  s.expect(",\"scalars\":");
  m.scalars = s.any_value();
  if (!m.scalars.is_object()) throw NotAsWritten{};
  for (const auto& [name, value] : m.scalars.items()) {
    if (!value.is_primitive() || value.is_null()) throw NotAsWritten{};
  }
  s.expect(",\"step\":");
  m.step = s.i64();
  s.expect(",\"tag\":");
  m.tag = std::string(s.plain_string());
  s.expect(",\"tensors\":[");
  f.records_begin = s.position();

  // The list's end, found from the back: world_size is the last member.
  f.records_end = text.rfind("],\"world_size\":");
  if (f.records_end == std::string_view::npos || f.records_end < f.records_begin) {
    throw NotAsWritten{};
  }
  Scanner tail(text, f.records_end);
  tail.expect("],\"world_size\":");
  const std::uint64_t world = tail.u64();
  if (world == 0 || world > (1u << 24)) throw NotAsWritten{};
  m.world_size = static_cast<int>(world);
  tail.expect("}");
  if (!tail.at_end()) throw NotAsWritten{};
  for (const BlobRecord& b : m.blobs) {
    if (static_cast<std::uint64_t>(b.rank) >= world) throw NotAsWritten{};
  }
  return f;
}

// The records from `begin` (a record's `{`) up to `end` (the list's `]`,
// or the `,` before the next part's first record), appended to `out`, and
// their keys (views of the text) to `keys`. Each is checked as far as it
// can be on its own: the ranks of its pieces, its storage offset.
void scan_records(std::string_view text, std::size_t begin, std::size_t end,
                  const Manifest& frame, FileNames& names, std::vector<TensorRecord>& out,
                  std::vector<std::string_view>& keys) {
  // Reserved for the records the part can hold, so the list is seldom
  // moved as it grows; each record is scanned in place.
  const std::size_t expected = (end - begin) / kFewestBytesPerTensor + 1;
  out.reserve(out.size() + expected);
  keys.reserve(keys.size() + expected);
  Scanner s(text, begin);
  for (;;) {
    keys.emplace_back();
    const std::size_t pieces = out.empty() ? 0 : out.back().pieces.size();
    TensorRecord& t = out.emplace_back();
    scan_tensor(s, names, t, pieces, &keys.back());
    for (const PieceRecord& p : t.pieces) {
      if (p.rank >= frame.world_size) throw NotAsWritten{};
    }
    if (!storage_problem(t, frame.files).empty()) throw NotAsWritten{};
    if (s.position() == end) return;
    if (s.position() > end) throw NotAsWritten{};
    s.expect(",");
  }
}

// Where part `part` of `parts` of the records starts: the first record
// that starts at or after its share of the bytes (`end` when none does).
// A record starts with `{"dataset":` or `{"dtype":` after the `},` that
// ends the one before it. No other object in the list starts so (pieces
// start with "file", regions with "extent" or "flat"), and no string of it
// can hold a quote; text that is otherwise fails the scan.
std::size_t part_start(std::string_view text, std::size_t begin, std::size_t end, int part,
                       int parts) {
  if (part == 0) return begin;
  std::size_t from = begin + (end - begin) / static_cast<std::size_t>(parts) *
                                 static_cast<std::size_t>(part);
  for (;;) {
    const std::size_t at = text.find("},{\"d", from);
    if (at == std::string_view::npos || at + 2 >= end) return end;
    const std::string_view rest = text.substr(at + 2);
    if (rest.rfind("{\"dataset\":", 0) == 0 || rest.rfind("{\"dtype\":", 0) == 0) {
      return at + 2;
    }
    from = at + 1;
  }
}

ManifestPart scan_part(std::string_view text, int part, int parts) {
  FileNames names;
  Frame f = scan_frame(text, names);
  const std::size_t begin = part_start(text, f.records_begin, f.records_end, part, parts);
  const std::size_t next = part + 1 < parts
                               ? part_start(text, f.records_begin, f.records_end, part + 1, parts)
                               : f.records_end;
  ManifestPart out{std::move(f.manifest), {}};
  if (begin < next) {
    // A part that ends before the list does stops at the `,` before the
    // next part's first record.
    const std::size_t end = next < f.records_end ? next - 1 : f.records_end;
    scan_records(text, begin, end, out.manifest, names, out.manifest.tensors, out.keys);
  }
  // The last part checks the text's own checksum, once every field of the
  // frame and of its records passed.
  if (part + 1 == parts && f.sealed && !text_is_as_written(text, f.recorded)) {
    throw NotAsWritten{};
  }
  return out;
}

}  // namespace

bool keys_distinct(const std::vector<std::string_view>& keys) {
  // An open-addressing table of their indices (no allocation per key, as
  // std::unordered_set makes).
  std::size_t slots = 16;
  while (slots < 2 * keys.size()) slots *= 2;
  std::vector<std::uint32_t> table(slots, 0);  // index + 1; 0: empty
  const std::hash<std::string_view> hash;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    std::size_t at = hash(keys[i]) & (slots - 1);
    for (; table[at] != 0; at = (at + 1) & (slots - 1)) {
      if (keys[table[at] - 1] == keys[i]) return false;
    }
    table[at] = static_cast<std::uint32_t>(i + 1);
  }
  return true;
}

std::optional<ManifestPart> parse_part_as_written(std::string_view text, int part, int parts) {
  try {
    return scan_part(text, part, parts);
  } catch (const NotAsWritten&) {
    return std::nullopt;
  }
}

std::optional<Manifest> parse_as_written(std::string_view text) {
  std::optional<ManifestPart> whole = parse_part_as_written(text, 0, 1);
  if (!whole || !keys_distinct(whole->keys)) return std::nullopt;
  return std::move(whole->manifest);
}

}  // namespace floe
