// The hdf5 engine's data path: every dtype and region kind written and read
// back under other partitions, the checksums it records, that HDF5 really
// moved the data collectively, transfers split by size, blobs.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "floe/checkpoint.hpp"
#include "hdf5_test_support.hpp"
#include "io/checksum.hpp"

namespace floe::test {
namespace {

TEST(Hdf5Engine, IsRegisteredAsTheResumableDefault) {
  const EngineInfo& info = engine_info("hdf5");
  EXPECT_TRUE(info.resumable);
  EXPECT_TRUE(static_cast<bool>(info.factory));
  EXPECT_TRUE(static_cast<bool>(info.reader));
  EXPECT_EQ(parse_config({{"output_dir", "/x"}}).type, "hdf5");
  std::vector<std::string> keys;
  for (const auto& spec : info.options) keys.push_back(spec.key);
  for (const char* key :
       {"alignment", "alignment_threshold", "collective_metadata",
        "cb_buffer_size", "romio_cb_write", "striping_factor", "striping_unit",
        "max_transfer_bytes"}) {
    EXPECT_NE(std::find(keys.begin(), keys.end(), key), keys.end()) << key;
  }
}

TEST(Hdf5Engine, EveryDtypeRoundTripsThroughSaveAndLoad) {
  TempDir dir;
  const int rank = world_rank(), size = world_size();
  {
    SimpleTrainer trainer;
    for (DType dtype : kAllDtypes) {
      const Shape shape{7, 3};
      trainer.state().add_model("t." + std::string(dtype_name(dtype)), dtype,
                                shape, dim0_shard(shape, rank, size));
    }
    for (auto& shard : trainer.state().tensors()) fill_expected(shard);
    trainer.progress_now.global_step = 5;
    make_test_engine(trainer, "hdf5", dir.path())->save();
  }
  // Loaded as ZeRO flat ranges: other ranks' bytes, other box shapes.
  SimpleTrainer trainer;
  for (DType dtype : kAllDtypes) {
    const Shape shape{7, 3};
    auto& shard =
        trainer.state().add_model("t." + std::string(dtype_name(dtype)), dtype,
                                  shape, zero_flat_shard(shape, rank, size));
    std::memset(shard.data(), 0xAB, shard.nbytes());
  }
  make_test_engine(trainer, "hdf5", dir.path())->load();
  EXPECT_TRUE(state_holds_expected(trainer.state()));
}

TEST(Hdf5Engine, WriteResultRecordsEveryWrittenPieceWithItsChecksum) {
  TempDir dir;
  const int rank = world_rank(), size = world_size();
  SimpleTrainer trainer;
  build_region_kinds(trainer.state(), rank, size);
  trainer.state().set_blob("rng", std::vector<std::uint8_t>(10 + rank, 7));
  const WriteResult result = write_direct(trainer, make_dir(dir / "ckpt"));

  EXPECT_EQ(result.files, std::vector<std::string>{"checkpoint.h5"});
  EXPECT_EQ(result.engine_info["format"], "floe-hdf5");
  ASSERT_EQ(result.tensors.size(), 6u);
  const auto& layout_order = result.tensors;
  EXPECT_EQ(layout_order[0].dataset, "/model/model.layers.0.mlp.weight");
  EXPECT_EQ(layout_order[1].dataset,
            "/optimizer/model.layers.0.mlp.weight/exp_avg");
  for (const auto& tensor : result.tensors) {
    std::uint64_t covered = 0;
    for (const auto& piece : tensor.pieces) {
      const auto boxes = piece.region.boxes(tensor.spec.shape);
      const auto bytes = expected_bytes(tensor.spec, boxes);
      EXPECT_EQ(piece.file, "checkpoint.h5");
      EXPECT_EQ(piece.offset, 0u);
      EXPECT_EQ(piece.nbytes, bytes.size()) << tensor.spec.key();
      EXPECT_EQ(piece.xxh3, xxh3_64(bytes.data(), bytes.size()))
          << tensor.spec.key() << " piece of rank " << piece.rank;
      covered += piece.region.elements();
    }
    EXPECT_EQ(covered, num_elements(tensor.spec.shape)) << tensor.spec.key();
  }
  // The replicated tensor is written once, by the lowest rank.
  const Manifest manifest = manifest_of(result);
  const auto& bias = record_of(manifest, "model/model.bias");
  ASSERT_EQ(bias.pieces.size(), 1u);
  EXPECT_EQ(bias.pieces[0].rank, 0);
  EXPECT_TRUE(bias.pieces[0].region.is_replicated());
  const auto& temperature = record_of(manifest, "model/model.temperature");
  ASSERT_EQ(temperature.pieces.size(), 1u);
  EXPECT_EQ(temperature.pieces[0].rank, size - 1);
  // Every rank's blob, with its checksum.
  ASSERT_EQ(result.blobs.size(), static_cast<std::size_t>(size));
  for (int r = 0; r < size; ++r) {
    const std::vector<std::uint8_t> bytes(10 + r, 7);
    EXPECT_EQ(result.blobs[r].rank, r);
    EXPECT_EQ(result.blobs[r].name, "rng");
    EXPECT_EQ(result.blobs[r].nbytes, bytes.size());
    EXPECT_EQ(result.blobs[r].xxh3, xxh3_64(bytes.data(), bytes.size()));
  }
}

TEST(Hdf5Engine, TransfersAreReallyCollective) {
  TempDir dir;
  const int rank = world_rank(), size = world_size();
  SimpleTrainer trainer;
  build_region_kinds(trainer.state(), rank, size);
  // Every tensor through its own H5Dwrite and H5Dread (none batched).
  auto engine = make_test_engine(trainer, "hdf5", dir.path(),
                                 {{"small_tensor_bytes", "0"}});
  engine->save();
  const auto& stats = dynamic_cast<Hdf5Engine&>(*engine).last_save_stats();
  // Every tensor but the zero-size one takes one transfer on every rank,
  // including ranks that write nothing of it.
  EXPECT_EQ(stats.transfers, 5u);
  EXPECT_EQ(stats.batched, 0u);
  EXPECT_TRUE(stats.all_collective()) << stats.first_cause;

  const auto checkpoint =
      open_checkpoint(dir / "global_step_0", MPI_COMM_WORLD);
  auto files = posix_file_system();
  h5::Hdf5Reader reader(ReadContext{dir / "global_step_0", checkpoint.manifest,
                                    MPI_COMM_WORLD, *files},
                        /*direct_below=*/0, h5::Hdf5Reader::LargeReads::kCollective);
  EXPECT_TRUE(reads_expected(reader, checkpoint.manifest, "model/model.bias",
                             {Box{{u(rank % 6)}, {1}}}));
  // A rank asking for nothing still takes part, and the read is collective.
  std::vector<Box> none;
  if (rank == 0) none.push_back(Box{{0, 0}, {3, 5}});
  EXPECT_TRUE(reads_expected(reader, checkpoint.manifest,
                             "model/model.layers.0.mlp.weight", none));
  EXPECT_EQ(reader.stats().transfers, 2u);
  EXPECT_TRUE(reader.stats().all_collective()) << reader.stats().first_cause;
}

TEST(Hdf5Engine, SmallTensorsAreWrittenTogetherAndReadDirectly) {
  TempDir dir;
  const int rank = world_rank(), size = world_size();
  SimpleTrainer trainer;
  build_region_kinds(trainer.state(), rank, size);
  // One tensor of 1 MiB: at small_tensor_bytes, so written by H5Dwrite.
  const Shape big{256, 1024};
  fill_expected(trainer.state().add_model("model.big", DType::kF32, big,
                                          dim0_shard(big, rank, size)));
  auto engine = make_test_engine(trainer, "hdf5", dir.path());
  engine->save();
  const auto& stats = dynamic_cast<Hdf5Engine&>(*engine).last_save_stats();
  // The five small tensors with data go into the one batched write; the
  // zero-size one has no storage; the big one takes its own transfer.
  EXPECT_EQ(stats.batched, 5u);
  EXPECT_EQ(stats.transfers, 1u);
  EXPECT_TRUE(stats.all_collective()) << stats.first_cause;

  const auto checkpoint =
      open_checkpoint(dir / "global_step_0", MPI_COMM_WORLD);
  auto& reader = dynamic_cast<h5::Hdf5Reader&>(*checkpoint.reader);
  const Manifest& manifest = checkpoint.manifest;
  // Any boxes, whatever partition wrote them, from the direct reads.
  EXPECT_TRUE(reads_expected(reader, manifest, "model/model.layers.0.mlp.weight",
                             {Box{{0, u(rank % 5)}, {3, 1}}}));
  EXPECT_TRUE(reads_expected(
      reader, manifest, "optimizer/model.layers.0.mlp.weight/exp_avg",
      {Box{{2, 0, 0}, {2, 3, 5}}, Box{{0, 1, 1}, {1, 2, 2}},
       Box{{0, 0, 0}, {0, 3, 5}}}));
  EXPECT_TRUE(reads_expected(reader, manifest, "model/model.temperature", {Box{}}));
  EXPECT_TRUE(reads_expected(reader, manifest, "model/model.empty",
                             {Box{{0, 0}, {0, 4}}}));
  EXPECT_EQ(reader.stats().batched, 4u);
  EXPECT_EQ(reader.stats().transfers, 0u);
  // The big one too: the default reader checks every tensor up front and
  // reads each with pread.
  EXPECT_TRUE(reads_expected(reader, manifest, "model/model.big",
                             {Box{{u(rank), 0}, {3, 1024}}}));
  EXPECT_EQ(reader.stats().batched, 5u);
  EXPECT_EQ(reader.stats().transfers, 0u);

  // And the whole state loads back under another partition.
  SimpleTrainer loaded;
  build_region_kinds(loaded.state(), (rank + 1) % size, size);
  loaded.state().add_model("model.big", DType::kF32, big,
                           zero_flat_shard(big, rank, size));
  for (auto& shard : loaded.state().tensors()) {
    std::memset(shard.data(), 0xAB, shard.nbytes());
  }
  make_test_engine(loaded, "hdf5", dir.path())->load();
  EXPECT_TRUE(state_holds_expected(loaded.state()));
}

// Reads boxes of build_region_kinds' tensors that no partition wrote.
// Collective.
void expect_any_boxes_read(CheckpointReader& reader, const Manifest& manifest,
                           int rank) {
  const std::string weight = "model/model.layers.0.mlp.weight";
  const std::string exp_avg = "optimizer/model.layers.0.mlp.weight/exp_avg";
  // A column block (not dim 0) of what was written in row shards.
  EXPECT_TRUE(reads_expected(reader, manifest, weight,
                             {Box{{0, u(rank % 5)}, {3, 1}}}));
  // Boxes out of row-major order, overlapping boxes, an empty box: each
  // still lands box after box.
  EXPECT_TRUE(
      reads_expected(reader, manifest, exp_avg,
                     {Box{{2, 0, 0}, {2, 3, 5}}, Box{{0, 1, 1}, {1, 2, 2}},
                      Box{{0, 0, 0}, {0, 3, 5}}, Box{{0, 1, 1}, {1, 2, 2}}}));
  // Side-by-side blocks (their union interleaves in row-major order).
  EXPECT_TRUE(
      reads_expected(reader, manifest, exp_avg,
                     {Box{{0, 0, 0}, {4, 3, 2}}, Box{{0, 0, 2}, {4, 3, 3}}}));
  // A flat range written by other ranks, read as its boxes.
  const auto flat = Region::flat(FlatRange{7, 53}).boxes({4, 3, 5});
  EXPECT_TRUE(reads_expected(reader, manifest, exp_avg, flat));
  EXPECT_TRUE(
      reads_expected(reader, manifest, "model/model.temperature", {Box{}}));
  EXPECT_TRUE(reads_expected(reader, manifest, "model/model.empty",
                             {Box{{0, 0}, {0, 4}}}));
  EXPECT_TRUE(reads_expected(reader, manifest, "model/encoder/block.0/scale",
                             {Box{{1, 0}, {2, 5}}}));
}

TEST(Hdf5Engine, ReadsAnyBoxesWhateverPartitionWroteThem) {
  RegionKindsCheckpoint c;
  const Manifest& manifest = c.write();
  const ReadContext ctx = c.read_context();
  using Large = h5::Hdf5Reader::LargeReads;
  {
    SCOPED_TRACE("small tensors read directly");
    h5::Hdf5Reader reader(ctx);
    expect_any_boxes_read(reader, manifest, c.rank);
    EXPECT_EQ(reader.stats().transfers, 0u);
  }
  {
    // Every tensor through the large tensors' path: the runs of every
    // request here are few, so each is read with pread.
    SCOPED_TRACE("every tensor checked collectively, then read with pread");
    h5::Hdf5Reader reader(ctx, /*direct_below=*/0, Large::kDirect);
    expect_any_boxes_read(reader, manifest, c.rank);
    EXPECT_EQ(reader.stats().transfers, 0u);
    EXPECT_GT(reader.stats().direct, 0u);
  }
  {
    SCOPED_TRACE("every tensor by collective H5Dread");
    h5::Hdf5Reader reader(ctx, /*direct_below=*/0, Large::kCollective);
    expect_any_boxes_read(reader, manifest, c.rank);
    EXPECT_EQ(reader.stats().direct, 0u);
    EXPECT_GT(reader.stats().transfers, 0u);
    EXPECT_TRUE(reader.stats().all_collective()) << reader.stats().first_cause;
  }
}

TEST(Hdf5Engine, LargeReadsArePreadUnlessARankAsksForManySmallRuns) {
  TempDir dir;
  const int rank = world_rank(), size = world_size();
  SimpleTrainer trainer;
  const Shape big{512, 1024};  // 2 MiB of F32: above small_tensor_bytes
  fill_expected(trainer.state().add_model("model.big", DType::kF32, big,
                                          dim0_shard(big, rank, size)));
  make_test_engine(trainer, "hdf5", dir.path())->save();
  const auto checkpoint = open_checkpoint(dir / "global_step_0", MPI_COMM_WORLD);
  const Manifest& manifest = checkpoint.manifest;
  auto files = posix_file_system();
  // Every tensor checked by read() itself (collectively), not up front.
  h5::Hdf5Reader reader(
      ReadContext{dir / "global_step_0", manifest, MPI_COMM_WORLD, *files},
      /*direct_below=*/0, h5::Hdf5Reader::LargeReads::kDirect);
  const std::string key = "model/model.big";
  // Row blocks that no rank wrote, a ZeRO flat range (a few boxes), and
  // nothing at all: a few runs on every rank, each read with pread.
  EXPECT_TRUE(reads_expected(reader, manifest, key,
                             {Box{{u(rank) * 7, 0}, {100, 1024}}}));
  EXPECT_TRUE(reads_expected(reader, manifest, key,
                             zero_flat_shard(big, rank, size).boxes(big)));
  std::vector<Box> some;
  if (rank == 0) some.push_back(Box{{3, 0}, {1, 1024}});
  EXPECT_TRUE(reads_expected(reader, manifest, key, some));
  EXPECT_EQ(reader.stats().direct, 3u);
  EXPECT_EQ(reader.stats().transfers, 0u);
  // The last rank asks for a column block: 512 runs of 12 bytes, which the
  // collective H5Dread serves better. Every rank takes part in it.
  std::vector<Box> boxes = {Box{{u(rank), 0}, {2, 1024}}};
  if (rank == size - 1) boxes = {Box{{0, 5}, {512, 3}}};
  EXPECT_TRUE(reads_expected(reader, manifest, key, boxes));
  EXPECT_EQ(reader.stats().direct, 3u);
  EXPECT_EQ(reader.stats().transfers, 1u);
  EXPECT_TRUE(reader.stats().all_collective()) << reader.stats().first_cause;
}

TEST(Hdf5Engine, LargePiecesAreSplitIntoSeveralTransfers) {
  RegionKindsCheckpoint c;
  h5::TransferStats stats;
  const Manifest& manifest = c.write(
      {{"max_transfer_bytes", "12"}, {"small_tensor_bytes", "0"}}, &stats);
  // 12 bytes: 3 F32 / 6 BF16 / 6 F16 elements per transfer.
  EXPECT_GT(stats.transfers, 5u);
  EXPECT_TRUE(stats.all_collective()) << stats.first_cause;
  h5::Hdf5Reader reader(c.read_context());
  for (const auto& tensor : manifest.tensors) {
    EXPECT_TRUE(reads_expected(reader, manifest, tensor.spec.key(),
                               {full_box(tensor.spec.shape)}));
  }
}

TEST(Hdf5Engine, BlobsOfEveryRankRoundTrip) {
  TempDir dir;
  const int rank = world_rank(), size = world_size();
  SimpleTrainer trainer;
  std::vector<std::uint8_t> rng(1000 + 17 * rank);
  for (std::size_t i = 0; i < rng.size(); ++i)
    rng[i] = static_cast<std::uint8_t>(i * 13 + rank);
  trainer.state().set_blob("rng", rng);
  trainer.state().set_blob("loader/position",
                           {static_cast<std::uint8_t>(rank)});
  trainer.state().set_blob("empty", {});
  const Manifest manifest =
      manifest_of(write_direct(trainer, make_dir(dir / "c")));
  ASSERT_EQ(manifest.blobs.size(), static_cast<std::size_t>(3 * size));

  auto files = posix_file_system();
  h5::Hdf5Reader reader(
      ReadContext{dir / "c", manifest, MPI_COMM_WORLD, *files});
  // Not collective: every rank reads every rank's blobs, in its own order.
  for (std::size_t i = 0; i < manifest.blobs.size(); ++i) {
    const BlobRecord& blob = manifest.blobs[(i + rank) % manifest.blobs.size()];
    const auto bytes = reader.read_blob(blob);
    EXPECT_EQ(bytes.size(), blob.nbytes);
    EXPECT_EQ(xxh3_64(bytes.data(), bytes.size()), blob.xxh3) << blob.name;
    if (blob.name == "loader/position") {
      EXPECT_EQ(bytes, std::vector<std::uint8_t>{
                           static_cast<std::uint8_t>(blob.rank)});
    }
  }
  // Collective reads still work after independent ones.
  EXPECT_EQ(reader.read_blob(manifest.blobs[3 * rank + 2]), rng);
}

TEST(Hdf5Engine, MoreThanTwoGiBPerRank) {
  if (!std::getenv("FLOE_TEST_LARGE")) GTEST_SKIP() << "set FLOE_TEST_LARGE=1";
  TempDir dir;
  const int rank = world_rank(), size = world_size();
  const std::uint64_t per_rank = (9ull << 28) / 8;  // 2.25 GiB of U64
  std::vector<std::uint64_t> data(per_rank);
  for (std::uint64_t i = 0; i < per_rank; ++i)
    data[i] = i * 2654435761ull + rank;
  for (const std::uint64_t limit : {0ull, 1ull << 30}) {
    SimpleTrainer trainer;
    const Shape shape{per_rank * size};
    trainer.state().add_model(
        "big", DType::kU64, shape,
        Region::flat(FlatRange{per_rank * rank, per_rank * (rank + 1)}),
        data.data());
    h5::TransferStats stats;
    const auto sub = "limit" + std::to_string(limit);
    const Manifest manifest = manifest_of(
        write_direct(trainer, make_dir(dir / sub),
                     {{"max_transfer_bytes", std::to_string(limit)}}, &stats));
    EXPECT_EQ(stats.transfers, limit == 0 ? 1u : 3u);
    EXPECT_TRUE(stats.all_collective());
    EXPECT_EQ(manifest.tensors[0].pieces[rank].xxh3,
              xxh3_64(data.data(), per_rank * 8));
    auto files = posix_file_system();
    h5::Hdf5Reader reader(
        ReadContext{dir / sub, manifest, MPI_COMM_WORLD, *files});
    std::vector<std::uint64_t> back(per_rank, 0);
    const int other = (rank + 1) % size;
    reader.read(manifest.tensors[0], {Box{{per_rank * other}, {per_rank}}},
                back.data());
    std::uint64_t wrong = 0;
    for (std::uint64_t i = 0; i < per_rank; ++i) {
      wrong += back[i] != i * 2654435761ull + other;
    }
    EXPECT_EQ(wrong, 0u);
  }
}

}  // namespace
}  // namespace floe::test
