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

}  // namespace
}  // namespace floe
