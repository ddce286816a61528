#include "commit/read_ahead.hpp"

#include <algorithm>
#include <string>

#include "core/box_chunks.hpp"
#include "floe/dtype.hpp"
#include "floe/error.hpp"

namespace floe {
namespace {

// Sets `boxes` to region.boxes(shape), reusing their storage: a box region
// (the usual kind) costs no allocation once `boxes` has held a box of its
// rank, where building the list anew cost three per tensor.
void assign_boxes(const Region& region, const Shape& shape, std::vector<Box>& boxes) {
  if (region.kind() != Region::Kind::kBox) {
    boxes = region.boxes(shape);
    return;
  }
  boxes.resize(1);
  boxes[0] = region.as_box();
}

}  // namespace

ReadAhead::ReadAhead(CheckpointReader& reader,
                     const std::vector<TensorRecord>& tensors,
                     const std::vector<TensorShard*>& shards)
    : reader_(reader),
      tensors_(tensors),
      shards_(shards),
      thread_([this] { run(); }) {}

ReadAhead::~ReadAhead() {
  stop_ = true;
  thread_.join();
}

void ReadAhead::run() {
  std::exception_ptr error;
  // The batch is its first `n` requests: later ones are kept, as are
  // those `n` from one batch to the next, so their boxes' storage is
  // reused (assign_boxes).
  std::vector<CheckpointReader::ReadRequest> batch;
  std::size_t n = 0;
  std::vector<std::size_t> index;  // the manifest index of each request
  std::size_t t = 0;
  while (t < tensors_.size() && !stop_ && !error) {
    if (shards_[t] && reads_in_chunks(shards_[t]->nbytes())) {
      bool read = false;
      try {
        read = read_in_chunks(t);
      } catch (...) {
        error = std::current_exception();
      }
      publish(read ? t + 1 : t);
      ++t;
      continue;
    }
    // The next batch: the tensors from t on with a shard here, up to
    // kBatchBytes (or one tensor, however large) and kBatchTensors, and
    // before the next shard read in chunks.
    n = 0;
    index.clear();
    std::uint64_t bytes = 0;
    std::size_t end = t;
    for (; end < tensors_.size() && n < kBatchTensors; ++end) {
      TensorShard* shard = shards_[end];
      if (!shard) continue;
      const std::uint64_t nbytes = shard->nbytes();
      if (reads_in_chunks(nbytes)) break;
      if (n > 0 && bytes + nbytes > kBatchBytes) break;
      const TensorRecord& record = tensors_[end];
      if (n == batch.size()) batch.emplace_back();
      CheckpointReader::ReadRequest& request = batch[n++];
      request.tensor = &record;
      assign_boxes(shard->region(), record.spec.shape, request.boxes);
      request.out = shard->data();
      index.push_back(end);
      bytes += nbytes;
    }
    if (n == 0) publish(end);  // nothing of them on this rank
    std::size_t at = 0;
    while (at < n && !stop_) {
      try {
        at += reader_.read_some(batch.data() + at, n - at);
      } catch (...) {
        error = std::current_exception();
      }
      // Tensors up to the next request (or the batch's end) are read.
      publish(at < n ? index[at] : end);
      if (error) break;
    }
    t = end;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  error_ = error;
  finished_ = true;
  progress_.notify_one();
}

bool ReadAhead::read_in_chunks(std::size_t t) {
  const TensorRecord& record = tensors_[t];
  TensorShard& shard = *shards_[t];
  const std::uint64_t element = dtype_size(record.spec.dtype);
  std::vector<Box> chunks;
  for (const Box& box : shard.region().boxes(record.spec.shape)) {
    split_box(box, element, kChunkBytes, chunks);
  }
  std::byte* const out = shard.data();
  std::uint64_t at = 0;
  std::vector<Box> one(1);
  for (const Box& chunk : chunks) {
    if (stop_) return false;
    one[0] = chunk;
    reader_.read(record, one, out + at);
    at += chunk.elements() * element;
    // A lock per chunk (a few MiB) costs nothing beside its read, and keeps
    // the tensor and its byte count together for wait_more().
    std::lock_guard<std::mutex> lock(mutex_);
    part_tensor_ = t;
    part_bytes_ = at;
    if (waiting_) progress_.notify_one();
  }
  return true;
}

void ReadAhead::publish(std::size_t done) {
  // A store and a load, both sequentially consistent, against wait()'s
  // store of waiting_ and load of done_: one of the two sides sees the
  // other, so a sleeping caller is always woken. The caller is woken once
  // per call (a batch), not per tensor.
  done_ = done;
  if (waiting_) {
    std::lock_guard<std::mutex> lock(mutex_);
    progress_.notify_one();
  }
}

void ReadAhead::wait(std::size_t t) {
  if (done_ > t) return;
  std::unique_lock<std::mutex> lock(mutex_);
  waiting_ = true;
  progress_.wait(lock, [&] { return done_ > t || finished_; });
  waiting_ = false;
  if (done_ > t) return;
  throw_not_read(t);
}

std::uint64_t ReadAhead::wait_more(std::size_t t, std::uint64_t have) {
  const std::uint64_t whole = shards_[t]->nbytes();
  if (done_ > t) return whole;
  std::unique_lock<std::mutex> lock(mutex_);
  const auto arrived = [&] { return part_tensor_ == t && part_bytes_ > have; };
  waiting_ = true;
  progress_.wait(lock, [&] { return done_ > t || arrived() || finished_; });
  waiting_ = false;
  if (done_ > t) return whole;
  if (arrived()) return part_bytes_;
  throw_not_read(t);
}

void ReadAhead::throw_not_read(std::size_t t) const {
  if (error_) std::rethrow_exception(error_);
  throw Error(ErrorCode::kInternal,
              "load: reading ahead stopped before tensor " + std::to_string(t));
}

}  // namespace floe
