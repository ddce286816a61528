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
  for (std::size_t t = 0; t < tensors_.size() && !stop_; ++t) {
    if (TensorShard* shard = shards_[t]) {
      try {
        const TensorRecord& record = tensors_[t];
        reader_.read(record, shard->region().boxes(record.spec.shape),
                     shard->data());
      } catch (...) {
        error = std::current_exception();
        break;
      }
    }
    // A store and a load, both sequentially consistent, against wait()'s
    // store of waiting_ and load of done_: one of the two sides sees the
    // other, so a sleeping caller is always woken.
    done_ = t + 1;
    if (waiting_) {
      std::lock_guard<std::mutex> lock(mutex_);
      progress_.notify_one();
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  error_ = error;
  finished_ = true;
  progress_.notify_one();
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
