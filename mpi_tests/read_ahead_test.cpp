// ReadAhead (src/commit/read_ahead.hpp), the thread load() reads on when
// the reader reads independently: tensors arrive in order, a tensor without
// a shard is skipped, a read that throws stops the thread and every later
// wait() rethrows it, and the destructor joins whatever the thread is doing.
#include "commit/read_ahead.hpp"

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace floe {
namespace {

using test::catch_error;
using test::is_error;
using test::throws_error;

constexpr std::uint64_t kElements = 16;

// Writes each element's tensor index into the buffer; throws kCorrupt
// naming the tensor at `fail_at`; with `gate`, blocks every read until
// open_gate(). Counts its reads and notes the thread that made them.
class ScriptedReader : public CheckpointReader {
 public:
  explicit ScriptedReader(std::size_t fail_at = ~std::size_t{0}, bool gate = false)
      : fail_at_(fail_at), gated_(gate) {}

  void read(const TensorRecord& tensor, const std::vector<Box>& boxes,
            void* out) override {
    ++in_read_;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      opened_.wait(lock, [&] { return !gated_; });
    }
    const std::size_t index = std::stoul(tensor.spec.name.substr(1));
    ++reads_;
    struct Leave {
      std::atomic<int>& n;
      ~Leave() { --n; }
    } leave{in_read_};
    if (std::this_thread::get_id() == caller_) ++reads_on_caller_;
    if (index == fail_at_) {
      throw Error(ErrorCode::kCorrupt, "tensor \"" + tensor.spec.key() + "\": bad bytes");
    }
    std::uint64_t elements = 0;
    for (const Box& box : boxes) elements += box.elements();
    auto* values = static_cast<float*>(out);
    for (std::uint64_t i = 0; i < elements; ++i) values[i] = static_cast<float>(index);
  }

  std::vector<std::uint8_t> read_blob(const BlobRecord&) override { return {}; }
  bool reads_independently() const override { return true; }

  void open_gate() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      gated_ = false;
    }
    opened_.notify_all();
  }

  std::atomic<std::size_t> reads_{0};
  std::atomic<int> in_read_{0};  // reads begun and not yet returned
  std::atomic<std::size_t> reads_on_caller_{0};

 private:
  const std::size_t fail_at_;
  const std::thread::id caller_ = std::this_thread::get_id();
  std::mutex mutex_;
  std::condition_variable opened_;
  bool gated_;
};

// `n` tensors "t0".."t<n-1>" of kElements F32, each held whole, but for
// the indices in `without`, which have no shard on this rank.
struct Tensors {
  explicit Tensors(std::size_t n, const std::vector<std::size_t>& without = {}) {
    const Shape shape{kElements};
    for (std::size_t t = 0; t < n; ++t) {
      TensorRecord record;
      record.spec = TensorSpec{TensorGroup::kModel, "t" + std::to_string(t), "",
                               DType::kF32, shape};
      records.push_back(record);
      owned.push_back(std::make_unique<TensorShard>(record.spec, Region::whole(shape)));
      std::memset(owned.back()->data(), 0xFF, owned.back()->nbytes());
      bool held = true;
      for (const std::size_t w : without) held = held && w != t;
      shards.push_back(held ? owned.back().get() : nullptr);
    }
  }

  // Whether shard `t` holds its index in every element.
  bool read(std::size_t t) const {
    const float* values = owned[t]->data_as<float>();
    for (std::uint64_t i = 0; i < kElements; ++i) {
      if (values[i] != static_cast<float>(t)) return false;
    }
    return true;
  }

  std::vector<TensorRecord> records;
  std::vector<std::unique_ptr<TensorShard>> owned;
  std::vector<TensorShard*> shards;
};

TEST(ReadAhead, ReadsEveryShardInOrderOnAThreadOfItsOwn) {
  ScriptedReader reader;
  Tensors tensors(6, {2});
  {
    ReadAhead ahead(reader, tensors.records, tensors.shards);
    for (std::size_t t = 0; t < 6; ++t) {
      ahead.wait(t);
      if (t != 2) {
        EXPECT_TRUE(tensors.read(t)) << t;
      }
    }
  }
  EXPECT_EQ(reader.reads_.load(), 5u);  // not t2, which has no shard here
  EXPECT_EQ(reader.reads_on_caller_.load(), 0u);
  const auto* untouched = reinterpret_cast<const unsigned char*>(tensors.owned[2]->data());
  EXPECT_EQ(untouched[0], 0xFF);
}

// The read of tensor 3 throws: waits for 0-2 return with their values, the
// wait for 3 and every later one rethrow its error, and no read follows it.
TEST(ReadAhead, AReadThatThrowsStopsTheThreadAndEveryLaterWaitRethrowsIt) {
  ScriptedReader reader(3);
  Tensors tensors(6);
  {
    ReadAhead ahead(reader, tensors.records, tensors.shards);
    for (std::size_t t = 0; t < 3; ++t) {
      EXPECT_NO_THROW(ahead.wait(t)) << t;
      EXPECT_TRUE(tensors.read(t)) << t;
    }
    for (std::size_t t = 3; t < 6; ++t) {
      const test::Caught caught = catch_error([&] { ahead.wait(t); });
      EXPECT_TRUE(is_error(caught, ErrorCode::kCorrupt, {"tensor \"model/t3\": bad bytes"}))
          << "wait(" << t << ")";
    }
    // What had arrived stays readable after the failure.
    EXPECT_NO_THROW(ahead.wait(1));
  }
  EXPECT_EQ(reader.reads_.load(), 4u);
  for (std::size_t t = 4; t < 6; ++t) EXPECT_FALSE(tensors.read(t)) << t;
}

// Destroyed while its thread is inside a read (with tensors left): the
// destructor returns only after that read has, and nothing is read or
// written after it returns.
TEST(ReadAhead, TheDestructorJoinsAfterTheReadInProgress) {
  ScriptedReader reader(~std::size_t{0}, /*gate=*/true);
  Tensors tensors(8);
  auto ahead = std::make_unique<ReadAhead>(reader, tensors.records, tensors.shards);
  while (reader.in_read_ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::atomic<bool> destroyed{false};
  std::thread destroyer([&] {
    ahead.reset();
    destroyed = true;
  });
  // The read of t0 waits at the gate: the destructor cannot have returned.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(destroyed.load());
  reader.open_gate();
  destroyer.join();
  EXPECT_EQ(reader.in_read_.load(), 0);
  const std::size_t reads = reader.reads_;
  EXPECT_GE(reads, 1u);
  EXPECT_TRUE(tensors.read(0));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(reader.reads_.load(), reads);
  for (std::size_t t = reads; t < 8; ++t) EXPECT_FALSE(tensors.read(t)) << t;
}

// A failure in the very first read: every wait rethrows, even before the
// thread has got that far.
TEST(ReadAhead, AFailureInTheFirstReadReachesEveryWait) {
  ScriptedReader reader(0);
  Tensors tensors(3);
  ReadAhead ahead(reader, tensors.records, tensors.shards);
  for (std::size_t t : {2u, 0u, 1u}) {
    EXPECT_TRUE(throws_error([&] { ahead.wait(t); }, ErrorCode::kCorrupt,
                             {"tensor \"model/t0\""}))
        << t;
  }
}

// Writes each element's flat index in its tensor (as F32) and notes every
// box it is asked for; with a gate, lets only open_reads(n) reads through;
// read number `fail_at` (from 0) throws kCorrupt.
class ChunkReader : public CheckpointReader {
 public:
  explicit ChunkReader(bool gate = false, std::size_t fail_at = ~std::size_t{0})
      : allowed_(gate ? 0 : ~std::size_t{0}), fail_at_(fail_at) {}

  void read(const TensorRecord& tensor, const std::vector<Box>& boxes,
            void* out) override {
    std::unique_lock<std::mutex> lock(mutex_);
    opened_.wait(lock, [&] { return reads_ < allowed_; });
    if (reads_++ == fail_at_) {
      throw Error(ErrorCode::kCorrupt, "tensor \"" + tensor.spec.key() + "\": bad chunk");
    }
    auto* values = static_cast<float*>(out);
    const std::uint64_t cols = tensor.spec.shape.at(1);
    for (const Box& box : boxes) {
      boxes_.push_back(box);
      for (std::uint64_t r = 0; r < box.extent[0]; ++r) {
        for (std::uint64_t c = 0; c < box.extent[1]; ++c) {
          *values++ = static_cast<float>((box.offset[0] + r) * cols + box.offset[1] + c);
        }
      }
    }
  }

  std::vector<std::uint8_t> read_blob(const BlobRecord&) override { return {}; }
  bool reads_independently() const override { return true; }

  void open_reads(std::size_t n) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      allowed_ = n;
    }
    opened_.notify_all();
  }

  std::vector<Box> boxes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return boxes_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable opened_;
  std::size_t reads_ = 0;  // guarded by mutex_
  std::size_t allowed_;    // guarded by mutex_
  const std::size_t fail_at_;
  std::vector<Box> boxes_;  // guarded by mutex_
};

// One F32 tensor "t0" of `shape`, of which this rank holds `region`.
struct OneTensor {
  OneTensor(const Shape& shape, const Region& region) {
    TensorRecord record;
    record.spec = TensorSpec{TensorGroup::kModel, "t0", "", DType::kF32, shape};
    records.push_back(record);
    shard = std::make_unique<TensorShard>(record.spec, region);
    shards.push_back(shard.get());
  }

  // Whether element i of the shard holds the flat index `global(i)`.
  template <typename Global>
  bool holds(Global&& global) const {
    const float* values = shard->data_as<float>();
    for (std::uint64_t i = 0; i < shard->region().elements(); ++i) {
      if (values[i] != static_cast<float>(global(i))) return false;
    }
    return true;
  }

  std::vector<TensorRecord> records;
  std::unique_ptr<TensorShard> shard;
  std::vector<TensorShard*> shards;
};

constexpr std::uint64_t kChunk = ReadAhead::kChunkBytes;

// A shard of 2.5 chunks of 1 KiB rows arrives in three reads of whole rows,
// each told to wait_more as it lands (the gate lets one read through at a
// time), and wait() returns once the last has.
TEST(ReadAhead, ALargeShardArrivesChunkByChunk) {
  constexpr std::uint64_t kCols = 256;  // 1 KiB rows
  const std::uint64_t rows = (2 * kChunk + kChunk / 2) / (kCols * 4);
  OneTensor tensor({rows + 10, kCols}, Region::box(Box{{10, 0}, {rows, kCols}}));
  ChunkReader reader(/*gate=*/true);
  ReadAhead ahead(reader, tensor.records, tensor.shards);
  reader.open_reads(1);
  EXPECT_EQ(ahead.wait_more(0, 0), kChunk);
  reader.open_reads(2);
  EXPECT_EQ(ahead.wait_more(0, kChunk), 2 * kChunk);
  reader.open_reads(3);
  EXPECT_EQ(ahead.wait_more(0, 2 * kChunk), tensor.shard->nbytes());
  ahead.wait(0);
  EXPECT_EQ(ahead.wait_more(0, 0), tensor.shard->nbytes());  // all there
  const std::uint64_t chunk_rows = kChunk / (kCols * 4);
  const std::vector<Box> expected = {Box{{10, 0}, {chunk_rows, kCols}},
                                     Box{{10 + chunk_rows, 0}, {chunk_rows, kCols}},
                                     Box{{10 + 2 * chunk_rows, 0}, {rows - 2 * chunk_rows, kCols}}};
  EXPECT_EQ(reader.boxes(), expected);
  EXPECT_TRUE(tensor.holds([&](std::uint64_t i) { return 10 * kCols + i; }));
}

// Rows larger than a chunk are cut within the row; a flat range (several
// boxes) is cut box by box; the pieces land one after the other.
TEST(ReadAhead, ChunksCutWithinRowsAndAcrossTheBoxesOfAFlatRange) {
  const std::uint64_t cols = 2 * kChunk / 4 + 16;  // a row is 2 chunks and 64 bytes
  {
    OneTensor tensor({2, cols}, Region::whole({2, cols}));
    ChunkReader reader;
    ReadAhead ahead(reader, tensor.records, tensor.shards);
    ahead.wait(0);
    const auto boxes = reader.boxes();
    ASSERT_EQ(boxes.size(), 6u);  // 2 chunks and 16 elements, per row
    for (const Box& box : boxes) EXPECT_LE(box.elements() * 4, kChunk);
    EXPECT_TRUE(tensor.holds([](std::uint64_t i) { return i; }));
  }
  {
    // From the middle of row 0 to the middle of row 3: three boxes.
    const std::uint64_t begin = cols / 2, end = 3 * cols + cols / 3;
    OneTensor tensor({4, cols}, Region::flat({begin, end}));
    ChunkReader reader;
    ReadAhead ahead(reader, tensor.records, tensor.shards);
    std::uint64_t have = 0, calls = 0;
    while (have < tensor.shard->nbytes()) {
      const std::uint64_t now = ahead.wait_more(0, have);
      EXPECT_GT(now, have);
      have = now;
      ++calls;
    }
    EXPECT_GE(calls, 1u);
    std::uint64_t elements = 0;
    for (const Box& box : reader.boxes()) {
      EXPECT_LE(box.elements() * 4, kChunk);
      elements += box.elements();
    }
    EXPECT_EQ(elements, end - begin);
    EXPECT_TRUE(tensor.holds([&](std::uint64_t i) { return begin + i; }));
  }
}

// The second chunk's read throws: wait_more gives the first chunk, then
// rethrows the error, as does wait().
TEST(ReadAhead, AFailedChunkEndsWaitMoreWithItsError) {
  const std::uint64_t cols = 256;
  const std::uint64_t rows = 3 * kChunk / (cols * 4);
  OneTensor tensor({rows, cols}, Region::whole({rows, cols}));
  ChunkReader reader(/*gate=*/false, /*fail_at=*/1);
  ReadAhead ahead(reader, tensor.records, tensor.shards);
  EXPECT_EQ(ahead.wait_more(0, 0), kChunk);
  EXPECT_TRUE(throws_error([&] { ahead.wait_more(0, kChunk); }, ErrorCode::kCorrupt,
                           {"tensor \"model/t0\": bad chunk"}));
  EXPECT_TRUE(throws_error([&] { ahead.wait(0); }, ErrorCode::kCorrupt, {"bad chunk"}));
}

// Small tensors around a large one are read in one batch each side of it
// (read_some of both, not read() of each); the large one alone, in chunks.
TEST(ReadAhead, SmallTensorsAroundALargeOneKeepTheirBatches) {
  constexpr std::uint64_t kCols = 256;
  const std::vector<Shape> shapes = {{1, kCols}, {1, kCols}, {3 * kChunk / (kCols * 4), kCols},
                                     {1, kCols}, {1, kCols}};
  std::vector<TensorRecord> records;
  std::vector<std::unique_ptr<TensorShard>> owned;
  std::vector<TensorShard*> shards;
  for (std::size_t t = 0; t < shapes.size(); ++t) {
    TensorRecord record;
    record.spec = TensorSpec{TensorGroup::kModel, "t" + std::to_string(t), "", DType::kF32,
                             shapes[t]};
    records.push_back(record);
    owned.push_back(std::make_unique<TensorShard>(record.spec, Region::whole(shapes[t])));
    shards.push_back(owned.back().get());
  }
  struct CountingReader : ChunkReader {
    std::size_t read_some(const ReadRequest* requests, std::size_t count) override {
      batches.push_back(count);
      return read_each(requests, count);
    }
    std::vector<std::size_t> batches;  // the thread's; read after the join
  } reader;
  {
    ReadAhead ahead(reader, records, shards);
    for (std::size_t t = 0; t < shapes.size(); ++t) ahead.wait(t);
  }
  EXPECT_EQ(reader.batches, (std::vector<std::size_t>{2, 2}));
  EXPECT_EQ(reader.boxes().size(), 2u + 3u + 2u);  // the large one in 3 chunks
  for (const auto& shard : owned) {
    const float* values = shard->data_as<float>();
    for (std::uint64_t i = 0; i < shard->region().elements(); ++i) {
      ASSERT_EQ(values[i], static_cast<float>(i)) << shard->spec().key();
    }
  }
}

}  // namespace
}  // namespace floe
