#include "commit/read_ahead.hpp"

#include <string>

#include "floe/error.hpp"

namespace floe {

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
  std::vector<CheckpointReader::ReadRequest> batch;
  std::vector<std::size_t> index;  // the manifest index of each request
  std::size_t t = 0;
  while (t < tensors_.size() && !stop_ && !error) {
    // The next batch: the tensors from t on with a shard here, up to
    // kBatchBytes (or one tensor, however large) and kBatchTensors.
    batch.clear();
    index.clear();
    std::uint64_t bytes = 0;
    std::size_t end = t;
    for (; end < tensors_.size() && batch.size() < kBatchTensors; ++end) {
      TensorShard* shard = shards_[end];
      if (!shard) continue;
      const std::uint64_t nbytes = shard->nbytes();
      if (!batch.empty() && bytes + nbytes > kBatchBytes) break;
      const TensorRecord& record = tensors_[end];
      batch.push_back({&record, shard->region().boxes(record.spec.shape), shard->data()});
      index.push_back(end);
      bytes += nbytes;
    }
    if (batch.empty()) publish(end);  // nothing of them on this rank
    std::size_t at = 0;
    while (at < batch.size() && !stop_) {
      try {
        at += reader_.read_some(batch.data() + at, batch.size() - at);
      } catch (...) {
        error = std::current_exception();
      }
      // Tensors up to the next request (or the batch's end) are read.
      publish(at < batch.size() ? index[at] : end);
      if (error) break;
    }
    t = end;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  error_ = error;
  finished_ = true;
  progress_.notify_one();
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
  if (error_) std::rethrow_exception(error_);
  throw Error(ErrorCode::kInternal,
              "load: reading ahead stopped before tensor " + std::to_string(t));
}

}  // namespace floe
