// The background half of an asynchronous save: one I/O thread per save,
// talking over a duplicate of the trainer's communicator, so its collectives
// (layout exchange, MPI-IO/HDF5 writes, commit agreement) never match the
// trainer's own. Needs MPI_THREAD_MULTIPLE (docs/async.md).
#pragma once

#include <exception>
#include <functional>
#include <thread>

#include <mpi.h>

namespace floe {

// Throws Error(kUnsupported), naming MPI_Init_thread, unless `provided`
// (what MPI_Query_thread reports) is MPI_THREAD_MULTIPLE.
void check_async_thread_level(int provided);

// What MPI_Query_thread reports for this process.
int mpi_thread_level();

// At most one job at a time. Owned and called by one thread (the trainer's).
class BackgroundSave {
 public:
  // Collective over `comm`: duplicates it for the jobs' use.
  explicit BackgroundSave(MPI_Comm comm);
  // Waits for a running job (dropping its error: call wait() first to see
  // it), then frees the duplicate unless MPI is already finalized.
  ~BackgroundSave();
  BackgroundSave(const BackgroundSave&) = delete;
  BackgroundSave& operator=(const BackgroundSave&) = delete;

  // Runs `job(duplicate communicator)` on a new thread (or, when no thread
  // can be created, here, before returning). Throws Error(kInternal) when a
  // job is still running (wait() first). Every rank's job must make the same
  // collective calls, as a save does.
  void start(std::function<void(MPI_Comm)> job);

  bool running() const { return thread_.joinable(); }

  // Waits for the running job, if any, and returns what it threw (null when
  // it succeeded or nothing ran). Not collective.
  std::exception_ptr wait() noexcept;

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  std::thread thread_;
  std::exception_ptr error_;
};

}  // namespace floe
