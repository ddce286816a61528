// Removes the checkpoints that retention has renamed aside (.deleting-<tag>)
// on a thread of its own, so that a save returns once its checkpoint is
// committed and the old ones are renamed, not once their blocks are freed:
// deleting a 1 GiB checkpoint takes 0.1-1 s on ext4 with discard, and in a
// synchronous save every other rank would wait for rank 0 at its next
// collective (docs/manifest.md, "Retention").
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>

#include "floe/file_system.hpp"

namespace floe {

// True while a BackgroundDeleter of this process has `dir` queued or is
// removing it: recover() leaves such a directory to it rather than racing it
// with a second remove_all of the same tree.
bool being_deleted(const std::filesystem::path& dir);

// One queue, one thread (started at the first remove()). Errors are
// warnings (log_message), never exceptions: what it removes was already out
// of every reader's sight, and a directory it could not remove stays as
// .deleting-* for the next recover().
class BackgroundDeleter {
 public:
  // How long the destructor waits for the queue by default: long enough for
  // any checkpoint a healthy file system deletes, short enough that a
  // trainer on a hung one still exits.
  static constexpr std::chrono::milliseconds kDefaultExitWait{60'000};

  explicit BackgroundDeleter(
      std::chrono::milliseconds exit_wait = kDefaultExitWait);
  // Waits up to exit_wait for the queue to drain. What is left then is
  // logged (a warning naming the directories) and stays on disk for the
  // next start's recover(); the thread is detached, finishes the directory
  // it is in the middle of, and takes no other.
  ~BackgroundDeleter();
  BackgroundDeleter(const BackgroundDeleter&) = delete;
  BackgroundDeleter& operator=(const BackgroundDeleter&) = delete;

  // Queues fs->remove_all(dir) and returns. Any thread may call it. When no
  // thread can be started (a process at its limit), removes `dir` here.
  void remove(std::shared_ptr<FileSystem> fs, std::filesystem::path dir);

  // Blocks until every queued directory has been removed or has failed
  // (and been logged). Any thread may call it.
  void wait();

 private:
  struct Shared;  // the queue; the thread keeps it alive once detached

  std::shared_ptr<Shared> shared_;
  std::thread thread_;
  std::chrono::milliseconds exit_wait_;
};

}  // namespace floe
