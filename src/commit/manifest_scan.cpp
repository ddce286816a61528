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
#include <cstring>
#include <functional>
#include <string_view>

#include "commit/manifest_text.hpp"
#include "commit/paths.hpp"
#include "floe/error.hpp"
#include "io/checksum.hpp"

namespace floe {
namespace {

// Thrown to give up; caught in parse_as_written.
struct NotAsWritten {};

// What each byte is inside a record's string: printable ASCII but the
// backslash (kPlain), the closing quote, or anything else (a control byte,
// the NUL after the text included, an escape, a non-ASCII byte).
enum ByteKind : unsigned char { kPlain, kQuote, kOther };
struct ByteKinds {
  ByteKind of[256];
  constexpr ByteKinds() : of() {
    for (int c = 0; c < 256; ++c) of[c] = c >= 0x20 && c < 0x80 && c != '\\' ? kPlain : kOther;
    of[static_cast<unsigned char>('"')] = kQuote;
  }
};
constexpr ByteKinds kByteKinds;

// A lowercase hex digit's value; -1 for any other byte.
struct HexDigits {
  signed char of[256];
  constexpr HexDigits() : of() {
    for (int c = 0; c < 256; ++c) of[c] = -1;
    for (int c = '0'; c <= '9'; ++c) of[c] = static_cast<signed char>(c - '0');
    for (int c = 'a'; c <= 'f'; ++c) of[c] = static_cast<signed char>(c - 'a' + 10);
  }
};
constexpr HexDigits kHexDigits;

class Scanner {
 public:
  // `text` is followed by a NUL byte (as a std::string's is), which
  // plain_string() stops at.
  explicit Scanner(std::string_view text) : text_(text) {}

  bool at_end() const { return at_ == text_.size(); }
  std::size_t position() const { return at_; }
  bool next_is(char c) const { return at_ < text_.size() && text_[at_] == c; }

  // Consumes `literal` (a string literal: its length is known where this
  // is inlined, so the comparison is a few loads, not a memcmp call) or
  // gives up.
  template <std::size_t N>
  void expect(const char (&literal)[N]) {
    if (!accept(literal)) throw NotAsWritten{};
  }
  template <std::size_t N>
  bool accept(const char (&literal)[N]) {
    constexpr std::size_t n = N - 1;
    if (text_.size() - at_ < n || std::memcmp(text_.data() + at_, literal, n) != 0) return false;
    at_ += n;
    return true;
  }
  bool accept(std::string_view literal) {
    if (text_.compare(at_, literal.size(), literal) != 0) return false;
    at_ += literal.size();
    return true;
  }

  // A string of printable ASCII without escapes.
  std::string_view plain_string() {
    expect("\"");
    const std::size_t start = at_;
    // No bounds check: the NUL after the text is kOther.
    const char* p = text_.data() + at_;
    while (kByteKinds.of[static_cast<unsigned char>(*p)] == kPlain) ++p;
    if (kByteKinds.of[static_cast<unsigned char>(*p)] != kQuote) throw NotAsWritten{};
    at_ = static_cast<std::size_t>(p - text_.data()) + 1;
    return text_.substr(start, at_ - 1 - start);
  }

  // Plain decimal digits as JSON writes them (no leading zero), fitting 64
  // bits: what nlohmann reads as an unsigned integer.
  std::uint64_t u64() {
    const std::size_t start = at_;
    std::uint64_t value = 0;
    for (; at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9'; ++at_) {
      if (__builtin_mul_overflow(value, 10u, &value) ||
          __builtin_add_overflow(value, static_cast<unsigned>(text_[at_] - '0'), &value)) {
        throw NotAsWritten{};
      }
    }
    const std::size_t digits = at_ - start;
    if (digits == 0 || (digits > 1 && text_[start] == '0')) throw NotAsWritten{};
    return value;
  }

  // An integer of int64 range (from_json's i64: a negative one, or an
  // unsigned one up to INT64_MAX). "-0" is left to the general parser.
  std::int64_t i64() {
    const bool negative = accept("-");
    const std::uint64_t magnitude = u64();
    if (negative) {
      if (magnitude == 0 || magnitude > static_cast<std::uint64_t>(INT64_MAX) + 1) {
        throw NotAsWritten{};
      }
      return static_cast<std::int64_t>(0 - magnitude);
    }
    if (magnitude > static_cast<std::uint64_t>(INT64_MAX)) throw NotAsWritten{};
    return static_cast<std::int64_t>(magnitude);
  }

  // [d, d, ...] of u64 digits, as a Shape: gathered first, so the Shape is
  // allocated once at its size (a manifest of 20,000 tensors holds ~60,000
  // of these lists).
  Shape dims() {
    std::uint64_t values[64];
    std::size_t n = 0;
    expect("[");
    if (accept("]")) return Shape();
    do {
      if (n == 64) throw NotAsWritten{};
      values[n++] = u64();
    } while (accept(","));
    expect("]");
    return Shape(values, values + n);
  }

  // "xxh3:" and 16 lowercase hex digits, as format_xxh3 writes them
  // (anything else parse_xxh3 may accept goes to the general parser).
  std::uint64_t checksum() {
    const std::string_view text = plain_string();
    if (text.size() != 21 || text.compare(0, 5, "xxh3:") != 0) throw NotAsWritten{};
    std::uint64_t value = 0;
    int bad = 0;
    for (std::size_t i = 5; i < 21; ++i) {
      const int digit = kHexDigits.of[static_cast<unsigned char>(text[i])];
      bad |= digit;
      value = value << 4 | static_cast<std::uint64_t>(digit & 0xf);
    }
    if (bad < 0) throw NotAsWritten{};
    return value;
  }

  // One JSON value of any kind, delimited by its brackets and quotes and
  // parsed by nlohmann (which checks it fully: numbers, escapes, UTF-8).
  nlohmann::json any_value() {
    const std::size_t start = at_;
    int depth = 0;
    do {
      if (at_ >= text_.size()) throw NotAsWritten{};
      const char c = text_[at_++];
      if (c == '"') {
        while (at_ < text_.size() && text_[at_] != '"') at_ += text_[at_] == '\\' ? 2 : 1;
        if (at_++ >= text_.size()) throw NotAsWritten{};
      } else if (c == '{' || c == '[') {
        // As parse_untrusted_json: the tree is built only below this depth.
        if (++depth > 60) throw NotAsWritten{};
      } else if (c == '}' || c == ']') {
        --depth;
      } else if (depth == 0) {
        // A bare scalar: up to the delimiter that follows it.
        while (at_ < text_.size() && text_[at_] != ',' && text_[at_] != '}' &&
               text_[at_] != ']') {
          ++at_;
        }
      }
    } while (depth > 0);
    if (depth < 0) throw NotAsWritten{};
    nlohmann::json value =
        nlohmann::json::parse(text_.substr(start, at_ - start), nullptr, false);
    if (value.is_discarded()) throw NotAsWritten{};
    return value;
  }

 private:
  std::string_view text_;
  std::size_t at_ = 0;
};

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

// Whether no two of `keys` are equal: an open-addressing table of their
// indices (no allocation per key, as std::unordered_set makes).
bool all_distinct(const std::vector<std::string_view>& keys) {
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

Manifest scan_manifest(std::string_view text) {
  Scanner s(text);
  FileNames names;
  Manifest m;
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
    FileRecord f;
    s.expect("{\"path\":");
    f.path = names.check(s.plain_string());
    s.expect(",\"size\":");
    f.size = s.u64();
    s.expect("}");
    return f;
  });
  s.expect(",\"floe_version\":");
  m.floe_version = std::string(s.plain_string());
  s.expect(",\"format\":\"floe-checkpoint\",\"format_version\":");
  const std::uint64_t version = s.u64();
  if (version < 1 || version > static_cast<std::uint64_t>(Manifest::kFormatVersion)) {
    throw NotAsWritten{};
  }
  m.format_version = static_cast<int>(version);
  std::uint64_t recorded = 0;
  const bool sealed = s.accept(std::string(",\"") + kSelfChecksumKey + "\":");
  if (sealed) recorded = s.checksum();
  if (!sealed && m.format_version >= kFirstVersionWithSelfChecksum) throw NotAsWritten{};
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
  // Reserved for the records the rest of the text can hold (one with a
  // piece takes ~200 bytes or more as dump() writes it), so the list is
  // seldom moved as it grows; each record is scanned in place.
  std::vector<std::string_view> keys;
  const std::size_t expected = (text.size() - s.position()) / kFewestBytesPerTensor;
  m.tensors.reserve(expected);
  keys.reserve(expected);
  if (!s.accept("]")) {
    do {
      keys.emplace_back();
      const std::size_t pieces = m.tensors.empty() ? 0 : m.tensors.back().pieces.size();
      scan_tensor(s, names, m.tensors.emplace_back(), pieces, &keys.back());
    } while (s.accept(","));
    s.expect("]");
  }
  s.expect(",\"world_size\":");
  const std::uint64_t world = s.u64();
  if (world == 0 || world > (1u << 24)) throw NotAsWritten{};
  m.world_size = static_cast<int>(world);
  s.expect("}");
  if (!s.at_end()) throw NotAsWritten{};

  for (const BlobRecord& b : m.blobs) {
    if (static_cast<std::uint64_t>(b.rank) >= world) throw NotAsWritten{};
  }
  for (const TensorRecord& t : m.tensors) {
    for (const PieceRecord& p : t.pieces) {
      if (static_cast<std::uint64_t>(p.rank) >= world) throw NotAsWritten{};
    }
    if (!storage_problem(t, m.files).empty()) throw NotAsWritten{};
  }
  if (!all_distinct(keys)) throw NotAsWritten{};
  if (sealed && !text_is_as_written(text, recorded)) throw NotAsWritten{};
  return m;
}

}  // namespace

std::optional<Manifest> parse_as_written(std::string_view text) {
  try {
    return scan_manifest(text);
  } catch (const NotAsWritten&) {
    return std::nullopt;
  }
}

}  // namespace floe
