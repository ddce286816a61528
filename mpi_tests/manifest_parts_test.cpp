// Reading a manifest with the scan split between the ranks
// (commit/manifest_parts.hpp): the parts, in order, hold every record once
// and read as the whole text does; the ranks' exchange gives every rank
// Manifest::parse's result; text that one part cannot read as written, a
// key repeated across parts and damage all end in the general parser, with
// its error, alike on every rank.
#include "commit/manifest_parts.hpp"

#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <mpi.h>

#include "commit/manifest_text.hpp"
#include "core/comm.hpp"
#include "floe/manifest.hpp"
#include "test_util.hpp"

namespace floe::test {
namespace {

// `count` tensors saved by `ranks` ranks, as an engine writes them: model
// tensors in row boxes with datasets and storage offsets, every third an
// optimizer tensor in flat ranges, every fifth replicated (one piece).
Manifest saved(std::size_t count, int ranks) {
  Manifest m;
  m.floe_version = "0.3.0";
  m.engine = "hdf5";
  m.tag = "global_step_7";
  m.step = 7;
  m.world_size = ranks;
  m.created_utc = "2026-11-30T12:00:00Z";
  m.files.push_back(FileRecord{"checkpoint.h5", 1u << 30});
  m.blobs.push_back(BlobRecord{0, "rng", "checkpoint.h5", 100, 16, 99});
  m.scalars = {{"lr", 0.001}, {"steps", 7}};
  m.metadata = {{"run", "parts"}};
  m.engine_info = {{"file", "checkpoint.h5"}};
  const auto n = static_cast<std::uint64_t>(ranks);
  for (std::size_t t = 0; t < count; ++t) {
    TensorRecord r;
    const std::string name = "layers." + std::to_string(t) + ".weight";
    const std::uint64_t rows = 4 * n, cols = 8;
    if (t % 3 == 2) {
      r.spec = TensorSpec{
          TensorGroup::kOptimizer, name, "exp_avg", DType::kF32, {rows, cols}};
      for (std::uint64_t k = 0; k < n; ++k) {
        r.pieces.push_back(PieceRecord{
            static_cast<int>(k), Region::flat(FlatRange{k * 32, (k + 1) * 32}),
            "checkpoint.h5", 0, 128, t * 31 + k});
      }
    } else {
      r.spec =
          TensorSpec{TensorGroup::kModel, name, "", DType::kF32, {rows, cols}};
      r.dataset = "/model/" + name;
      r.storage_offset = 4096 + t * rows * cols * 4;
      if (t % 5 == 0) {
        r.pieces.push_back(PieceRecord{0,
                                       Region::whole(r.spec.shape).replicated(),
                                       "checkpoint.h5", 0, rows * cols * 4, t});
      } else {
        for (std::uint64_t k = 0; k < n; ++k) {
          r.pieces.push_back(PieceRecord{
              static_cast<int>(k), Region::box(Box{{4 * k, 0}, {4, cols}}),
              "checkpoint.h5", 0, 4 * cols * 4, ~(t + k)});
        }
      }
    }
    m.tensors.push_back(std::move(r));
  }
  return m;
}

// saved() with what a manifest may also hold: format version 1, names
// with braces and "d", a 5-d tensor, a tensor of no elements and no
// pieces, pieces in two files, other dtypes, metadata and engine_info
// holding the patterns the split looks for.
Manifest varied(std::size_t count, int ranks, int version) {
  Manifest m = saved(count, ranks);
  m.format_version = version;
  m.files.push_back(FileRecord{"second.bin", 1u << 20});
  // As text: [{"a":1},{"dataset":"x"}] and {"a":[1],"world_size":2}.
  m.metadata = {{"list", {{{"a", 1}}, {{"dataset", "x"}}}},
                {"m", {{"a", {1}}, {"world_size", 2}}},
                {"tail", "],\"world_size\":1}"}};
  m.engine_info = {{"file", "checkpoint.h5"},
                   {"x", {{"a", {1}}, {"world_size", 2}}}};
  for (std::size_t t = 1; t < count; t += 7) {
    TensorRecord& r = m.tensors[t];
    r.spec.name = "{d}.},{d" + std::to_string(t);
    r.dataset.clear();
    r.storage_offset.reset();
    r.spec.dtype = t % 2 ? DType::kBF16 : DType::kU8;
    const std::uint64_t element = dtype_size(r.spec.dtype);
    for (std::size_t k = 0; k < r.pieces.size(); ++k) {
      r.pieces[k].nbytes = r.pieces[k].region.elements() * element;
      r.pieces[k].file = k % 2 ? "second.bin" : "checkpoint.h5";
      r.pieces[k].offset = 4096 * k + t;
    }
  }
  TensorRecord five;
  five.spec =
      TensorSpec{TensorGroup::kModel, "five", "", DType::kI64, {2, 1, 3, 1, 2}};
  five.pieces.push_back(
      PieceRecord{0, Region::box(Box{{0, 0, 0, 0, 0}, {1, 1, 3, 1, 2}}),
                  "second.bin", 64, 48, 5});
  five.pieces.push_back(
      PieceRecord{ranks - 1, Region::box(Box{{1, 0, 0, 0, 0}, {1, 1, 3, 1, 2}}),
                  "second.bin", 128, 48, 6});
  m.tensors.insert(m.tensors.begin() + static_cast<std::ptrdiff_t>(count / 2),
                   five);
  TensorRecord none;
  none.spec =
      TensorSpec{TensorGroup::kOptimizer, "none", "step", DType::kF32, {0, 8}};
  m.tensors.insert(m.tensors.begin() + static_cast<std::ptrdiff_t>(count / 3),
                   none);
  return m;
}

// The records of every part, in order.
std::optional<Manifest> joined_parts(const std::string& text, int parts) {
  std::optional<Manifest> out;
  std::vector<std::string_view> keys;
  for (int p = 0; p < parts; ++p) {
    std::optional<ManifestPart> part = parse_part_as_written(text, p, parts);
    if (!part) return std::nullopt;
    if (!out) {
      out = part->manifest;
      out->tensors.clear();
    }
    for (auto& t : part->manifest.tensors) out->tensors.push_back(std::move(t));
    keys.insert(keys.end(), part->keys.begin(), part->keys.end());
  }
  if (!keys_distinct(keys)) return std::nullopt;
  return out;
}

TEST(ManifestParts, PartsTogetherHoldEveryRecordOnce) {
  for (const std::size_t count : {0, 1, 2, 3, 7, 500}) {
    const Manifest m = saved(count, 3);
    const std::string text = m.dump();
    for (int parts = 1; parts <= 6; ++parts) {
      const std::optional<Manifest> joined = joined_parts(text, parts);
      ASSERT_TRUE(joined.has_value())
          << count << " tensors, " << parts << " parts";
      EXPECT_EQ(joined->to_json(), m.to_json())
          << count << " tensors, " << parts << " parts";
    }
  }
  for (const int version : {1, 2}) {
    const Manifest m = varied(300, 3, version);
    const std::string text = m.dump();
    ASSERT_NE(text.find("},{\"dataset\":"), std::string::npos);
    ASSERT_NE(text.find("],\"world_size\":2"), std::string::npos);
    ASSERT_TRUE(parse_as_written(text).has_value()) << "version " << version;
    for (const int parts : {2, 3, 4, 16, 400}) {
      const std::optional<Manifest> joined = joined_parts(text, parts);
      ASSERT_TRUE(joined.has_value())
          << "version " << version << ", " << parts << " parts";
      EXPECT_EQ(joined->to_json(), m.to_json())
          << "version " << version << ", " << parts;
    }
  }
  // Each part of a long list has about its share of the records.
  const std::string text = saved(1000, 4).dump();
  for (int p = 0; p < 4; ++p) {
    const std::size_t records =
        parse_part_as_written(text, p, 4)->manifest.tensors.size();
    EXPECT_GT(records, 150u) << "part " << p;
    EXPECT_LT(records, 350u) << "part " << p;
  }
}

// On every rank, what Manifest::parse gives, or its error.
void expect_as_parse(const std::string& text, const Comm& comm) {
  const Caught expected =
      catch_error([&] { (void)Manifest::parse(text, "d/manifest.json"); });
  Manifest on_ranks;
  const Caught got = catch_error([&] {
    on_ranks = parse_manifest_on_ranks(text, "d/manifest.json", comm, 0);
  });
  EXPECT_EQ(got.thrown, expected.thrown);
  EXPECT_EQ(got.message, expected.message);
  if (!expected.thrown) {
    EXPECT_EQ(on_ranks.to_json(),
              Manifest::parse(text, "d/manifest.json").to_json());
  }
  // Every rank alike: the same message everywhere.
  const std::vector<std::string> all = comm.allgather_bytes(got.message);
  for (const std::string& message : all) EXPECT_EQ(message, got.message);
}

TEST(ManifestParts, EveryRankGetsWhatParseGives) {
  const Comm comm(MPI_COMM_WORLD);
  for (const std::size_t count : {0, 1, 5, 2000}) {
    expect_as_parse(saved(count, comm.size()).dump(), comm);
  }
  for (const int version : {1, 2})
    expect_as_parse(varied(900, comm.size(), version).dump(), comm);
}

// A record late in the list with a non-ASCII name: its part is not as
// the scanner reads, every rank reads the text with the general parser.
TEST(ManifestParts, APartNotAsWrittenIsReadByTheGeneralParser) {
  const Comm comm(MPI_COMM_WORLD);
  Manifest m = saved(2000, 2);
  m.tensors[1990].spec.name = "слой";
  m.tensors[1990].dataset = "/model/слой";
  const std::string text = m.dump();
  ASSERT_FALSE(parse_part_as_written(text, 3, 4).has_value());
  ASSERT_TRUE(parse_part_as_written(text, 0, 4).has_value());
  expect_as_parse(text, comm);
}

// A key in the first part repeated in the last: no part sees both.
TEST(ManifestParts, AKeyRepeatedAcrossPartsIsRefused) {
  const Comm comm(MPI_COMM_WORLD);
  Manifest m = saved(2000, 2);
  m.tensors[1999].spec = m.tensors[1].spec;
  m.tensors[1999].pieces = m.tensors[1].pieces;
  m.tensors[1999].dataset = m.tensors[1].dataset;
  const std::string text = m.dump();
  ASSERT_TRUE(parse_part_as_written(text, 0, 2).has_value());
  ASSERT_TRUE(parse_part_as_written(text, 1, 2).has_value());
  EXPECT_TRUE(throws_error(
      [&] { (void)Manifest::parse(text, "d/manifest.json"); },
      ErrorCode::kCorrupt, {"duplicate tensor \"model/layers.1.weight\""}));
  expect_as_parse(text, comm);
}

// A changed digit in a record of the last part (the self-checksum), a
// record cut short in the middle part and a region beyond its tensor in
// the first: Manifest::parse's error on every rank.
TEST(ManifestParts, DamageFailsAlikeOnEveryRank) {
  const Comm comm(MPI_COMM_WORLD);
  const Manifest m = saved(2000, 2);
  const std::string text = m.dump();
  std::string digit = text;
  const std::size_t at =
      digit.find("\"storage_offset\":", digit.size() * 9 / 10);
  digit[at + 18] = digit[at + 18] == '1' ? '2' : '1';
  EXPECT_TRUE(
      throws_error([&] { (void)Manifest::parse(digit, "d/manifest.json"); },
                   ErrorCode::kCorrupt, {"manifest_xxh3"}));
  expect_as_parse(digit, comm);
  std::string cut = text;
  cut.erase(cut.find("},{\"", cut.size() / 2), 3);
  expect_as_parse(cut, comm);
  Manifest outside = m;
  outside.tensors[3].pieces[0].region = Region::box(Box{{100, 0}, {4, 8}});
  expect_as_parse(outside.dump(), comm);
  // Checks a part makes of its own records, in the middle of the list,
  // version 1 (no self-checksum to catch them first).
  Manifest v1 = saved(2000, 2);
  v1.format_version = 1;
  Manifest rank = v1;
  rank.tensors[1001].pieces[1].rank = 2;  // world size 2
  EXPECT_TRUE(throws_error(
      [&] { (void)Manifest::parse(rank.dump(), "d/manifest.json"); },
      ErrorCode::kCorrupt, {"rank"}));
  expect_as_parse(rank.dump(), comm);
  Manifest beyond = v1;
  beyond.tensors[1003].storage_offset =
      (1u << 30) - 8;  // its bytes end past the file
  EXPECT_TRUE(throws_error(
      [&] { (void)Manifest::parse(beyond.dump(), "d/manifest.json"); },
      ErrorCode::kCorrupt, {"storage_offset"}));
  expect_as_parse(beyond.dump(), comm);
}

}  // namespace
}  // namespace floe::test
