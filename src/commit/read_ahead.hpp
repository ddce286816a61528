// Reading a rank's share of a checkpoint on a thread of its own, so load()
// checks (and hashes) tensor t while tensor t+1 is read, and the disk is kept
// busy from the first tensor on. Tensors are read in batches
// (CheckpointReader::read_some) and the caller is woken once per batch: at
// 20,000 small tensors a wake-up per tensor cost more CPU than the reads.
// A large shard is read in chunks, and the caller may follow them
// (wait_more) to hash each one while it is still in cache.
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
  // larger tensor) handed to read_some; a shard of more than kChunkBytes
  // alone, in chunks (see kChunkBytes). Stops at the first read that
  // throws. The caller must not touch a shard's data before wait() for its
  // tensor returned, but for the bytes wait_more() said had arrived; every
  // argument must outlive this object.
  ReadAhead(CheckpointReader& reader, const std::vector<TensorRecord>& tensors,
            const std::vector<TensorShard*>& shards);
  // Stops after the read in progress (one read_some call, or one chunk's
  // read) and joins the thread: no shard is written after it returns.
  ~ReadAhead();
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  // Waits until tensor `t` is read. Throws what its read threw, or what the
  // read that stopped the thread before it threw.
  void wait(std::size_t t);

  // Waits until more than `have` bytes of tensor `t`'s shard have arrived
  // (`have` below the shard's size; t must have a shard here), counted from
  // the shard's start, and returns how many have: a chunk at a time for a
  // shard read in chunks, else all of it once wait(t) would return. Throws
  // as wait() does.
  std::uint64_t wait_more(std::size_t t, std::uint64_t have);

  // A batch: enough tensors that a wake-up and a system call are small
  // beside them, few enough bytes that the caller checks a batch while it
  // is still in cache (1 GiB in 20,000 tensors, 1 rank: median CPU of a
  // load 383 ms with 1 MiB batches, 404 ms with 4 MiB; BENCHMARKS.md).
  static constexpr std::size_t kBatchTensors = 4096;
  static constexpr std::uint64_t kBatchBytes = 1u << 20;

  // A shard of more than this many bytes is read at most this many at a
  // time (whole rows of its boxes, or parts of one row where a row is
  // larger), so that load() hashes each chunk (wait_more) while it is in
  // cache instead of going over the whole shard again from memory once it
  // has arrived. 1, 2, 4 and 8 MiB loaded 1 GiB at 2 ranks alike within
  // this VM's noise, page cache dropped (BENCHMARKS.md, "Hashing large
  // pieces while they arrive").
  static constexpr std::uint64_t kChunkBytes = 2u << 20;
  // Whether a shard of `nbytes` is read in chunks (wait_more() then
  // reports it chunk by chunk): the one rule the thread and its caller use.
  static constexpr bool reads_in_chunks(std::uint64_t nbytes) {
    return nbytes > kChunkBytes;
  }

 private:
  void run();
  // Reads shard `t` in chunks, telling the caller of each; false when
  // stopped (stop_) before the last.
  bool read_in_chunks(std::size_t t);
  // Marks tensors [0, done) read and wakes a waiting caller.
  void publish(std::size_t done);
  // What wait() throws once tensor `t` will not arrive (the thread is done).
  [[noreturn]] void throw_not_read(std::size_t t) const;

  CheckpointReader& reader_;
  const std::vector<TensorRecord>& tensors_;
  const std::vector<TensorShard*>& shards_;
  std::atomic<std::size_t> done_{0};  // tensors [0, done_) are read
  std::atomic<bool> waiting_{false};  // the caller sleeps in wait()
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable progress_;
  bool finished_ = false;     // guarded by mutex_
  // The shard being read in chunks, and how many of its bytes have arrived.
  std::size_t part_tensor_ = SIZE_MAX;  // guarded by mutex_
  std::uint64_t part_bytes_ = 0;        // guarded by mutex_
  std::exception_ptr error_;  // guarded by mutex_
  std::thread thread_;        // last: starts once the rest exists
};

}  // namespace floe
