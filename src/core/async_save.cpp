#include "core/async_save.hpp"

#include <string>
#include <system_error>

#include "core/comm.hpp"
#include "floe/error.hpp"

namespace floe {
namespace {

const char* level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
    default: return "an unknown thread level";
  }
}

}  // namespace

void check_async_thread_level(int provided) {
  if (provided == MPI_THREAD_MULTIPLE) return;
  throw Error(ErrorCode::kUnsupported,
              std::string("config key \"async\": an asynchronous save writes from a "
                          "background thread and needs MPI_THREAD_MULTIPLE, but MPI "
                          "runs at ") +
                  level_name(provided) +
                  "; initialize MPI with MPI_Init_thread(&argc, &argv, "
                  "MPI_THREAD_MULTIPLE, &provided) (mpi4py: the default), or set "
                  "async to false");
}

int mpi_thread_level() {
  int provided = MPI_THREAD_SINGLE;
  check_mpi(MPI_Query_thread(&provided), "MPI_Query_thread");
  return provided;
}

BackgroundSave::BackgroundSave(MPI_Comm comm) {
  check_mpi(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
}

BackgroundSave::~BackgroundSave() {
  wait();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void BackgroundSave::start(std::function<void(MPI_Comm)> job) {
  if (running()) {
    throw Error(ErrorCode::kInternal, "a background save is already running");
  }
  error_ = nullptr;
  auto run = [this, job = std::move(job)] {
    try {
      job(comm_);
    } catch (...) {
      error_ = std::current_exception();
    }
  };
  try {
    thread_ = std::thread(run);
  } catch (const std::system_error&) {
    // No thread to be had (a process at its limit): run the job here. The
    // other ranks' threads make the same collectives on the duplicate, so
    // they match; this rank's save() just blocks for the whole write.
    run();
  }
}

std::exception_ptr BackgroundSave::wait() noexcept {
  if (thread_.joinable()) thread_.join();
  std::exception_ptr error = error_;
  error_ = nullptr;
  return error;
}

}  // namespace floe
