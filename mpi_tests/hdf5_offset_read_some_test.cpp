// The hdf5 reader's read_some through the manifest's storage offsets: many
// requests in one call, tensors that lie together in one read, and a
// request that fails ending the batch before it.
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engines/hdf5/h5_direct_runs.hpp"
#include "hdf5_storage_offset_support.hpp"

namespace floe::test {
namespace {

// One read_some request per (tensor, boxes) of `plan`, into buffers of its
// own filled with 0xAB; holds(i) checks request i against the expected
// bytes.
struct Requests {
  Requests(const Manifest& manifest,
           const std::vector<std::pair<std::string, std::vector<Box>>>& plan) {
    for (const auto& [key, boxes] : plan) {
      const TensorRecord& record = record_of(manifest, key);
      want.push_back(expected_bytes(record.spec, boxes));
      got.emplace_back(want.back().size(), 0xAB);
      list.push_back({&record, boxes, got.back().data()});
    }
  }
  // Calls read_some from request `from` on until every request is read or
  // one throws (rethrown); returns how many calls it made.
  std::size_t read_all(CheckpointReader& reader, std::size_t from = 0) {
    std::size_t calls = 0;
    while (from < list.size()) {
      const std::size_t n =
          reader.read_some(list.data() + from, list.size() - from);
      EXPECT_GE(n, 1u);
      from += n;
      ++calls;
    }
    return calls;
  }
  ::testing::AssertionResult holds(std::size_t i) const {
    if (got[i] == want[i]) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << list[i].tensor->spec.key() << " (request " << i << ") differs";
  }
  std::vector<std::vector<unsigned char>> want, got;
  std::vector<CheckpointReader::ReadRequest> list;
};

// Every tensor whole, a column block of each 2-d one (runs with gaps), and
// this rank's row of the 3-d one, out of file order: read_some reads them
// all in one call (runs sorted by offset, gaps read into scratch), exactly.
std::vector<std::pair<std::string, std::vector<Box>>> mixed_plan(
    const Manifest& manifest, int rank) {
  std::vector<std::pair<std::string, std::vector<Box>>> plan;
  for (auto t = manifest.tensors.rbegin(); t != manifest.tensors.rend(); ++t) {
    const Shape& shape = t->spec.shape;
    plan.push_back({t->spec.key(), {full_box(shape)}});
    if (shape.size() == 2 && shape[1] > 1) {
      plan.push_back(
          {t->spec.key(), {Box{{0, u(rank) % shape[1]}, {shape[0], 1}}}});
    }
    if (shape.size() == 3) {
      plan.push_back({t->spec.key(),
                      {Box{{u(rank) % shape[0], 0, 0}, {1, shape[1], shape[2]}},
                       Box{{0, 0, 1}, {shape[0], shape[1], 2}}}});
    }
  }
  return plan;
}

// The tensors of `manifest` that have bytes, in the order of their
// storage offsets (every one must have one).
std::vector<const TensorRecord*> tensors_by_offset(const Manifest& manifest) {
  std::vector<const TensorRecord*> by_offset;
  for (const auto& t : manifest.tensors) {
    if (t.spec.nbytes() > 0) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorRecord* a, const TensorRecord* b) {
              return *a->storage_offset < *b->storage_offset;
            });
  return by_offset;
}

// The reader finds a request's plan by comparing keys without building
// them (key_is): it must agree with TensorSpec::key() exactly, near misses
// included, or a load would read the wrong plan or none.
TEST(Hdf5StorageOffset, KeyIsTrueExactlyForTheSpecsKey) {
  const TensorSpec model{TensorGroup::kModel, "w", "", DType::kF32, {2}};
  const TensorSpec adam{TensorGroup::kOptimizer, "w", "exp_avg", DType::kF32, {2}};
  for (const TensorSpec& spec : {model, adam}) EXPECT_TRUE(h5::key_is(spec.key(), spec));
  EXPECT_FALSE(h5::key_is(adam.key(), model));
  EXPECT_FALSE(h5::key_is(model.key(), adam));
  EXPECT_FALSE(h5::key_is("model/w2", model));
  EXPECT_FALSE(h5::key_is("model/", model));
  EXPECT_FALSE(h5::key_is("optimizer/w/exp_avg_sq", adam));
  EXPECT_FALSE(h5::key_is("optimizer/w.exp_avg", adam));
  EXPECT_FALSE(h5::key_is("optimizer/v/exp_avg", adam));
  // Keys compare as key() spells them, whatever splits name and opt_key.
  const TensorSpec split{TensorGroup::kOptimizer, "w/exp", "avg", DType::kF32, {2}};
  EXPECT_TRUE(h5::key_is("optimizer/w/exp/avg", split));
  EXPECT_FALSE(h5::key_is("optimizer/w/exp", split));
}

TEST(Hdf5StorageOffset, ReadSomeReadsManyRequestsInOneCallExactly) {
  RegionKindsCheckpoint c;
  const Manifest& manifest = c.write();
  h5::Hdf5Reader reader(c.read_context(manifest));
  ASSERT_TRUE(reader.reads_independently());
  Requests requests(manifest, mixed_plan(manifest, c.rank));
  EXPECT_EQ(requests.read_all(reader), 1u);
  for (std::size_t i = 0; i < requests.list.size(); ++i)
    EXPECT_TRUE(requests.holds(i));
  EXPECT_EQ(reader.stats().batched, requests.list.size());
  EXPECT_EQ(reader.stats().transfers, 0u);
  // One batch read by read_gathered, none request by request.
  EXPECT_EQ(reader.read_some_stats().batches, 1u);
  EXPECT_EQ(reader.read_some_stats().batched_requests, requests.list.size());
  EXPECT_EQ(reader.read_some_stats().fallbacks, 0u);
  // A request for nothing (an empty box) among them, and one request alone.
  Requests few(manifest, {{"model/model.bias", {Box{{2}, {0}}}},
                          {"model/model.bias", {Box{{1}, {4}}}}});
  EXPECT_EQ(few.read_all(reader), 1u);
  EXPECT_TRUE(few.holds(1));
  Requests one(manifest, {{"model/model.bias", {Box{{0}, {6}}}}});
  EXPECT_EQ(one.read_all(reader), 1u);
  EXPECT_TRUE(one.holds(0));
  // The request alone is read() (counted in neither); the pair a batch.
  EXPECT_EQ(reader.read_some_stats().batches, 2u);
  EXPECT_EQ(reader.read_some_stats().fallbacks, 0u);
}

// Every tensor whole, in file order: read_some reads them with one preadv
// per stretch of tensors whose gaps are at most 16 KiB (read through), a
// new one after each longer gap; counted by the reader.
TEST(Hdf5StorageOffset, ReadSomeReadsTensorsThatLieTogetherInOneRead) {
  RegionKindsCheckpoint c;
  const Manifest& manifest = c.write();
  h5::Hdf5Reader reader(c.read_context(manifest));
  ASSERT_TRUE(reader.reads_independently());
  const std::vector<const TensorRecord*> by_offset =
      tensors_by_offset(manifest);
  ASSERT_GE(by_offset.size(), 2u);
  std::vector<std::pair<std::string, std::vector<Box>>> plan;
  std::uint64_t stretches = 1;
  for (std::size_t i = 0; i < by_offset.size(); ++i) {
    const TensorRecord& t = *by_offset[i];
    plan.push_back({t.spec.key(), {full_box(t.spec.shape)}});
    if (i == 0) continue;
    const TensorRecord& before = *by_offset[i - 1];
    const std::uint64_t end = *before.storage_offset + before.spec.nbytes();
    ASSERT_GE(*t.storage_offset, end);
    if (*t.storage_offset - end > (16u << 10)) ++stretches;
  }
  Requests requests(manifest, plan);
  EXPECT_EQ(requests.read_all(reader), 1u);
  for (std::size_t i = 0; i < requests.list.size(); ++i)
    EXPECT_TRUE(requests.holds(i));
  const GatheredReadStats stats = reader.read_some_stats();
  EXPECT_EQ(stats.batches, 1u);
  EXPECT_EQ(stats.batched_requests, plan.size());
  EXPECT_EQ(stats.gathered_reads, stretches);
  EXPECT_EQ(stats.fallbacks, 0u);
  // The first and last tensors alone, whatever lies between them: one read
  // if the gap is at most 16 KiB, else two.
  const TensorRecord& first = *by_offset.front();
  const TensorRecord& last = *by_offset.back();
  Requests ends(manifest, {plan.front(), plan.back()});
  EXPECT_EQ(ends.read_all(reader), 1u);
  EXPECT_TRUE(ends.holds(0));
  EXPECT_TRUE(ends.holds(1));
  const std::uint64_t gap =
      *last.storage_offset - (*first.storage_offset + first.spec.nbytes());
  EXPECT_EQ(reader.read_some_stats().gathered_reads - stats.gathered_reads,
            gap > (16u << 10) ? 2u : 1u);
}

// A request whose offset does not fit the file (a manifest not checked by
// the parser) ends the prefix before it; the next call, starting with it,
// throws read()'s error naming the tensor and the field. A data file cut
// after the reader opened it: the tensors before the cut are read, and
// the call that reaches the cut tensor throws read()'s "truncated" error.
TEST(Hdf5StorageOffset, ReadSomeStopsAtTheFirstRequestThatFails) {
  RegionKindsCheckpoint c;
  Manifest edited = c.write();
  const std::uint64_t size = fs::file_size(c.file());
  {
    ASSERT_NE(offset_bias_beyond_the_end(edited, size), nullptr);
    h5::Hdf5Reader reader(c.read_context(edited));
    const Box column{{0, 0}, {3, 1}};
    Requests requests(edited,
                      {{"model/model.layers.0.mlp.weight", {column}},
                       {"model/encoder/block.0/scale", {column}},
                       {"model/model.bias", {Box{{0}, {6}}}},
                       {"model/encoder/block.0/scale", {Box{{0, 0}, {3, 5}}}}});
    EXPECT_EQ(reader.read_some(requests.list.data(), requests.list.size()), 2u);
    EXPECT_TRUE(requests.holds(0));
    EXPECT_TRUE(requests.holds(1));
    // Not read as a batch: request by request, counted as such.
    EXPECT_EQ(reader.read_some_stats().batches, 0u);
    EXPECT_EQ(reader.read_some_stats().fallbacks, 1u);
    EXPECT_EQ(reader.read_some_stats().fallback_requests, requests.list.size());
    EXPECT_TRUE(throws_error([&] { (void)requests.read_all(reader, 2); },
                             ErrorCode::kCorrupt, {bias_beyond_the_end(size)}));
    EXPECT_EQ(requests.read_all(reader, 3), 1u);
    EXPECT_TRUE(requests.holds(3));
  }
  // The cut: in the last tensor by offset (the first one in it keeps its
  // bytes before the cut).
  const Manifest& manifest = c.manifest;
  const std::vector<const TensorRecord*> by_offset =
      tensors_by_offset(manifest);
  const TensorRecord& last = *by_offset.back();
  h5::Hdf5Reader reader(c.read_context(manifest));
  MPI_Barrier(MPI_COMM_WORLD);
  if (c.rank == 0) fs::resize_file(c.file(), *last.storage_offset + 1);
  MPI_Barrier(MPI_COMM_WORLD);
  std::vector<std::pair<std::string, std::vector<Box>>> plan;
  for (const TensorRecord* t : by_offset)
    plan.push_back({t->spec.key(), {full_box(t->spec.shape)}});
  Requests requests(manifest, plan);
  EXPECT_EQ(reader.read_some(requests.list.data(), requests.list.size()),
            requests.list.size() - 1);
  // The batch's preadv met the cut: read again request by request.
  EXPECT_EQ(reader.read_some_stats().batches, 0u);
  EXPECT_EQ(reader.read_some_stats().fallbacks, 1u);
  EXPECT_EQ(reader.read_some_stats().fallback_requests, requests.list.size());
  for (std::size_t i = 0; i + 1 < requests.list.size(); ++i)
    EXPECT_TRUE(requests.holds(i));
  EXPECT_TRUE(throws_error(
      [&] { (void)requests.read_all(reader, requests.list.size() - 1); },
      ErrorCode::kCorrupt,
      {c.file().string() + ": the file ended at " +
           std::to_string(*last.storage_offset + 1),
       "(truncated)"}));
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace floe::test
