// Hostile manifests: a real manifest.json edited one field at a time into
// what an attacker or a broken tool could write (paths leaving the
// checkpoint directory, absurd shapes and sizes, deep nesting). Each is
// refused with Error(kCorrupt) naming the file and the field, by the parser
// and through load, verify and resume on disk; a data file replaced by a
// symlink leading out of the checkpoint is refused even when the bytes it
// leads to are right; and nothing committed changes.
#include <cstring>
#include <fstream>
#include <functional>

#include "engine_fixture.hpp"
#include "hf_test_util.hpp"

namespace floe::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Hostile {
  const char* name;
  std::function<void(json&)> edit;
  std::string rule;  // a part of the message
  ErrorCode code = ErrorCode::kCorrupt;
};

json& first_piece(json& m) { return m["tensors"][0]["pieces"][0]; }

std::vector<Hostile> hostile_edits() {
  const auto piece_file = [](std::string value) {
    return [value](json& m) { first_piece(m)["file"] = value; };
  };
  return {
      {"piece_dotdot", piece_file("../outside.bin"), "leaves the checkpoint directory"},
      {"piece_dotdot_inner", piece_file("a/../../outside.bin"),
       "leaves the checkpoint directory"},
      {"piece_absolute", piece_file("/etc/passwd"), "is absolute"},
      {"piece_dot", piece_file("./data"), "has a '.' component"},
      {"piece_empty_part", piece_file("a//b"), "has an empty component"},
      {"piece_empty", piece_file(""), "is empty"},
      {"piece_nul", piece_file(std::string("data\0.bin", 9)), "path \"data\\x00.bin\" contains NUL"},
      {"blob_dotdot", [](json& m) { m["blobs"][0]["file"] = "../../rng.bin"; },
       "field blobs[0].file: path \"../../rng.bin\" leaves the checkpoint directory"},
      {"files_absolute", [](json& m) { m["files"][0]["path"] = "/tmp/x"; },
       "field files[0].path: path \"/tmp/x\" is absolute"},
      {"shape_negative", [](json& m) { m["tensors"][0]["shape"][0] = -37; },
       "tensors[0].shape: expected integers >= 0"},
      {"shape_float", [](json& m) { m["tensors"][0]["shape"][0] = 37.5; },
       "expected integers >= 0"},
      {"shape_overflow",
       [](json& m) { m["tensors"][0]["shape"] = {std::uint64_t{1} << 62, 16}; },
       "tensors[0].shape: byte size overflows 64 bits"},
      {"shape_max",
       [](json& m) { m["tensors"][0]["shape"] = {~std::uint64_t{0}, ~std::uint64_t{0}}; },
       "byte size overflows 64 bits"},
      {"shape_too_many_dims", [](json& m) { m["tensors"][0]["shape"] = json(std::vector<int>(65, 1)); },
       "more than 64 dimensions"},
      {"nbytes_wrong", [](json& m) { first_piece(m)["nbytes"] = 1; },
       "nbytes: does not match the region's size"},
      {"offset_overflow",
       [](json& m) { first_piece(m)["offset"] = ~std::uint64_t{0} - 3; },
       "offset + nbytes overflows"},
      {"offset_negative", [](json& m) { first_piece(m)["offset"] = -4096; },
       "offset: expected an integer >= 0"},
      {"region_outside",
       [](json& m) {
         first_piece(m)["region"] = {{"offset", {30, 0}}, {"extent", {20, 16}}};
       },
       "tensors[0].pieces[0].region"},
      {"region_flat_reversed",
       [](json& m) { first_piece(m)["region"] = {{"flat", {9, 2}}}; },
       "expected [begin, end] with begin <= end"},
      {"rank_too_big", [](json& m) { first_piece(m)["rank"] = 1 << 20; },
       "rank: not below world_size"},
      {"world_size_zero", [](json& m) { m["world_size"] = 0; }, "world_size: out of range"},
      {"world_size_huge", [](json& m) { m["world_size"] = std::uint64_t{1} << 40; },
       "world_size: out of range"},
      {"step_too_large", [](json& m) { m["step"] = ~std::uint64_t{0}; },
       "field step: is too large"},
      {"step_string", [](json& m) { m["step"] = "7"; }, "field step: expected an integer"},
      {"dtype_unknown", [](json& m) { m["tensors"][0]["dtype"] = "F128"; },
       "tensors[0].dtype"},
      {"checksum_garbage", [](json& m) { first_piece(m)["xxh3"] = "xxh3:zz"; },
       "tensors[0].pieces[0].xxh3"},
      {"duplicate_tensor",
       [](json& m) { m["tensors"].push_back(m["tensors"][0]); }, "duplicate tensor"},
      {"scalar_object", [](json& m) { m["scalars"]["lr"] = {{"a", 1}}; },
       "scalars.lr: expected a boolean, number or string"},
      {"tensors_not_array", [](json& m) { m["tensors"] = {{"a", 1}}; },
       "field tensors: expected an array"},
      {"deeply_nested_metadata",
       [](json& m) {
         json deep = json::array();
         for (int i = 0; i < 200; ++i) deep = json::array({deep});
         m["metadata"] = deep;
       },
       "nested deeper than"},
      {"newer_format", [](json& m) { m["format_version"] = 99; },
       "format version 99 is newer", ErrorCode::kUnsupported},
      {"not_floe", [](json& m) { m["format"] = "safetensors"; },
       "expected \"floe-checkpoint\""},
  };
}

using Rig = EngineRig;

class HostileManifest : public ::testing::TestWithParam<std::string> {};

// Every edit through the parser alone, and the raw texts no edit can make.
TEST_P(HostileManifest, TheParserRefusesEveryEditNamingFileAndField) {
  TempDir tmp;
  Rig rig(tmp / "ckpt", GetParam());
  rig.save_at(1);
  const fs::path path = tmp / "ckpt" / "global_step_1" / "manifest.json";
  const json original = json::parse(read_bytes(path));
  ASSERT_NO_THROW(Manifest::parse(original.dump(), path));
  for (const Hostile& h : hostile_edits()) {
    json edited = original;
    h.edit(edited);
    EXPECT_TRUE(throws_error([&] { (void)Manifest::parse(edited.dump(), path); }, h.code,
                             {path.string() + ": ", h.rule}))
        << h.name;
  }
  const std::vector<std::pair<std::string, std::string>> texts = {
      {"", "invalid JSON"},
      {std::string(100000, '['), "nested deeper than 64 levels"},
      {std::string(100000, '{'), "nested deeper than 64 levels"},
      {"{\"format\": \"floe-checkpoint\", \"x\": \"\xff\"}", "invalid JSON"},
      {original.dump().substr(0, original.dump().size() / 2), "invalid JSON"},
      {"[]", "expected an object"},
      {"null", "expected an object"},
  };
  for (const auto& [text, rule] : texts) {
    EXPECT_TRUE(throws_error([&] { (void)Manifest::parse(text, path); }, ErrorCode::kCorrupt,
                             {path.string() + ": ", rule}))
        << rule << " (" << text.size() << " bytes)";
  }
}

// The path edits and a deep nest, on disk: load, verify and resume refuse
// the checkpoint, and no file changes (resume sets it aside, by rename).
TEST_P(HostileManifest, LoadVerifyAndResumeRefuseItOnEveryRank) {
  const std::string engine = GetParam();
  for (const Hostile& h : hostile_edits()) {
    const std::string name = h.name;
    if (name.rfind("piece_", 0) != 0 && name.rfind("blob_", 0) != 0 &&
        name.rfind("files_", 0) != 0 && name != "deeply_nested_metadata" &&
        name != "shape_overflow" && name != "offset_overflow") {
      continue;
    }
    run_within(std::chrono::seconds(60), [&] {
      TempDir tmp;
      const fs::path out = tmp / "ckpt";
      Rig rig(out, engine);
      rig.save_at(1);
      rig.save_at(2);
      const fs::path dir = out / "global_step_2";
      if (world_rank() == 0) {
        json m = json::parse(read_bytes(dir / "manifest.json"));
        h.edit(m);
        write_bytes(dir / "manifest.json", m.dump());
        write_bytes(tmp / "outside.bin", "outside");  // what "../" could reach
      }
      MPI_Barrier(MPI_COMM_WORLD);
      std::string before = world_rank() == 0 ? tree_listing(tmp.path()) : "";
      const Caught load = catch_error([&] { rig.engine->load(dir); });
      EXPECT_TRUE(is_error(load, h.code, {dir.string(), h.rule})) << name;
      EXPECT_TRUE(same_on_all_ranks(load.message)) << name;
      const Caught verify = catch_error([&] { (void)verify_checkpoint(dir, MPI_COMM_WORLD); });
      EXPECT_TRUE(is_error(verify, h.code, {h.rule})) << name;
      EXPECT_TRUE(same_on_all_ranks(verify.message)) << name;
      if (world_rank() == 0) {
        EXPECT_EQ(tree_listing(tmp.path()), before) << name;
      }
      Rig fresh(out, engine);
      std::optional<Manifest> resumed;
      std::vector<std::string> warnings;
      set_log_sink([&](LogLevel, const std::string& m) { warnings.push_back(m); });
      const Caught resume = catch_error([&] { resumed = fresh.engine->resume(); });
      set_log_sink(nullptr);
      EXPECT_FALSE(resume.thrown) << name << ": " << resume.message;
      ASSERT_TRUE(resumed.has_value()) << name;
      EXPECT_EQ(resumed->step, 1) << name;
      EXPECT_TRUE(state_holds_expected(fresh.trainer.state())) << name;
      if (world_rank() == 0) {
        EXPECT_TRUE(fs::exists(out / "global_step_2.corrupt" / "manifest.json")) << name;
        EXPECT_EQ(read_bytes(out / "latest"), "global_step_1\n") << name;
        EXPECT_EQ(read_bytes(tmp / "outside.bin"), "outside") << name;
      }
    });
  }
}

// A data file swapped for a symlink to an exact copy outside the
// checkpoint: the bytes would verify, the path must not.
TEST_P(HostileManifest, ADataFileSymlinkedOutOfTheCheckpointIsRefused) {
  TempDir tmp;
  const fs::path out = tmp / "ckpt";
  Rig rig(out, GetParam());
  rig.save_at(1);
  const fs::path dir = out / "global_step_1";
  const std::string data = Manifest::read(dir).files.at(0).path;
  if (world_rank() == 0) {
    fs::copy_file(dir / data, tmp / "elsewhere.bin");
    fs::remove(dir / data);
    fs::create_symlink(tmp / "elsewhere.bin", dir / data);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const Caught load = catch_error([&] { rig.engine->load(dir); });
  EXPECT_TRUE(is_error(load, ErrorCode::kCorrupt, {data, "resolves outside", "symlink"}));
  EXPECT_TRUE(same_on_all_ranks(load.message));
  EXPECT_TRUE(throws_error([&] { (void)verify_checkpoint(dir, MPI_COMM_WORLD); },
                           ErrorCode::kCorrupt, {data, "resolves outside"}));
  // A symlink that stays inside the directory is an ordinary file name.
  if (world_rank() == 0) {
    fs::remove(dir / data);
    fs::rename(tmp / "elsewhere.bin", dir / "real.bin");
    fs::create_symlink("real.bin", dir / data);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(verify_checkpoint(dir, MPI_COMM_WORLD).ok());
}

// Found by fuzz/manifest_fuzzer.cpp: from_json refused the document
// to_json builds (its int fields are signed JSON numbers, and counts were
// accepted only as unsigned ones), so a manifest did not survive a round
// trip in memory.
TEST_P(HostileManifest, FromJsonReadsWhatToJsonBuilds) {
  TempDir tmp;
  Rig rig(tmp / "ckpt", GetParam());
  rig.save_at(1);
  const Manifest read = Manifest::read(tmp / "ckpt" / "global_step_1");
  const json built = read.to_json();
  Manifest again;
  ASSERT_NO_THROW(again = Manifest::from_json(built));
  EXPECT_EQ(again.to_json(), built);
  EXPECT_EQ(again.world_size, world_size());
  // A negative count is still refused, signed or not.
  json negative = built;
  negative["world_size"] = -1;
  EXPECT_TRUE(throws_error([&] { (void)Manifest::from_json(negative); }, ErrorCode::kCorrupt,
                           {"field world_size: expected an integer >= 0"}));
}

// manifest_xxh3: an edit that keeps every field valid (the epoch) is
// refused by the parser, load and verify, naming the file and the field; a
// version 2 manifest without it is refused; a version 1 manifest (written
// before the field existed) is still read, with or without the edit.
TEST_P(HostileManifest, TheSelfChecksumCatchesValidEditsAndVersion1StillReads) {
  TempDir tmp;
  Rig rig(tmp / "ckpt", GetParam());
  rig.save_at(1);
  MPI_Barrier(MPI_COMM_WORLD);  // rank 0's commit is done: every rank reads it
  const fs::path dir = tmp / "ckpt" / "global_step_1";
  const fs::path path = dir / "manifest.json";
  const json original = json::parse(read_bytes(path));
  ASSERT_EQ(original["format_version"], 2);
  ASSERT_TRUE(original.contains("manifest_xxh3"));
  json edited = original;
  edited["epoch"] = original["epoch"].get<std::int64_t>() + 1;
  EXPECT_TRUE(throws_error([&] { (void)Manifest::parse(edited.dump(), path); },
                           ErrorCode::kCorrupt,
                           {path.string() + ": field manifest_xxh3: the manifest is damaged: "
                                            "its content hashes to xxh3:",
                            ", not the recorded " + original["manifest_xxh3"].get<std::string>()}));
  json unsealed = original;
  unsealed.erase("manifest_xxh3");
  EXPECT_TRUE(throws_error([&] { (void)Manifest::parse(unsealed.dump(), path); },
                           ErrorCode::kCorrupt,
                           {"field manifest_xxh3: missing (required from format version 2)"}));
  json version1 = edited;
  version1.erase("manifest_xxh3");
  version1["format_version"] = 1;
  Manifest old;
  ASSERT_NO_THROW(old = Manifest::parse(version1.dump(), path));
  EXPECT_EQ(old.format_version, 1);
  EXPECT_EQ(old.epoch, edited["epoch"].get<std::int64_t>());
  EXPECT_FALSE(old.to_json().contains("manifest_xxh3"));  // written back as it was
  // On disk: load and verify refuse the edit on every rank; version 1 loads.
  // Every rank has read the original before rank 0 replaces it (a slow
  // rank read the edit, or half a file, and left for the next test while
  // the others waited here).
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) write_bytes(path, edited.dump());
  MPI_Barrier(MPI_COMM_WORLD);
  const Caught load = catch_error([&] { rig.engine->load(dir); });
  EXPECT_TRUE(is_error(load, ErrorCode::kCorrupt, {path.string(), "manifest_xxh3"}));
  EXPECT_TRUE(same_on_all_ranks(load.message));
  const Caught verify = catch_error([&] { (void)verify_checkpoint(dir, MPI_COMM_WORLD); });
  EXPECT_TRUE(is_error(verify, ErrorCode::kCorrupt, {path.string(), "manifest_xxh3"}));
  if (world_rank() == 0) write_bytes(path, version1.dump());
  MPI_Barrier(MPI_COMM_WORLD);
  Rig fresh(tmp / "ckpt", GetParam());
  for (auto& s : fresh.trainer.state().tensors()) std::memset(s.data(), 0, s.nbytes());
  EXPECT_NO_THROW(fresh.engine->load(dir));
  EXPECT_TRUE(state_holds_expected(fresh.trainer.state()));
  EXPECT_TRUE(verify_checkpoint(dir, MPI_COMM_WORLD).ok());
}

INSTANTIATE_TEST_SUITE_P(Engines, HostileManifest, ::testing::ValuesIn(resumable_engines()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace floe::test
