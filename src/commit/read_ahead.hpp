// Reading a rank's share of a checkpoint on a thread of its own, so load()
// checks (and hashes) tensor t while tensor t+1 is read, and the disk is kept
// busy from the first tensor on. Tensors are read in batches
// (CheckpointReader::read_some) and the caller is woken once per batch: at
// 20,000 small tensors a wake-up per tensor cost more CPU than the reads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "floe/engine.hpp"
#include "floe/state.hpp"

namespace floe {

class ReadAhead {
 public:
  // Starts reading: tensor after tensor, for each t with a shard, the
  // shard's region of `tensors[t]` into the shard, through `reader`, which
  // must read independently (CheckpointReader::reads_independently), in
  // batches of up to kBatchTensors tensors and kBatchBytes bytes (or one
  // larger tensor) handed to read_some. Stops at the first read that
  // throws. The caller must not touch a shard's data before wait() for its
  // tensor returned; every argument must outlive this object.
  ReadAhead(CheckpointReader& reader, const std::vector<TensorRecord>& tensors,
            const std::vector<TensorShard*>& shards);
  // Stops after the read in progress (one read_some call) and joins the
  // thread: no shard is written after it returns.
  ~ReadAhead();
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  // Waits until tensor `t` is read. Throws what its read threw, or what the
  // read that stopped the thread before it threw.
  void wait(std::size_t t);

  // A batch: enough tensors that a wake-up and a system call are small
  // beside them, few enough bytes that the caller checks a batch while it
  // is still in cache (1 GiB in 20,000 tensors, 1 rank: median CPU of a
  // load 383 ms with 1 MiB batches, 404 ms with 4 MiB; BENCHMARKS.md).
  static constexpr std::size_t kBatchTensors = 4096;
  static constexpr std::uint64_t kBatchBytes = 1u << 20;

 private:
  void run();
  // Marks tensors [0, done) read and wakes a waiting caller.
  void publish(std::size_t done);

  CheckpointReader& reader_;
  const std::vector<TensorRecord>& tensors_;
  const std::vector<TensorShard*>& shards_;
  std::atomic<std::size_t> done_{0};  // tensors [0, done_) are read
  std::atomic<bool> waiting_{false};  // the caller sleeps in wait()
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable progress_;
  bool finished_ = false;     // guarded by mutex_
  std::exception_ptr error_;  // guarded by mutex_
  std::thread thread_;        // last: starts once the rest exists
};

}  // namespace floe
