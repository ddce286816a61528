// manifest.json <-> Manifest, validating every field of untrusted input.
#include "floe/manifest.hpp"

#include <set>

#include "commit/json_fields.hpp"
#include "commit/manifest_text.hpp"
#include "commit/paths.hpp"
#include "floe/error.hpp"
#include "floe/file_system.hpp"
#include "io/checksum.hpp"

namespace floe {
namespace {

using nlohmann::json;

json region_to_json(const Region& region) {
  json out;
  if (region.kind() == Region::Kind::kFlatRange) {
    out["flat"] = {region.as_flat().begin, region.as_flat().end};
  } else {
    out["offset"] = region.as_box().offset;
    out["extent"] = region.as_box().extent;
  }
  if (region.is_replicated()) out["replicated"] = true;
  return out;
}

Shape shape_from(const JsonFields& f, const std::string& key) {
  Shape shape;
  const auto& items = f.array(key);
  if (items.size() > 64) f.fail(key, "has more than 64 dimensions");
  for (const auto& d : items) {
    if (!d.is_number_unsigned()) f.fail(key, "expected integers >= 0");
    shape.push_back(d.get<std::uint64_t>());
  }
  return shape;
}

Region region_from(const json& j, const std::string& path, const Shape& shape,
                   const std::string& key) {
  const JsonFields f(j, path);
  Region region;
  if (f.has("flat")) {
    const Shape range = shape_from(f, "flat");
    if (range.size() != 2 || range[0] > range[1]) {
      f.fail("flat", "expected [begin, end] with begin <= end");
    }
    region = Region::flat(FlatRange{range[0], range[1]});
  } else {
    Box box{shape_from(f, "offset"), shape_from(f, "extent")};
    if (box.offset.size() != box.extent.size()) {
      f.fail("extent", "has a different rank than offset");
    }
    region = Region::box(std::move(box));
  }
  if (f.has("replicated")) {
    if (!f.value("replicated").is_boolean()) f.fail("replicated", "expected a boolean");
    if (f.value("replicated").get<bool>()) region = region.replicated();
  }
  try {
    region.validate(shape, key);
  } catch (const Error& e) {
    throw Error(ErrorCode::kCorrupt, path + ": " + e.what());
  }
  return region;
}

std::uint64_t checksum_from(const JsonFields& f) {
  try {
    return parse_xxh3(f.string("xxh3"));
  } catch (const Error& e) {
    f.fail("xxh3", e.what());
  }
}

std::string file_from(const JsonFields& f, const std::string& key) {
  const std::string file = f.string(key);
  check_relative_path(file, "field " + f.path(key));
  return file;
}

// XXH3-64 of the manifest's canonical form: the JSON value without its
// manifest_xxh3 member, serialized as nlohmann::json::dump() does with no
// indent (members in bytewise key order, no whitespace, integers in
// decimal, floats in their shortest round-trip form). It depends only on
// the parsed value, so a damaged byte that changes any key, string, number
// or structure changes it, and formatting that parses to the same value
// does not. Built member by member: the same bytes as dumping a copy
// without the member, without copying a large manifest.
std::uint64_t self_checksum(const json& manifest) {
  Xxh3Stream hash;
  const auto add = [&](const std::string& text) { hash.update(text.data(), text.size()); };
  add("{");
  bool first = true;
  for (auto it = manifest.begin(); it != manifest.end(); ++it) {
    if (it.key() == kSelfChecksumKey) continue;
    if (!first) add(",");
    first = false;
    add(json(it.key()).dump());
    add(":");
    add(it.value().dump());
  }
  add("}");
  return hash.digest();
}

// from_json, and with `source` (the text `j` was parsed from) the
// self-checksum first tried on the text's own bytes.
Manifest manifest_from(const json& j, const std::string_view* source);

}  // namespace

const TensorRecord* Manifest::find(const std::string& key) const {
  for (const auto& t : tensors) {
    if (t.spec.key() == key) return &t;
  }
  return nullptr;
}

json Manifest::to_json() const {
  json out;
  out["format"] = "floe-checkpoint";
  out["format_version"] = format_version;
  out["floe_version"] = floe_version;
  out["engine"] = engine;
  out["tag"] = tag;
  out["step"] = step;
  out["epoch"] = epoch;
  out["world_size"] = world_size;
  out["created_utc"] = created_utc;
  json& tensor_list = out["tensors"] = json::array();
  for (const auto& t : tensors) {
    json j;
    j["key"] = t.spec.key();
    j["group"] = group_name(t.spec.group);
    j["name"] = t.spec.name;
    if (t.spec.group == TensorGroup::kOptimizer) j["opt_key"] = t.spec.opt_key;
    j["dtype"] = dtype_name(t.spec.dtype);
    j["shape"] = t.spec.shape;
    if (!t.dataset.empty()) j["dataset"] = t.dataset;
    json& pieces = j["pieces"] = json::array();
    for (const auto& p : t.pieces) {
      pieces.push_back({{"rank", p.rank},
                        {"region", region_to_json(p.region)},
                        {"file", p.file},
                        {"offset", p.offset},
                        {"nbytes", p.nbytes},
                        {"xxh3", format_xxh3(p.xxh3)}});
    }
    if (t.storage_offset) j["storage_offset"] = *t.storage_offset;
    tensor_list.push_back(std::move(j));
  }
  out["scalars"] = scalars;
  json& blob_list = out["blobs"] = json::array();
  for (const auto& b : blobs) {
    blob_list.push_back({{"rank", b.rank},
                         {"name", b.name},
                         {"file", b.file},
                         {"offset", b.offset},
                         {"nbytes", b.nbytes},
                         {"xxh3", format_xxh3(b.xxh3)}});
  }
  json& file_list = out["files"] = json::array();
  for (const auto& f : files) file_list.push_back({{"path", f.path}, {"size", f.size}});
  out["metadata"] = metadata;
  out["engine_info"] = engine_info;
  if (format_version >= kFirstVersionWithSelfChecksum) {
    out[kSelfChecksumKey] = format_xxh3(self_checksum(out));
  }
  return out;
}

Manifest Manifest::from_json(const json& j) { return manifest_from(j, nullptr); }

namespace {

Manifest manifest_from(const json& j, const std::string_view* source) {
  const JsonFields top(j, "");
  Manifest m;
  if (top.string("format") != "floe-checkpoint") {
    top.fail("format", "expected \"floe-checkpoint\"");
  }
  m.format_version = static_cast<int>(top.i64("format_version"));
  if (m.format_version > Manifest::kFormatVersion) {
    throw Error(ErrorCode::kUnsupported,
                "manifest format version " + std::to_string(m.format_version) +
                    " is newer than this Floe reads (" +
                    std::to_string(Manifest::kFormatVersion) + "); upgrade Floe");
  }
  if (m.format_version < 1) top.fail("format_version", "must be >= 1");
  m.floe_version = top.string("floe_version");
  m.engine = top.string("engine");
  m.tag = top.string("tag");
  m.step = top.i64("step");
  m.epoch = top.i64("epoch");
  const std::uint64_t world = top.u64("world_size");
  if (world == 0 || world > (1u << 24)) top.fail("world_size", "out of range");
  m.world_size = static_cast<int>(world);
  m.created_utc = top.string("created_utc");

  std::set<std::string> keys;
  const auto& tensor_list = top.array("tensors");
  for (std::size_t i = 0; i < tensor_list.size(); ++i) {
    const std::string path = "tensors[" + std::to_string(i) + "]";
    const JsonFields f(tensor_list[i], path);
    TensorRecord t;
    const std::string group = f.string("group");
    if (group == "model") {
      t.spec.group = TensorGroup::kModel;
    } else if (group == "optimizer") {
      t.spec.group = TensorGroup::kOptimizer;
      t.spec.opt_key = f.string("opt_key");
      if (t.spec.opt_key.empty()) f.fail("opt_key", "must not be empty");
    } else {
      f.fail("group", "expected \"model\" or \"optimizer\"");
    }
    t.spec.name = f.string("name");
    if (t.spec.name.empty()) f.fail("name", "must not be empty");
    try {
      t.spec.dtype = parse_dtype(f.string("dtype"));
    } catch (const Error& e) {
      f.fail("dtype", e.what());
    }
    t.spec.shape = shape_from(f, "shape");
    try {
      byte_size(t.spec.shape, dtype_size(t.spec.dtype));
    } catch (const Error&) {
      f.fail("shape", "byte size overflows 64 bits");
    }
    const std::string key = t.spec.key();
    if (f.string("key") != key) f.fail("key", "does not match group/name/opt_key");
    if (!keys.insert(key).second) f.fail("key", "duplicate tensor \"" + key + "\"");
    if (f.has("dataset")) t.dataset = f.string("dataset");
    const auto& piece_list = f.array("pieces");
    for (std::size_t k = 0; k < piece_list.size(); ++k) {
      const std::string ppath = path + ".pieces[" + std::to_string(k) + "]";
      const JsonFields p(piece_list[k], ppath);
      PieceRecord piece;
      const std::uint64_t rank = p.u64("rank");
      if (rank >= world) p.fail("rank", "not below world_size");
      piece.rank = static_cast<int>(rank);
      piece.region = region_from(p.object("region"), p.path("region"),
                                 t.spec.shape, key);
      piece.file = file_from(p, "file");
      piece.offset = p.u64("offset");
      piece.nbytes = p.u64("nbytes");
      if (piece.nbytes != piece.region.elements() * dtype_size(t.spec.dtype)) {
        p.fail("nbytes", "does not match the region's size");
      }
      std::uint64_t end = 0;
      if (__builtin_add_overflow(piece.offset, piece.nbytes, &end)) {
        p.fail("offset", "offset + nbytes overflows");
      }
      piece.xxh3 = checksum_from(p);
      t.pieces.push_back(std::move(piece));
    }
    if (f.has("storage_offset")) {
      if (t.dataset.empty()) f.fail("storage_offset", "given for a tensor without a dataset");
      t.storage_offset = f.u64("storage_offset");
    }
    m.tensors.push_back(std::move(t));
  }
  m.scalars = top.object("scalars");
  for (const auto& [name, value] : m.scalars.items()) {
    if (!value.is_primitive() || value.is_null()) {
      top.fail("scalars." + name, "expected a boolean, number or string");
    }
  }
  const auto& blob_list = top.array("blobs");
  for (std::size_t i = 0; i < blob_list.size(); ++i) {
    const JsonFields f(blob_list[i], "blobs[" + std::to_string(i) + "]");
    BlobRecord b;
    const std::uint64_t rank = f.u64("rank");
    if (rank >= world) f.fail("rank", "not below world_size");
    b.rank = static_cast<int>(rank);
    b.name = f.string("name");
    b.file = file_from(f, "file");
    b.offset = f.u64("offset");
    b.nbytes = f.u64("nbytes");
    b.xxh3 = checksum_from(f);
    m.blobs.push_back(std::move(b));
  }
  const auto& file_list = top.array("files");
  for (std::size_t i = 0; i < file_list.size(); ++i) {
    const JsonFields f(file_list[i], "files[" + std::to_string(i) + "]");
    m.files.push_back(FileRecord{file_from(f, "path"), f.u64("size")});
  }
  for (std::size_t i = 0; i < m.tensors.size(); ++i) {
    if (const std::string problem = storage_problem(m.tensors[i], m.files); !problem.empty()) {
      JsonFields(tensor_list[i], "tensors[" + std::to_string(i) + "]")
          .fail("storage_offset", problem);
    }
  }
  m.metadata = top.value("metadata");
  m.engine_info = top.object("engine_info");
  // Last, so that a field that is invalid on its own is named as such; what
  // is left is damage that keeps every field valid (a digit of a scalar, of
  // the epoch, of a checksum or offset that some other check would only
  // catch later, or not at all).
  if (top.has(kSelfChecksumKey)) {
    const std::string text = top.string(kSelfChecksumKey);
    std::uint64_t recorded = 0;
    try {
      recorded = parse_xxh3(text);
    } catch (const Error& e) {
      top.fail(kSelfChecksumKey, e.what());
    }
    if (source && text_is_as_written(*source, recorded)) return m;
    const std::uint64_t computed = self_checksum(j);
    if (recorded != computed) {
      top.fail(kSelfChecksumKey,
               "the manifest is damaged: its content hashes to " + format_xxh3(computed) +
                   ", not the recorded " + format_xxh3(recorded));
    }
  } else if (m.format_version >= kFirstVersionWithSelfChecksum) {
    top.fail(kSelfChecksumKey, "missing (required from format version " +
                                   std::to_string(kFirstVersionWithSelfChecksum) + ")");
  }
  return m;
}

}  // namespace

Manifest Manifest::read(const std::filesystem::path& dir, FileSystem& fs) {
  const auto path = dir / kManifestName;
  return parse(fs.read_file(path, kMaxManifestBytes), path);
}

Manifest Manifest::parse(const std::string& text, const std::filesystem::path& path) {
  return parse_manifest_text(text, path);
}

Manifest parse_manifest_text(std::string_view text, const std::filesystem::path& path) {
  // The text as Floe writes it, valid: read without a JSON tree.
  if (std::optional<Manifest> fast = parse_as_written(text)) return std::move(*fast);
  try {
    return manifest_from(parse_untrusted_json(text, path.string()), &text);
  } catch (const Error& e) {
    if (std::string(e.what()).rfind(path.string(), 0) == 0) throw;
    throw Error(e.code(), path.string() + ": " + e.what());
  }
}

json scalar_to_json(const Scalar& value) {
  return std::visit([](const auto& v) { return json(v); }, value);
}

Scalar scalar_from_json(const json& j) {
  if (j.is_boolean()) return j.get<bool>();
  if (j.is_number_integer()) return j.get<std::int64_t>();
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) return j.get<std::string>();
  throw Error(ErrorCode::kCorrupt, "a scalar must be a boolean, number or string");
}

}  // namespace floe
