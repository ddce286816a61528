// The manifest's storage_offset (docs/manifest.md, docs/hdf5_layout.md "How
// it reads"): the hdf5 writer records where each dataset's bytes lie, the
// reader then opens no dataset to read them; checkpoints without it (as
// Floe wrote them before) are still read by checking each dataset; an
// offset that does not fit the data file is refused naming the tensor and
// the field; a wrong offset inside the file fails the checksums; a data
// file rewritten by another program is refused by its size. Reads through
// the offsets on load's read-ahead thread: hdf5_offset_read_ahead_test.cpp;
// read_some's batched reads: hdf5_offset_read_some_test.cpp.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <hdf5.h>

#include "hdf5_storage_offset_support.hpp"

namespace floe::test {
namespace {

using nlohmann::json;

// `value` summed over every rank. Collective.
std::uint64_t sum_over_ranks(std::uint64_t value) {
  MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  return value;
}

// What serial HDF5 reports as the start of each tensor's storage
// (H5Dget_offset), or nothing for a dataset without storage. Rank 0 only.
std::map<std::string, std::optional<std::uint64_t>> hdf5_offsets(
    const fs::path& file, const Manifest& manifest) {
  std::map<std::string, std::optional<std::uint64_t>> out;
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  EXPECT_GE(f, 0) << file;
  for (const auto& t : manifest.tensors) {
    const hid_t d = H5Dopen2(f, t.dataset.c_str(), H5P_DEFAULT);
    EXPECT_GE(d, 0) << t.dataset;
    const haddr_t at = H5Dget_offset(d);
    out[t.spec.key()] =
        at == HADDR_UNDEF ? std::nullopt : std::optional<std::uint64_t>(at);
    H5Dclose(d);
  }
  H5Fclose(f);
  return out;
}

// Every tensor, batched or written by its own H5Dwrite, gets the address
// HDF5 gave its dataset (0 for the zero-size one, which has none), and the
// manifest on disk carries it.
TEST(Hdf5StorageOffset, TheManifestRecordsWhereEveryDatasetsBytesLie) {
  for (const json& options :
       {json::object(), json{{"small_tensor_bytes", 0}}}) {
    SCOPED_TRACE(options.dump());
    RegionKindsCheckpoint c;
    const Manifest& manifest = c.write(options);
    ASSERT_EQ(manifest.tensors.size(), 6u);
    if (c.rank == 0) {
      const auto stored = hdf5_offsets(c.file(), manifest);
      // No ASSERT here: the other ranks go on to collective calls.
      for (const auto& t : manifest.tensors) {
        EXPECT_TRUE(t.storage_offset.has_value()) << t.spec.key();
        if (!t.storage_offset) continue;
        if (t.spec.nbytes() == 0) {
          EXPECT_EQ(*t.storage_offset, 0u) << t.spec.key();
        } else {
          EXPECT_EQ(t.storage_offset, stored.at(t.spec.key())) << t.spec.key();
          EXPECT_GT(*t.storage_offset, 0u) << t.spec.key();
        }
      }
    }
  }
  TempDir tmp;
  EngineRig rig(tmp / "ckpt", "hdf5");
  rig.save_at(1);
  MPI_Barrier(MPI_COMM_WORLD);
  const fs::path dir = tmp / "ckpt" / "global_step_1";
  const std::string text = read_bytes(dir / "manifest.json");
  const Manifest read = Manifest::read(dir);
  for (const auto& t : read.tensors) {
    EXPECT_TRUE(t.storage_offset.has_value()) << t.spec.key();
    if (!t.storage_offset) continue;
    EXPECT_NE(text.find("\"shape\":" + json(t.spec.shape).dump() +
                        ",\"storage_offset\":" +
                        std::to_string(*t.storage_offset) + "}"),
              std::string::npos)
        << t.spec.key();
  }
  EXPECT_EQ(read.format_version, 2);
}

// With the offsets the reader opens no dataset; without them (an older
// checkpoint) the ranks check every dataset between them, as before. Both
// read the same values.
TEST(Hdf5StorageOffset, TheReaderOpensNoDatasetWhenTheManifestGivesOffsets) {
  RegionKindsCheckpoint c;
  const Manifest& manifest = c.write();
  const Manifest old = without_offsets(manifest);
  for (const Manifest* m : {&manifest, &old}) {
    const bool recorded = m == &manifest;
    SCOPED_TRACE(recorded ? "with storage offsets" : "without storage offsets");
    h5::Hdf5Reader reader(c.read_context(*m));
    EXPECT_EQ(sum_over_ranks(reader.stats().checked),
              recorded ? 0u : m->tensors.size());
    std::uint64_t reads = 0;
    for (const auto& t : m->tensors) {
      // The whole tensor, and a column block that no piece was.
      EXPECT_TRUE(
          reads_expected(reader, *m, t.spec.key(), {full_box(t.spec.shape)}));
      ++reads;
      if (t.spec.shape.size() == 2 && t.spec.shape[1] > 1) {
        EXPECT_TRUE(reads_expected(
            reader, *m, t.spec.key(),
            {Box{{0, u(c.rank) % t.spec.shape[1]}, {t.spec.shape[0], 1}}}));
        ++reads;
      }
    }
    EXPECT_EQ(reader.stats().batched,
              reads);  // every read direct, with no collective
    EXPECT_EQ(reader.stats().transfers, 0u);
    EXPECT_EQ(reader.stats().direct, 0u);
  }
}

// Saved on every rank count of this job, with and without the offsets,
// loaded on all ranks of it under another partition; verify passes.
TEST(Hdf5StorageOffset, BothFormatsLoadReshardedAndVerify) {
  for_each_saved([](const fs::path& dir, int k, bool) {
    SimpleTrainer trainer;
    build_test_state(trainer.state(), world_rank(), world_size(),
                     k % 2 ? Partition::kDim0 : Partition::kFlat);
    for (auto& s : trainer.state().tensors())
      std::memset(s.data(), 0xAB, s.nbytes());
    trainer.state().clear_blobs();
    const Manifest loaded =
        make_test_engine(trainer, "hdf5", dir.parent_path())->load(dir);
    EXPECT_EQ(loaded.world_size, k);
    EXPECT_TRUE(state_holds_expected(trainer.state()));
    const VerifyReport report = verify_checkpoint(dir, MPI_COMM_WORLD);
    EXPECT_TRUE(report.ok()) << (report.ok() ? "" : report.problems[0]);
  });
}

// A storage_offset whose bytes would end beyond the data file's recorded
// size, one that overflows, and one on a tensor without a dataset: the
// parser refuses each naming the tensor and the field; on disk load and
// verify refuse it on every rank and nothing changes.
TEST(Hdf5StorageOffset, AnOffsetThatDoesNotFitIsCorruptNamingTensorAndField) {
  TempDir tmp;
  const fs::path out = tmp / "ckpt";
  EngineRig rig(out, "hdf5");
  rig.save_at(1);
  rig.save_at(2);
  MPI_Barrier(MPI_COMM_WORLD);
  const fs::path dir = out / "global_step_2";
  const Manifest good = Manifest::read(dir);
  MPI_Barrier(MPI_COMM_WORLD);  // every rank has read it before rank 0 edits it
  // The last tensor with bytes: its end moved one byte past the file's end.
  std::size_t i = good.tensors.size() - 1;
  while (good.tensors[i].spec.nbytes() == 0) --i;
  const TensorRecord& t = good.tensors[i];
  const std::uint64_t size = good.files.at(0).size;
  const std::string field =
      "field tensors[" + std::to_string(i) + "].storage_offset: ";
  const std::string tensor = "tensor \"" + t.spec.key() + "\": ";
  struct Case {
    const char* name;
    std::uint64_t offset;
    std::vector<std::string> parts;
  };
  const std::vector<Case> cases = {
      {"one byte beyond",
       size - t.spec.nbytes() + 1,
       {field + tensor, "end at byte " + std::to_string(size + 1),
        "beyond the " + std::to_string(size) +
            " bytes files records for \"checkpoint.h5\""}},
      {"overflowing",
       ~std::uint64_t{0} - 2,
       {field + tensor, "bytes overflows"}},
  };
  const std::string before = world_rank() == 0 ? tree_listing(tmp.path()) : "";
  for (const Case& bad : cases) {
    SCOPED_TRACE(bad.name);
    Manifest edited = good;
    edited.tensors[i].storage_offset = bad.offset;
    const std::string text =
        edited.dump();  // self-checksum right: the field check speaks
    const fs::path path = dir / "manifest.json";
    const Caught parse =
        catch_error([&] { (void)Manifest::parse(text, path); });
    EXPECT_TRUE(is_error(parse, ErrorCode::kCorrupt,
                         {path.string() + ": " + bad.parts[0]}));
    for (const auto& part : bad.parts)
      EXPECT_NE(parse.message.find(part), std::string::npos) << part;
    if (world_rank() == 0) write_bytes(path, text);
    MPI_Barrier(MPI_COMM_WORLD);
    const Caught load = catch_error([&] { rig.engine->load(dir); });
    EXPECT_TRUE(
        is_error(load, ErrorCode::kCorrupt, {path.string(), field + tensor}));
    EXPECT_TRUE(same_on_all_ranks(load.message));
    const Caught verify =
        catch_error([&] { (void)verify_checkpoint(dir, MPI_COMM_WORLD); });
    EXPECT_TRUE(is_error(verify, ErrorCode::kCorrupt, {field + tensor}));
    EXPECT_TRUE(same_on_all_ranks(verify.message));
    MPI_Barrier(MPI_COMM_WORLD);
  }
  rewrite_manifest(dir, good);
  if (world_rank() == 0) {
    EXPECT_EQ(tree_listing(tmp.path()), before);
  }
  // Other bad values, through the parser: the JSON edited directly.
  const json original = json::parse(good.dump());
  const std::vector<std::pair<std::function<void(json&)>, std::string>> edits =
      {
          {[&](json& m) { m["tensors"][i].erase("dataset"); },
           field + "given for a tensor without a dataset"},
          {[&](json& m) { m["tensors"][i]["storage_offset"] = -4096; },
           field + "expected an integer >= 0"},
          {[&](json& m) { m["tensors"][i]["storage_offset"] = "4096"; },
           field + "expected an integer >= 0"},
          {[&](json& m) {
             m["files"][0]["path"] = "other.h5";
           },  // the first tensor speaks
           "field tensors[0].storage_offset: tensor \"" +
               good.tensors[0].spec.key() +
               "\": its data file \"checkpoint.h5\" is not listed in files"},
      };
  for (const auto& [edit, rule] : edits) {
    json m = original;
    edit(m);
    EXPECT_TRUE(throws_error(
        [&] { (void)Manifest::parse(m.dump(), dir / "manifest.json"); },
        ErrorCode::kCorrupt, {rule}))
        << rule;
  }
  // The intact checkpoint still loads.
  EXPECT_NO_THROW(rig.engine->load(dir));
  EXPECT_TRUE(state_holds_expected(rig.trainer.state()));
}

// The reader holds an offset to the data file itself when the manifest
// was not parsed (a ReadContext made by other means): kCorrupt naming the
// tensor and the field, on the tensor's read only.
TEST(Hdf5StorageOffset, TheReaderHoldsOffsetsToTheFileItself) {
  RegionKindsCheckpoint c;
  Manifest edited = c.write();
  const std::uint64_t size = fs::file_size(c.file());
  const TensorRecord* bias = offset_bias_beyond_the_end(edited, size);
  ASSERT_NE(bias, nullptr);
  h5::Hdf5Reader reader(c.read_context(edited));
  std::vector<unsigned char> buffer(bias->spec.nbytes());
  EXPECT_TRUE(throws_error(
      [&] { reader.read(*bias, {full_box(bias->spec.shape)}, buffer.data()); },
      ErrorCode::kCorrupt,
      {bias_beyond_the_end(size), "beyond the end of " + c.file().string()}));
  EXPECT_TRUE(reads_expected(reader, edited,
                             "optimizer/model.layers.0.mlp.weight/exp_avg",
                             {Box{{0, 0, 0}, {4, 3, 5}}}));
}

// The reader's plan is for the manifest's own records: a record of the
// same key that names another dataset, dtype or shape (a caller's own) is
// not read from the planned offset but opened and checked like a tensor
// the reader did not plan, which refuses it naming the dataset; the
// manifest's record still reads from its offset afterwards.
TEST(Hdf5StorageOffset, ARecordUnlikeTheManifestsIsCheckedNotReadFromThePlan) {
  RegionKindsCheckpoint c;
  const Manifest& m = c.write();
  h5::Hdf5Reader reader(c.read_context(m));
  ASSERT_TRUE(reader.reads_independently());
  const TensorRecord& weight = record_of(m, "model/model.layers.0.mlp.weight");
  const TensorRecord& scale = record_of(m, "model/encoder/block.0/scale");
  std::vector<unsigned char> buffer(weight.spec.nbytes());
  const auto refused = [&](const TensorRecord& record,
                           const std::string& dataset) {
    return throws_error(
        [&] {
          reader.read(record, {full_box(record.spec.shape)}, buffer.data());
        },
        ErrorCode::kCorrupt,
        {"dataset " + dataset + " in " + c.file().string()});
  };
  TensorRecord other_dataset = weight;  // F32 [3, 5]; the scale is F16
  other_dataset.dataset = scale.dataset;
  EXPECT_TRUE(refused(other_dataset, scale.dataset));
  TensorRecord other_dtype = weight;
  other_dtype.spec.dtype = DType::kI32;
  EXPECT_TRUE(refused(other_dtype, weight.dataset));
  TensorRecord other_shape = weight;
  other_shape.spec.shape = {5, 3};
  EXPECT_TRUE(refused(other_shape, weight.dataset));
  EXPECT_EQ(reader.stats().batched, 0u);
  EXPECT_TRUE(reads_expected(reader, m, weight.spec.key(),
                             {full_box(weight.spec.shape)}));
  EXPECT_EQ(reader.stats().batched, 1u);
}

// An offset inside the file but wrong (another tensor's): the checksums
// catch it on load and in verify, naming the tensor.
TEST(Hdf5StorageOffset, AWrongOffsetInsideTheFileFailsTheChecksum) {
  SavedAtStep1 saved;
  EngineRig& rig = saved.rig;
  const fs::path& dir = saved.dir;
  Manifest edited = Manifest::read(dir);
  TensorRecord* embed = nullptr;
  const TensorRecord* adam =
      edited.find("optimizer/model.embed.weight/exp_avg");
  for (auto& t : edited.tensors) {
    if (t.spec.key() == "model/model.embed.weight") embed = &t;
  }
  ASSERT_TRUE(embed && adam);
  ASSERT_EQ(embed->spec.nbytes(), adam->spec.nbytes());
  embed->storage_offset = adam->storage_offset;
  rewrite_manifest(dir, edited);
  const Caught load = catch_error([&] { rig.engine->load(dir); });
  EXPECT_TRUE(is_error(load, ErrorCode::kCorrupt,
                       {"checksum mismatch in checkpoint.h5 for tensor "
                        "\"model/model.embed.weight\""}));
  EXPECT_TRUE(same_on_all_ranks(load.message));
  // Verify opens every dataset as well, and says which record is wrong.
  const VerifyReport report = verify_checkpoint(dir, MPI_COMM_WORLD);
  ASSERT_FALSE(report.ok());
  EXPECT_NE(
      report.problems[0].find("tensor \"model/model.embed.weight\": field "
                              "storage_offset: the manifest records " +
                              std::to_string(*adam->storage_offset) +
                              ", but dataset "
                              "/model/model.embed.weight in "),
      std::string::npos)
      << report.problems[0];
}

// The data file changed by another program (serial HDF5 adds an attribute
// and a dataset, as h5py would): its size no longer matches, and load and
// verify say so before reading a byte through the recorded offsets.
TEST(Hdf5StorageOffset, ADataFileRewrittenByAnotherProgramIsRefusedByItsSize) {
  SavedAtStep1 saved;
  EngineRig& rig = saved.rig;
  const fs::path& dir = saved.dir;
  const fs::path file = dir / "checkpoint.h5";
  const std::uint64_t recorded = Manifest::read(dir).files.at(0).size;
  if (world_rank() == 0) {
    const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    EXPECT_GE(f, 0);  // no ASSERT: the other ranks wait at the barrier below
    const hsize_t dims[1] = {1000};
    const hid_t space = H5Screate_simple(1, dims, nullptr);
    const hid_t d = H5Dcreate2(f, "/notes", H5T_STD_U8LE, space, H5P_DEFAULT,
                               H5P_DEFAULT, H5P_DEFAULT);
    std::vector<unsigned char> bytes(1000, 7);
    H5Dwrite(d, H5T_STD_U8LE, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data());
    H5Dclose(d);
    H5Sclose(space);
    H5Fclose(f);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const std::uint64_t now = fs::file_size(file);
  ASSERT_NE(now, recorded);
  const std::string says = "checkpoint.h5 is " + std::to_string(now) +
                           " bytes but the manifest records " +
                           std::to_string(recorded);
  const Caught load = catch_error([&] { rig.engine->load(dir); });
  EXPECT_TRUE(is_error(load, ErrorCode::kCorrupt, {says}));
  EXPECT_TRUE(same_on_all_ranks(load.message));
  EXPECT_TRUE(
      throws_error([&] { (void)verify_checkpoint(dir, MPI_COMM_WORLD); },
                   ErrorCode::kCorrupt, {says}));
}

}  // namespace
}  // namespace floe::test
