#include "commit/background_deleter.hpp"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <system_error>
#include <utility>

#include "floe/log.hpp"

namespace floe {
namespace {

namespace fs = std::filesystem;

// Every directory some deleter of this process has queued or is removing.
struct InFlight {
  std::mutex mutex;
  std::multiset<std::string> dirs;
};

InFlight& in_flight() {
  static InFlight* registry = new InFlight;  // never destroyed: a detached
  return *registry;                          // thread may outlive statics
}

void register_dir(const fs::path& dir) {
  std::lock_guard<std::mutex> lock(in_flight().mutex);
  in_flight().dirs.insert(dir.lexically_normal().string());
}

void unregister_dir(const fs::path& dir) {
  std::lock_guard<std::mutex> lock(in_flight().mutex);
  auto& dirs = in_flight().dirs;
  const auto it = dirs.find(dir.lexically_normal().string());
  if (it != dirs.end()) dirs.erase(it);
}

struct Job {
  std::shared_ptr<FileSystem> fs;
  fs::path dir;
};

// Removes one directory; a failure is a warning. A directory that is gone
// after a failed remove_all was removed by someone else at the same time
// (an operator, another job's recover()): nothing to report.
void run(const Job& job) {
  try {
    job.fs->remove_all(job.dir);
  } catch (const std::exception& e) {
    if (!job.fs->exists(job.dir)) return;
    log_message(
        LogLevel::kWarning,
        "retention could not delete " + job.dir.string() + ": " + e.what() +
            "; the checkpoints kept are committed and intact, and the next "
            "start removes the directory (or remove it by hand)");
  }
}

}  // namespace

bool being_deleted(const fs::path& dir) {
  std::lock_guard<std::mutex> lock(in_flight().mutex);
  return in_flight().dirs.count(dir.lexically_normal().string()) > 0;
}

struct BackgroundDeleter::Shared {
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<Job> queue;
  fs::path current;  // the directory being removed, if busy
  bool busy = false;
  bool stop = false;       // the owner is going: exit once the queue is empty
  bool abandoned = false;  // the owner stopped waiting: take no other job

  bool idle() const { return queue.empty() && !busy; }

  void loop() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mutex);
        changed.wait(lock, [&] { return !queue.empty() || stop; });
        if (queue.empty() || abandoned) return;
        job = std::move(queue.front());
        queue.pop_front();
        current = job.dir;
        busy = true;
      }
      run(job);
      unregister_dir(job.dir);
      {
        std::lock_guard<std::mutex> lock(mutex);
        busy = false;
        current.clear();
      }
      changed.notify_all();
    }
  }
};

BackgroundDeleter::BackgroundDeleter(std::chrono::milliseconds exit_wait)
    : shared_(std::make_shared<Shared>()), exit_wait_(exit_wait) {}

BackgroundDeleter::~BackgroundDeleter() {
  Shared& s = *shared_;
  std::string left;
  {
    std::unique_lock<std::mutex> lock(s.mutex);
    s.stop = true;
    s.changed.notify_all();
    if (!s.changed.wait_for(lock, exit_wait_, [&] { return s.idle(); })) {
      s.abandoned = true;
      if (s.busy) left += " " + s.current.string();
      for (const Job& job : s.queue) {
        left += " " + job.dir.string();
        unregister_dir(job.dir);  // no longer ours: recover() may take it
      }
      s.queue.clear();
    }
  }
  if (left.empty()) {
    if (thread_.joinable()) thread_.join();
    return;
  }
  if (thread_.joinable()) thread_.detach();
  const std::string message = "retention had not finished deleting after " +
                              std::to_string(exit_wait_.count()) +
                              " ms; left for the next start to remove:" + left;
  log_message(LogLevel::kWarning, message);
}

void BackgroundDeleter::remove(std::shared_ptr<FileSystem> fs, fs::path dir) {
  register_dir(dir);
  Job job{std::move(fs), std::move(dir)};
  {
    std::lock_guard<std::mutex> lock(shared_->mutex);
    if (!thread_.joinable()) {
      try {
        thread_ = std::thread([shared = shared_] { shared->loop(); });
      } catch (const std::system_error&) {
        // No thread to be had: removed here, below, as before there was one.
      }
    }
    if (thread_.joinable()) {
      shared_->queue.push_back(std::move(job));
      shared_->changed.notify_all();
      return;
    }
  }
  run(job);
  unregister_dir(job.dir);
}

void BackgroundDeleter::wait() {
  std::unique_lock<std::mutex> lock(shared_->mutex);
  shared_->changed.wait(lock, [&] { return shared_->idle(); });
}

}  // namespace floe
