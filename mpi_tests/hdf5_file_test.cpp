// The hdf5 engine's file as others see it (h5py, serial HDF5: layout, types,
// attributes, alignment) and its errors: corrupt or misplaced files, names
// that cannot be datasets, bad options, a refused data write.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>

#include "engines/hdf5/h5_file_create.hpp"
#include "hdf5_test_support.hpp"
#include "io/faulty_file_system.hpp"

namespace floe::test {
namespace {

// ---- The file as h5py and h5dump see it (rank 0, serial HDF5) ------------

std::string string_attribute(hid_t object, const char* name) {
  const hid_t attribute = H5Aopen(object, name, H5P_DEFAULT);
  const hid_t type = H5Aget_type(attribute);
  std::string value(H5Tget_size(type), '\0');
  H5Aread(attribute, type, value.data());
  H5Tclose(type);
  H5Aclose(attribute);
  while (!value.empty() && value.back() == '\0') value.pop_back();
  return value;
}

TEST(Hdf5Engine, FileLayoutTypesAndAttributes) {
  TempDir dir;
  const int rank = world_rank(), size = world_size();
  SimpleTrainer trainer;
  for (DType dtype : kAllDtypes) {
    trainer.state().add_model(std::string(dtype_name(dtype)), dtype, {4},
                              replicated_whole({4}));
  }
  for (auto& shard : trainer.state().tensors()) fill_expected(shard);
  trainer.state().set_scalar("lr", 0.5);
  trainer.state().set_scalar("step", std::int64_t{42});
  trainer.state().set_scalar("done", true);
  trainer.state().set_scalar("schedule", std::string("cosine"));
  // Over 64 KiB: needs dense attribute storage (HDF5 1.8 format).
  trainer.state().metadata() = {{"notes", std::string(100000, 'x')}};
  write_direct(trainer, make_dir(dir / "c"),
               {{"alignment", "4Ki"}, {"alignment_threshold", "1"}});
  if (rank == 0) {
    const hid_t file = H5Fopen((dir / "c" / "checkpoint.h5").c_str(),
                               H5F_ACC_RDONLY, H5P_DEFAULT);
    ASSERT_GE(file, 0);
    EXPECT_EQ(string_attribute(file, "floe_format"), "floe-hdf5");
    EXPECT_EQ(nlohmann::json::parse(string_attribute(file, "floe_metadata")),
              trainer.state().metadata());
    const hid_t scalars = H5Gopen2(file, "/scalars", H5P_DEFAULT);
    double lr = 0;
    const hid_t lr_attr = H5Aopen(scalars, "lr", H5P_DEFAULT);
    H5Aread(lr_attr, H5T_NATIVE_DOUBLE, &lr);
    H5Aclose(lr_attr);
    EXPECT_EQ(lr, 0.5);
    EXPECT_EQ(string_attribute(scalars, "schedule"), "cosine");
    H5Gclose(scalars);
    for (DType dtype : kAllDtypes) {
      const std::string path = "/model/" + std::string(dtype_name(dtype));
      const hid_t dataset = H5Dopen2(file, path.c_str(), H5P_DEFAULT);
      ASSERT_GE(dataset, 0) << path;
      EXPECT_EQ(string_attribute(dataset, "floe_dtype"), dtype_name(dtype));
      const hid_t type = H5Dget_type(dataset);
      EXPECT_EQ(H5Tget_size(type), dtype_size(dtype)) << path;
      const H5T_class_t cls = H5Tget_class(type);
      if (dtype == DType::kBool) {
        EXPECT_EQ(cls, H5T_ENUM);
      } else if (dtype == DType::kF16 || dtype == DType::kF32 ||
                 dtype == DType::kF64) {
        EXPECT_EQ(cls, H5T_FLOAT) << path;
      } else {
        EXPECT_EQ(cls, H5T_INTEGER) << path;  // BF16 and F8 as raw bits
      }
      // Contiguous, aligned, and holding the exact bytes.
      const hid_t dcpl = H5Dget_create_plist(dataset);
      EXPECT_EQ(H5Pget_layout(dcpl), H5D_CONTIGUOUS);
      H5Pclose(dcpl);
      EXPECT_EQ(H5Dget_offset(dataset) % 4096, 0u) << path;
      const auto want =
          expected_bytes(TensorSpec{TensorGroup::kModel,
                                    std::string(dtype_name(dtype)),
                                    "",
                                    dtype,
                                    {4}},
                         {Box{{0}, {4}}});
      std::vector<unsigned char> got(want.size());
      H5Dread(dataset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, got.data());
      EXPECT_EQ(got, want) << path;
      H5Tclose(type);
      H5Dclose(dataset);
    }
    // F16 is IEEE half: HDF5 converts it to float exactly.
    const hid_t f16 = H5Dopen2(file, "/model/F16", H5P_DEFAULT);
    float as_float[4];
    H5Dread(f16, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, as_float);
    H5Dclose(f16);
    std::uint16_t bits = 0;
    expected_element(DType::kF16, "model/F16", 0, &bits);
    const int exponent = (bits >> 10) & 0x1f;
    if (exponent != 0 && exponent != 31) {  // a normal number
      const float want =
          std::ldexp(1.0f + (bits & 0x3ff) / 1024.0f, exponent - 15) *
          ((bits & 0x8000) ? -1.0f : 1.0f);
      EXPECT_EQ(as_float[0], want);
    }
    H5Fclose(file);
  }
  (void)size;
}

TEST(Hdf5Engine, H5pyReadsTheCheckpoint) {
  RegionKindsCheckpoint c;
  State& state = c.trainer.state();
  state.add_model("mask", DType::kBool, {5}, replicated_whole({5}));
  fill_expected(*state.find("model/mask"));
  // More links than a compact group holds (8), added in reverse name
  // order: h5py must list /model in creation order from dense storage
  // whose creation order is tracked but not indexed.
  for (int i = 11; i >= 0; --i) {
    const std::string name = "order." + std::to_string(100 + i);
    state.add_model(name, DType::kF32, {2}, replicated_whole({2}));
    fill_expected(*state.find("model/" + name));
  }
  state.set_scalar("lr", 0.25);
  state.set_blob("rng", {1, 2, static_cast<std::uint8_t>(c.rank)});
  const Manifest& manifest = c.write();
  if (c.rank != 0) return;  // no collectives follow
  if (!have_h5py()) GTEST_SKIP() << "no /usr/bin/python3 with h5py";
  // What h5py must find: every tensor's bytes, as hex.
  nlohmann::json expected = {{"tensors", h5py_expected_tensors(manifest)},
                             {"scalars", {{"lr", 0.25}}},
                             {"blobs", nlohmann::json::object()}};
  // list(f["model"]): the model tensors (or the first group of a name
  // with '/') in the order of the saved layout, which the manifest keeps
  // (rank 0's state order, then tensors only other ranks hold).
  nlohmann::json order = nlohmann::json::array();
  for (const auto& tensor : manifest.tensors) {
    if (tensor.spec.group != TensorGroup::kModel) continue;
    const std::string first = tensor.spec.name.substr(0, tensor.spec.name.find('/'));
    if (std::find(order.begin(), order.end(), first) == order.end()) order.push_back(first);
  }
  expected["model_order"] = order;
  for (int r = 0; r < c.size; ++r) {
    expected["blobs"]["/ranks/" + std::to_string(r) + "/rng"] = {1, 2, r};
    expected["world_size"] = c.size;
  }
  EXPECT_TRUE(h5py_reads(c.file(), expected, c.dir.path()));
}

// ---- Errors ---------------------------------------------------------------

// Rank 0 changes the file with serial HDF5, then every rank reads it.
void edit_file(const fs::path& file, const std::function<void(hid_t)>& edit) {
  if (world_rank() == 0) {
    const hid_t id = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    edit(id);
    H5Fclose(id);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(Hdf5Engine, MissingOrAlteredDatasetIsCorruptNamingFileAndDataset) {
  RegionKindsCheckpoint c;
  const Manifest& manifest = c.write();
  const fs::path file = c.file();
  edit_file(file, [](hid_t f) {
    H5Ldelete(f, "/model/model.layers.0.mlp.weight", H5P_DEFAULT);
    const hid_t d = H5Dopen2(f, "/model/model.bias", H5P_DEFAULT);
    H5Adelete(d, "floe_dtype");
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, 3);
    const hid_t a =
        H5Acreate2(d, "floe_dtype", type, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, type, "F32");
    H5Aclose(a);
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(d);
    H5Ldelete(f, "/model/model.empty", H5P_DEFAULT);
    const hsize_t dims[2] = {1, 4};
    const hid_t other = H5Screate_simple(2, dims, nullptr);
    const hid_t bad = H5Dcreate2(f, "/model/model.empty", H5T_STD_I32LE, other,
                                 H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(other);
    const hid_t s = H5Screate(H5S_SCALAR);
    const hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 3);
    const hid_t a2 =
        H5Acreate2(bad, "floe_dtype", t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a2, t, "I32");
    H5Aclose(a2);
    H5Tclose(t);
    H5Sclose(s);
    H5Dclose(bad);
  });
  // Read as a checkpoint written before Floe recorded storage offsets: with
  // them the reader opens no dataset (such edits then change the file's
  // size, which load and verify check first: hdf5_storage_offset_test).
  Manifest old = manifest;
  for (auto& t : old.tensors) t.storage_offset.reset();
  h5::Hdf5Reader reader(c.read_context(old));
  std::vector<unsigned char> buffer(1024);
  const std::vector<Box> no_boxes;
  EXPECT_TRUE(throws_error(
      [&] {
        reader.read(record_of(old, "model/model.layers.0.mlp.weight"),
                    no_boxes, buffer.data());
      },
      ErrorCode::kCorrupt,
      {file.string(), "/model/model.layers.0.mlp.weight"}));
  EXPECT_TRUE(throws_error(
      [&] {
        reader.read(record_of(old, "model/model.bias"), no_boxes,
                    buffer.data());
      },
      ErrorCode::kCorrupt,
      {file.string(), "/model/model.bias", "F32", "BF16"}));
  EXPECT_TRUE(throws_error(
      [&] {
        reader.read(record_of(old, "model/model.empty"), no_boxes,
                    buffer.data());
      },
      ErrorCode::kCorrupt,
      {file.string(), "/model/model.empty", "[1,4]", "[0,4]"}));
  // The reader still works for the intact tensors.
  EXPECT_TRUE(reads_expected(reader, old,
                             "optimizer/model.layers.0.mlp.weight/exp_avg",
                             {Box{{0, 0, 0}, {4, 3, 5}}}));
}

TEST(Hdf5Engine, BadRequestOnOneRankFailsOnEveryRank) {
  RegionKindsCheckpoint c;
  const Manifest& manifest = c.write();
  // Read with the collective check (then H5Dread or pread): the error is
  // agreed on before any byte moves.
  for (const auto large : {h5::Hdf5Reader::LargeReads::kCollective,
                           h5::Hdf5Reader::LargeReads::kDirect}) {
    h5::Hdf5Reader reader(c.read_context(), /*direct_below=*/0, large);
    std::vector<unsigned char> buffer(1024);
    std::vector<Box> boxes = {Box{{0, 0}, {1, 5}}};
    if (c.rank == c.size - 1) {
      boxes.push_back(Box{{2, 0}, {2, 5}});  // past row 3
    }
    EXPECT_TRUE(throws_error(
        [&] {
          reader.read(record_of(manifest, "model/model.layers.0.mlp.weight"),
                      boxes, buffer.data());
        },
        ErrorCode::kInvalidArgument, {"model/model.layers.0.mlp.weight"}));
    EXPECT_TRUE(reads_expected(reader, manifest,
                               "model/model.layers.0.mlp.weight",
                               {Box{{0, 0}, {3, 5}}}));
  }
}

TEST(Hdf5Engine, BadRequestOfADirectReadFailsOnItsRankOnly) {
  RegionKindsCheckpoint c;
  const Manifest& manifest = c.write();
  h5::Hdf5Reader reader(c.read_context());
  // A direct read is local (no collective call to leave waiting): only the
  // rank that asked for a box outside the tensor fails; load and verify
  // agree once on every rank's outcome after their last read.
  std::vector<unsigned char> buffer(1024);
  std::vector<Box> boxes = {Box{{0, 0}, {1, 5}}};
  if (c.rank == c.size - 1) {
    boxes.push_back(Box{{2, 0}, {2, 5}});  // past row 3
  }
  const auto& record = record_of(manifest, "model/model.layers.0.mlp.weight");
  if (c.rank == c.size - 1) {
    EXPECT_TRUE(throws_error([&] { reader.read(record, boxes, buffer.data()); },
                             ErrorCode::kInvalidArgument,
                             {"model/model.layers.0.mlp.weight"}));
  } else {
    EXPECT_TRUE(reads_expected(reader, manifest, record.spec.key(), boxes));
  }
  EXPECT_EQ(reader.stats().transfers, 0u);
  EXPECT_TRUE(reads_expected(reader, manifest,
                             "model/model.layers.0.mlp.weight",
                             {Box{{0, 0}, {3, 5}}}));
}

TEST(Hdf5Engine, DataFileMustBeAnHdf5FileInsideTheCheckpoint) {
  RegionKindsCheckpoint c;
  const Manifest& manifest = c.write();
  auto open = [&](const Manifest& m) {
    h5::Hdf5Reader reader(c.read_context(m));
  };
  Manifest escaping = manifest;
  for (auto& tensor : escaping.tensors) {
    for (auto& piece : tensor.pieces) piece.file = "../elsewhere.h5";
  }
  for (auto& blob : escaping.blobs) blob.file = "../elsewhere.h5";
  EXPECT_TRUE(throws_error([&] { open(escaping); }, ErrorCode::kCorrupt,
                           {"../elsewhere.h5"}));

  if (c.rank == 0) {
    fs::copy_file(c.file(), c.dir / "outside.h5");
    fs::create_symlink(c.dir / "outside.h5", c.path() / "link.h5");
    std::ofstream(c.path() / "text.h5") << "not hdf5";
  }
  MPI_Barrier(MPI_COMM_WORLD);
  auto renamed = [&](const std::string& name) {
    Manifest m = manifest;
    for (auto& tensor : m.tensors) {
      for (auto& piece : tensor.pieces) piece.file = name;
    }
    for (auto& blob : m.blobs) blob.file = name;
    return m;
  };
  EXPECT_TRUE(throws_error([&] { open(renamed("link.h5")); },
                           ErrorCode::kCorrupt, {"link.h5", "outside"}));
  EXPECT_TRUE(throws_error([&] { open(renamed("text.h5")); },
                           ErrorCode::kCorrupt,
                           {"text.h5", "not an HDF5 file"}));
  EXPECT_TRUE(throws_error([&] { open(renamed("missing.h5")); },
                           ErrorCode::kCorrupt, {"missing.h5", "missing"}));
}

TEST(Hdf5Engine, NamesThatCannotBeDistinctDatasetsAreRejected) {
  TempDir dir;
  const int rank = world_rank();
  {
    SimpleTrainer trainer;
    trainer.state().add_model("a", DType::kF32, {2}, replicated_whole({2}));
    trainer.state().add_model("a/b", DType::kF32, {2}, replicated_whole({2}));
    EXPECT_TRUE(throws_error(
        [&] { make_test_engine(trainer, "hdf5", dir.path())->save(); },
        ErrorCode::kInvalidArgument,
        {"\"model/a/b\"", "\"model/a\"", "group"}));
  }
  {
    SimpleTrainer trainer;
    trainer.state().add_model("a//b", DType::kF32, {2}, replicated_whole({2}));
    EXPECT_TRUE(throws_error(
        [&] { make_test_engine(trainer, "hdf5", dir.path())->save(); },
        ErrorCode::kInvalidArgument, {"\"model/a//b\"", "empty"}));
  }
  {
    SimpleTrainer trainer;
    trainer.state().set_blob(rank == 0 ? "x/." : "y", {1});
    EXPECT_TRUE(throws_error(
        [&] { make_test_engine(trainer, "hdf5", dir.path())->save(); },
        ErrorCode::kInvalidArgument, {"blob \"x/.\" of rank 0"}));
  }
  // Nothing was committed.
  if (rank == 0) {
    EXPECT_FALSE(fs::exists(dir / "latest"));
  }
}

TEST(Hdf5Engine, OptionsAreCheckedAndApplied) {
  const std::string out = "/tmp/unused";
  EXPECT_TRUE(throws_error(
      [&] {
        hdf5_config(out, {{"alignment", "3000"}});
      },
      ErrorCode::kInvalidConfig, {"\"alignment\"", "power of two"}));
  EXPECT_TRUE(throws_error(
      [&] {
        hdf5_config(out, {{"romio_cb_write", "sometimes"}});
      },
      ErrorCode::kInvalidConfig, {"\"romio_cb_write\""}));
  EXPECT_TRUE(throws_error(
      [&] {
        hdf5_config(out, {{"cb_buffer_size", "4GiB"}});
      },
      ErrorCode::kInvalidConfig, {"\"cb_buffer_size\""}));
  EXPECT_TRUE(throws_error(
      [&] {
        hdf5_config(out, {{"striping_factor", -1}});
      },
      ErrorCode::kInvalidConfig, {"\"striping_factor\""}));
  EXPECT_TRUE(throws_error(
      [&] {
        hdf5_config(out, {{"collective_metadata", "yes"}});
      },
      ErrorCode::kInvalidConfig, {"\"collective_metadata\""}));

  TempDir dir;
  const int rank = world_rank(), size = world_size();
  SimpleTrainer trainer;
  build_region_kinds(trainer.state(), rank, size);
  const nlohmann::json options = {
      {"alignment", "64KiB"},         {"alignment_threshold", "0"},
      {"collective_metadata", false}, {"cb_buffer_size", "1MiB"},
      {"romio_cb_write", "enable"},   {"striping_factor", "2"},
      {"striping_unit", "1MiB"},      {"max_transfer_bytes", "0"}};
  auto engine = make_test_engine(trainer, "hdf5", dir.path(), options);
  const auto& parsed = dynamic_cast<Hdf5Engine&>(*engine).options();
  EXPECT_EQ(parsed.alignment, 65536u);
  EXPECT_FALSE(parsed.collective_metadata);
  EXPECT_EQ(parsed.romio_cb_write, "enable");
  EXPECT_EQ(parsed.max_transfer_bytes, 0u);
  engine->save();
  SimpleTrainer loaded;
  build_region_kinds(loaded.state(), rank, size);
  for (auto& shard : loaded.state().tensors())
    std::memset(shard.data(), 0, shard.nbytes());
  make_test_engine(loaded, "hdf5", dir.path())->load();
  EXPECT_TRUE(state_holds_expected(loaded.state()));
  // A config made by hand, without the engine's keys, gets the defaults.
  CheckpointConfig bare;
  bare.output_dir = dir.path();
  Hdf5Engine by_hand(trainer, bare);
  EXPECT_EQ(by_hand.options().alignment, 1u << 20);
  EXPECT_EQ(by_hand.options().max_transfer_bytes, 1ull << 30);
}

// Many small tensors: their object headers gather in a few large metadata
// blocks, so the datasets' bytes lie back to back, apart from the metadata
// that HDF5 flushes while it creates them (h5_file_create.hpp); a file of
// few datasets keeps HDF5's default 2 KiB blocks.
TEST(Hdf5Engine, ManySmallTensorsLieBackToBackApartFromTheirMetadata) {
  EXPECT_EQ(h5::metadata_block_bytes(0), 2048u);
  EXPECT_EQ(h5::metadata_block_bytes(16), 2048u);
  EXPECT_EQ(h5::metadata_block_bytes(1000), 65536u);
  EXPECT_EQ(h5::metadata_block_bytes(20000), 1u << 20);
  EXPECT_EQ(h5::metadata_block_bytes(10000000), 1u << 20);

  TempDir dir;
  constexpr int kTensors = 2000;
  constexpr std::uint64_t kBytes = 256 * 4;
  SimpleTrainer trainer;
  for (int i = 0; i < kTensors; ++i) {
    trainer.state().add_model("layer" + std::to_string(i), DType::kF32, {256},
                              replicated_whole({256}));
  }
  for (auto& shard : trainer.state().tensors()) fill_expected(shard);
  const WriteResult result = write_direct(trainer, make_dir(dir / "c"));
  ASSERT_EQ(result.tensors.size(), static_cast<std::size_t>(kTensors));
  int back_to_back = 0;
  for (int i = 1; i < kTensors; ++i) {
    const auto& before = result.tensors[i - 1].storage_offset;
    const auto& after = result.tensors[i].storage_offset;
    ASSERT_TRUE(before && after) << result.tensors[i].dataset;
    back_to_back += *before + kBytes == *after;
  }
  // With 2 KiB blocks a new block of ~5 headers lands between the data
  // every few tensors (about 80% back to back); with 128 KiB, every ~350.
  EXPECT_GE(back_to_back, (kTensors - 1) * 98 / 100) << back_to_back;

  // Saved and loaded through the engine, every byte comes back.
  make_test_engine(trainer, "hdf5", dir / "e")->save();
  SimpleTrainer loaded;
  for (int i = 0; i < kTensors; ++i) {
    loaded.state().add_model("layer" + std::to_string(i), DType::kF32, {256},
                             replicated_whole({256}));
  }
  make_test_engine(loaded, "hdf5", dir / "e")->load();
  EXPECT_TRUE(state_holds_expected(loaded.state()));
}

TEST(Hdf5Engine, RefusedDataWriteFailsTheSaveOnEveryRank) {
  TempDir dir;
  const int rank = world_rank(), size = world_size();
  SimpleTrainer trainer;
  build_region_kinds(trainer.state(), rank, size);
  auto engine = make_test_engine(trainer, "hdf5", dir.path());
  auto faulty = std::make_shared<FaultyFileSystem>();
  if (rank == size - 1) faulty->add_rule({FsOp::kDataWrite, "checkpoint.h5"});
  engine->set_file_system(faulty);
  const auto caught = catch_error([&] { engine->save(); });
  EXPECT_TRUE(is_error(caught, ErrorCode::kIo, {"checkpoint.h5"}));
  if (size > 1) {
    EXPECT_TRUE(
        is_error(caught, ErrorCode::kIo, {"rank " + std::to_string(size - 1)}));
  }
  EXPECT_FALSE(engine->latest_checkpoint_exists());
  engine->set_file_system(posix_file_system());
  engine->save();  // the next save works
  EXPECT_TRUE(engine->latest_checkpoint_exists());
}

}  // namespace
}  // namespace floe::test
