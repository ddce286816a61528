// manifest.json's text: Manifest::dump() prints straight from the fields
// what to_json().dump() prints (format version 2's canonical form with
// manifest_xxh3 spliced in), byte for byte, for every kind of field; the
// fast reader (parse_as_written) reads what dump() writes and accepts no
// text the general parser refuses; and the self-checksum check on the
// file's own bytes leaves reformatted text to the canonical check and still
// names damage.
#include <optional>

#include <gtest/gtest.h>

#include "commit/json_fields.hpp"
#include "commit/manifest_text.hpp"
#include "floe/error.hpp"
#include "floe/manifest.hpp"
#include "io/checksum.hpp"
#include "test_util.hpp"

namespace floe::test {
namespace {

using nlohmann::json;

PieceRecord piece(int rank, Region region, std::uint64_t nbytes, std::uint64_t offset,
                  std::uint64_t xxh3) {
  return PieceRecord{rank, std::move(region), "data.bin", offset, nbytes, xxh3};
}

// A manifest with every kind of field: both groups, box, flat and
// replicated regions, a 0-d tensor, names that need escaping or are
// non-ASCII, scalars of each type (floats in each of the shortest forms),
// nested metadata, blobs and files.
Manifest varied_manifest() {
  Manifest m;
  m.floe_version = "0.1.0";
  m.engine = "mpiio";
  m.tag = "global_step_120";
  m.step = 120;
  m.epoch = -3;
  m.world_size = 4;
  m.created_utc = "2026-11-28T12:00:00Z";
  TensorRecord embed;
  embed.spec = TensorSpec{TensorGroup::kModel, "model.embed.weight", "", DType::kF32, {37, 16}};
  embed.dataset = "/model/model.embed.weight";
  embed.pieces.push_back(piece(0, Region::box(Box{{0, 0}, {19, 16}}), 19 * 16 * 4, 4096,
                               0x9f0c1d2e3a4b5c6dull));
  embed.pieces.push_back(piece(1, Region::box(Box{{19, 0}, {18, 16}}), 18 * 16 * 4, 0,
                               0));
  m.tensors.push_back(embed);
  TensorRecord adam;
  adam.spec = TensorSpec{TensorGroup::kOptimizer, "model.embed.weight", "exp_avg",
                         DType::kBF16, {37, 16}};
  adam.pieces.push_back(piece(2, Region::flat(FlatRange{0, 100}), 200, 8192, ~0ull));
  adam.pieces.push_back(piece(3, Region::flat(FlatRange{100, 592}), 984, 1u << 20, 1));
  m.tensors.push_back(adam);
  TensorRecord scalar;
  scalar.spec = TensorSpec{TensorGroup::kModel, "step\"count\\\n\x01", "", DType::kI64, {}};
  scalar.pieces.push_back(piece(0, Region::box(Box{{}, {}}).replicated(), 8, 12, 42));
  m.tensors.push_back(scalar);
  TensorRecord unicode;
  unicode.spec = TensorSpec{TensorGroup::kOptimizer, "слой.вес/€", "ключ",
                            DType::kF16, {2, 3, 4}};
  unicode.dataset = "/optimizer/слой.вес/€/ключ";
  unicode.storage_offset = 4096;
  unicode.pieces.push_back(piece(1, Region::box(Box{{0, 0, 0}, {2, 3, 4}}).replicated(),
                                 48, 0, 7));
  m.tensors.push_back(unicode);
  m.scalars = {{"lr", 0.00025},     {"eps", 1e-05},        {"big", 1e16},
               {"one", 1.0},        {"neg", -2.5},         {"steps", 1234},
               {"huge", INT64_MAX}, {"min", INT64_MIN},    {"flag", true},
               {"name", "adamw"},   {"\xe2\x82\xac", "x"}, {"Z", false}};
  m.metadata = {{"run", "r\u00e9sum\u00e9"},
                {"nested", {{"b", json::array({1, 2.5, nullptr, "/slash"})}, {"a", {}}}},
                {"manifest_xxh3", "user's own key of that name"}};
  m.blobs.push_back(BlobRecord{0, "rng", "data.bin", 9000, 100, 0xabcdefull});
  m.blobs.push_back(BlobRecord{3, "data \"position\"", "data.bin", 9100, 0, 0});
  m.files.push_back(FileRecord{"data.bin", 123456});
  m.engine_info = {{"data_file", "data.bin"}, {"alignment", 4096}};
  return m;
}

// `count` tensors as a save of a many-tensor state writes them.
Manifest many_tensors(std::size_t count, int ranks) {
  Manifest m = varied_manifest();
  m.tensors.clear();
  for (std::size_t t = 0; t < count; ++t) {
    TensorRecord r;
    r.spec = TensorSpec{TensorGroup::kModel, "layer." + std::to_string(t) + ".weight", "",
                        DType::kF32, {2, 128}};
    for (int k = 0; k < ranks; ++k) {
      const std::uint64_t rows = 2 / ranks;
      r.pieces.push_back(piece(k, Region::box(Box{{rows * k, 0}, {rows, 128}}),
                               rows * 128 * 4, t * 1024 + k * 512, t * 77 + k));
    }
    m.tensors.push_back(std::move(r));
  }
  return m;
}

TEST(ManifestText, DumpPrintsWhatToJsonPrints) {
  const Manifest m = varied_manifest();
  const std::string text = m.dump();
  EXPECT_EQ(text, m.to_json().dump());
  EXPECT_NE(text.find("\"manifest_xxh3\":\"xxh3:"), std::string::npos);
}

TEST(ManifestText, FormatVersionOneHasNoSelfChecksum) {
  Manifest m = varied_manifest();
  m.format_version = 1;
  EXPECT_EQ(m.dump(), m.to_json().dump());
  EXPECT_EQ(m.dump().find("manifest_xxh3\":\"xxh3"), std::string::npos);
}

TEST(ManifestText, EmptyListsAndManyTensors) {
  Manifest empty;
  empty.world_size = 1;
  EXPECT_EQ(empty.dump(), empty.to_json().dump());
  const Manifest many = many_tensors(3000, 2);
  EXPECT_EQ(many.dump(), many.to_json().dump());
}

TEST(ManifestText, InvalidUtf8FailsAsTheJsonTreeDoes) {
  Manifest m = varied_manifest();
  m.tensors[0].spec.name = "bad\xff";
  EXPECT_THROW((void)m.to_json().dump(), json::type_error);
  EXPECT_THROW((void)m.dump(), json::type_error);
}

TEST(ManifestText, ParsesBackToTheSameManifest) {
  const Manifest m = varied_manifest();
  const Manifest back = Manifest::parse(m.dump(), "x/manifest.json");
  EXPECT_EQ(back.to_json(), m.to_json());
  EXPECT_EQ(back.dump(), m.dump());
}

// The file's bytes are not what dump() wrote, but the value is: the
// canonical check accepts it.
TEST(ManifestText, ReformattedTextStillVerifies) {
  const Manifest m = varied_manifest();
  const std::string pretty = json::parse(m.dump()).dump(2);
  ASSERT_NE(pretty, m.dump());
  EXPECT_EQ(Manifest::parse(pretty, "x/manifest.json").to_json(), m.to_json());
  // A member of that name nested before the top-level one (engine_info
  // sorts first): the first occurrence is not the top-level member.
  Manifest nested = varied_manifest();
  nested.engine_info["manifest_xxh3"] = "xxh3:0000000000000000";
  EXPECT_EQ(Manifest::parse(nested.dump(), "x/manifest.json").to_json(), nested.to_json());
  // Members in another order, with whitespace between them.
  json value = json::parse(m.dump());
  std::string reordered = "{ \"world_size\" : 4";
  for (const auto& [key, member] : value.items()) {
    if (key != "world_size") reordered += ",\n  \"" + key + "\": " + member.dump();
  }
  reordered += "}\n";
  EXPECT_EQ(Manifest::parse(reordered, "x/manifest.json").to_json(), m.to_json());
}

// One digit of a scalar changed (the value stays valid): refused naming
// the field and both checksums, as the canonical check words it.
TEST(ManifestText, DamageIsNamedWithTheCanonicalDigest) {
  const Manifest m = varied_manifest();
  std::string text = m.dump();
  const std::size_t at = text.find("\"steps\":1234");
  ASSERT_NE(at, std::string::npos);
  text[at + 10] = '5';  // 1234 -> 1254
  const std::string recorded = json::parse(m.dump())["manifest_xxh3"].get<std::string>();
  json canonical = json::parse(text);
  canonical.erase("manifest_xxh3");
  const std::string value = canonical.dump();
  const std::string expected = format_xxh3(xxh3_64(value.data(), value.size()));
  EXPECT_TRUE(throws_error([&] { (void)Manifest::parse(text, "x/manifest.json"); },
                           ErrorCode::kCorrupt,
                           {"x/manifest.json: field manifest_xxh3: the manifest is damaged: "
                            "its content hashes to " + expected + ", not the recorded " +
                            recorded}));
  // The recorded digest itself damaged (still well-formed).
  std::string bad_record = m.dump();
  const std::size_t digit = bad_record.find("\"manifest_xxh3\":\"xxh3:") + 22;
  bad_record[digit] = bad_record[digit] == '0' ? '1' : '0';
  EXPECT_TRUE(throws_error([&] { (void)Manifest::parse(bad_record, "x/manifest.json"); },
                           ErrorCode::kCorrupt, {"field manifest_xxh3: the manifest is damaged"}));
}

// An ASCII manifest of every record kind, as a save writes it.
Manifest ascii_manifest() {
  Manifest m = many_tensors(6, 2);
  m.engine_info = {{"data_file", "data.bin"}, {"alignment", 4096}, {"ratio", 0.5}};
  m.scalars = {{"lr", 0.00025}, {"steps", 1234}, {"flag", true}, {"name", "adamw"}};
  m.metadata = {{"run", "r\u00e9sum\u00e9"}, {"list", {1, 2, 3}}};
  m.blobs = {BlobRecord{0, "rng", "data.bin", 9000, 100, 0xabcdefull},
             BlobRecord{1, "rng", "data.bin", 9100, 0, 0}};
  TensorRecord adam;
  adam.spec = TensorSpec{TensorGroup::kOptimizer, "w", "exp_avg", DType::kBF16, {4, 4}};
  adam.pieces.push_back(piece(0, Region::flat(FlatRange{0, 7}), 14, 100, 5));
  adam.pieces.push_back(piece(1, Region::flat(FlatRange{7, 16}), 18, 200, 6));
  m.tensors.push_back(adam);
  TensorRecord scalar;
  scalar.spec = TensorSpec{TensorGroup::kModel, "step", "", DType::kI64, {}};
  scalar.dataset = "/model/step";
  scalar.storage_offset = 123456 - 8;  // its last 8 bytes: the largest that fits
  scalar.pieces.push_back(piece(0, Region::box(Box{{}, {}}).replicated(), 8, 300, 7));
  m.tensors.push_back(scalar);
  return m;
}

// What the general parser makes of `text`, or nullopt where it refuses it.
std::optional<Manifest> general_parse(const std::string& text) {
  try {
    return Manifest::from_json(parse_untrusted_json(text, "x"));
  } catch (const Error&) {
    return std::nullopt;
  }
}

TEST(ManifestText, FastReaderReadsWhatDumpWrites) {
  Manifest many = many_tensors(2000, 2);
  many.blobs.clear();
  for (const Manifest& m : {ascii_manifest(), many}) {
    const std::string text = m.dump();
    const std::optional<Manifest> fast = parse_as_written(text);
    ASSERT_TRUE(fast.has_value());
    EXPECT_EQ(fast->to_json(), m.to_json());
    EXPECT_EQ(fast->dump(), text);
  }
  Manifest v1 = ascii_manifest();
  v1.format_version = 1;
  ASSERT_TRUE(parse_as_written(v1.dump()).has_value());
  EXPECT_EQ(parse_as_written(v1.dump())->to_json(), v1.to_json());
  // Escapes and non-ASCII names are the general parser's.
  EXPECT_FALSE(parse_as_written(varied_manifest().dump()).has_value());
}

// Every single-byte change of a written manifest: whatever the fast reader
// accepts, the general parser accepts too, with the same result. Version 1
// (no self-checksum) lets changed values through to the field checks;
// version 2's self-checksum leaves none standing.
// Two records of one key, anywhere in a long list: the fast reader gives
// up and the general parser names the key; distinct keys that collide in
// the fast reader's table (many of them) are no duplicates.
TEST(ManifestText, ADuplicateKeyIsRefusedWhereverItIs) {
  Manifest m = many_tensors(3000, 2);
  m.blobs.clear();  // one's name has an escape, which the fast reader leaves
  const std::string text = m.dump();
  ASSERT_TRUE(parse_as_written(text).has_value());
  for (const std::size_t at : {std::size_t{1}, std::size_t{1500}, std::size_t{2999}}) {
    Manifest dup = m;
    dup.tensors[at].spec.name = dup.tensors[at - 1].spec.name;
    const std::string dup_text = dup.dump();
    EXPECT_FALSE(parse_as_written(dup_text).has_value()) << at;
    EXPECT_TRUE(throws_error([&] { (void)Manifest::parse(dup_text, "m.json"); },
                             ErrorCode::kCorrupt,
                             {"duplicate tensor \"model/" + dup.tensors[at].spec.name + "\""}))
        << at;
  }
}

TEST(ManifestText, FastReaderAcceptsNothingTheParserRefuses) {
  for (const int version : {1, 2}) {
    Manifest m = ascii_manifest();
    m.format_version = version;
    const std::string text = m.dump();
    std::size_t accepted = 0;
    for (std::size_t at = 0; at < text.size(); ++at) {
      for (const char c : {'0', '1', '9', '-', '"', ',', ']', '}', ' ', 'e', '\\', '\xc3'}) {
        if (text[at] == c) continue;
        std::string damaged = text;
        damaged[at] = c;
        const std::optional<Manifest> fast = parse_as_written(damaged);
        if (!fast) continue;
        ++accepted;
        const std::optional<Manifest> general = general_parse(damaged);
        ASSERT_TRUE(general.has_value()) << "version " << version << ", byte " << at
                                         << " -> '" << c << "'";
        EXPECT_EQ(fast->to_json(), general->to_json()) << "byte " << at;
      }
      EXPECT_FALSE(parse_as_written(text.substr(0, at)).has_value()) << "cut at " << at;
    }
    if (version == 1) {
      EXPECT_GT(accepted, 100u);
    } else {
      EXPECT_EQ(accepted, 0u);
    }
  }
}

// Numbers of 19 and 20 digits up to 2^64 - 1 read as the general parser
// reads them (the scanner checks for overflow only past the 19th digit);
// 2^64 is refused by both. Version 1: no self-checksum to stop the edit.
TEST(ManifestText, FastReaderReadsNumbersUpToTheUnsignedLimit) {
  std::string widest;
  const std::uint64_t widths[] = {9999999999999999999u, 10000000000000000000u,
                                  ~std::uint64_t{0}};
  for (const std::uint64_t n : widths) {
    SCOPED_TRACE(n);
    Manifest m = ascii_manifest();
    m.format_version = 1;
    TensorRecord r;
    r.spec = TensorSpec{TensorGroup::kModel, "long", "", DType::kU8, {n}};
    r.pieces.push_back(piece(0, Region::box(Box{{n - 2}, {2}}), 2, 64, 7));
    m.tensors.push_back(std::move(r));
    widest = m.dump();
    const std::optional<Manifest> fast = parse_as_written(widest);
    ASSERT_TRUE(fast.has_value());
    EXPECT_EQ(fast->tensors.back().spec.shape, Shape{n});
    EXPECT_EQ(fast->to_json(), m.to_json());
    ASSERT_TRUE(general_parse(widest).has_value());
  }
  // 2^64 as the piece's file offset, which wrapped to 0 would fit the file.
  const std::string offset = "\"nbytes\":2,\"offset\":64,";
  const std::size_t at = widest.find(offset);
  ASSERT_NE(at, std::string::npos);
  widest.replace(at, offset.size(), "\"nbytes\":2,\"offset\":18446744073709551616,");
  EXPECT_FALSE(parse_as_written(widest).has_value());
  EXPECT_FALSE(general_parse(widest).has_value());
}

// storage_offset (hdf5 tensors): printed after "shape" as the JSON tree
// sorts it, read back by both readers, and refused by both where the bytes
// it gives do not fit the recorded file, or there is no dataset.
TEST(ManifestText, StorageOffsetIsWrittenAndCheckedByBothReaders) {
  const Manifest m = ascii_manifest();
  const std::string text = m.dump();
  EXPECT_EQ(text, m.to_json().dump());
  EXPECT_NE(text.find("\"shape\":[],\"storage_offset\":123448}"), std::string::npos);
  const std::optional<Manifest> fast = parse_as_written(text);
  ASSERT_TRUE(fast.has_value());
  EXPECT_EQ(fast->tensors.back().storage_offset, std::optional<std::uint64_t>(123448));
  EXPECT_FALSE(fast->tensors.front().storage_offset.has_value());
  ASSERT_TRUE(general_parse(text).has_value());
  EXPECT_EQ(general_parse(text)->to_json(), m.to_json());
  // One byte too far, an overflow, no dataset, a file not listed.
  const std::size_t last = m.tensors.size() - 1;
  const std::string field = "field tensors[" + std::to_string(last) + "].storage_offset: ";
  Manifest beyond = m;
  beyond.tensors[last].storage_offset = 123456 - 7;
  Manifest overflow = m;
  overflow.tensors[last].storage_offset = ~std::uint64_t{0} - 3;
  Manifest no_dataset = m;
  no_dataset.tensors[last].dataset.clear();
  Manifest unlisted = m;
  unlisted.files[0].path = "other.bin";
  const std::vector<std::pair<const Manifest*, std::string>> bad = {
      {&beyond, field + "tensor \"model/step\": its 8 bytes at offset 123449 end at byte "
                        "123457, beyond the 123456 bytes files records for \"data.bin\""},
      {&overflow, field + "tensor \"model/step\": storage_offset + the tensor's 8 bytes "
                          "overflows"},
      {&no_dataset, field + "given for a tensor without a dataset"},
      {&unlisted, field + "tensor \"model/step\": its data file \"data.bin\" is not listed "
                          "in files"},
  };
  for (const auto& [manifest, message] : bad) {
    const std::string damaged = manifest->dump();
    EXPECT_FALSE(parse_as_written(damaged).has_value()) << message;
    EXPECT_TRUE(throws_error([&] { (void)Manifest::parse(damaged, "x/manifest.json"); },
                             ErrorCode::kCorrupt, {"x/manifest.json: " + message}))
        << message;
  }
}

}  // namespace
}  // namespace floe::test
