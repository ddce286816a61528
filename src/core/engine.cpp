// CheckpointEngine: when to save, and the save/load sequence around an
// engine's write step (commit protocol in src/commit), synchronous or staged
// and written in the background (docs/async.md).
#include "floe/engine.hpp"

#include <chrono>
#include <ctime>
#include <exception>

#include "commit/background_deleter.hpp"
#include "commit/coordinator.hpp"
#include "commit/paths.hpp"
#include "commit/restore.hpp"
#include "core/async_save.hpp"
#include "core/comm.hpp"
#include "core/layout_cache.hpp"
#include "core/phase_log.hpp"
#include "core/state_snapshot.hpp"
#include "cuda/device_copy.hpp"
#include "floe/checkpoint.hpp"
#include "floe/error.hpp"
#include "floe/log.hpp"
#include "floe/version.hpp"

namespace floe {
namespace {

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

std::uint64_t bytes_this_rank_writes(const GlobalLayout& layout, int rank) {
  std::uint64_t bytes = 0;
  for (const auto& tensor : layout.tensors) {
    for (const auto& piece : tensor.pieces) {
      if (piece.rank == rank && piece.writer) {
        bytes += piece.region.elements() * dtype_size(tensor.spec.dtype);
      }
    }
  }
  return bytes;
}

}  // namespace

// What staged saves and device loads keep between calls. Members are
// destroyed in reverse order: the I/O thread is joined first, the pool is
// freed before the copier whose pinned memory it may hold.
struct CheckpointEngine::Staging {
  std::unique_ptr<DeviceCopier> copier;  // made at the first device tensor
  StagingPool pool;
  StateSnapshot snapshot;
  std::unique_ptr<BackgroundSave> background;  // made at the first async save

  DeviceCopier* copier_for(const std::string& device) {
    if (!is_cuda_device(device)) return nullptr;
    if (!copier) copier = make_device_copier(device);
    return copier.get();
  }
};

namespace {

// Collective: whether any rank's trainer names a GPU. Such a rank stages
// through the pool under an agreement, so every rank must take that path
// (a CPU rank with memcpy): a trainer whose device() differs between ranks
// (one node fell back to the CPU) split the ranks between two sequences
// of collectives, and the job hung.
bool any_rank_on_device(const Comm& comm, const std::string& device) {
  return comm.allreduce_max(is_cuda_device(device) ? 1 : 0) != 0;
}

}  // namespace

CheckpointEngine::CheckpointEngine(TrainerView& trainer, CheckpointConfig config)
    : trainer_(trainer),
      config_(std::move(config)),
      fs_(posix_file_system()),
      deleter_(std::make_unique<BackgroundDeleter>()),
      layout_cache_(std::make_unique<LayoutCache>()) {
  const Comm comm(trainer_.comm());
  rank_ = comm.rank();
  world_size_ = comm.size();
  // Local and the same on every rank of one program: fail before any save.
  if (config_.async) check_async_thread_level(mpi_thread_level());
}

CheckpointEngine::~CheckpointEngine() {
  finish_pending_save();
  deleter_.reset();  // waits for retention's deletions, within a limit
}

CheckpointEngine::Staging& CheckpointEngine::staging() {
  if (!staging_) staging_ = std::make_unique<Staging>();
  return *staging_;
}

void CheckpointEngine::wait() {
  try {
    wait_for_save(/*agreed=*/false);  // wait() is not collective
  } catch (...) {
    deleter_->wait();
    throw;
  }
  deleter_->wait();
}

void CheckpointEngine::wait_for_save(bool agreed) {
  if (!staging_ || !staging_->background) return;
  const std::exception_ptr error = staging_->background->wait();
  const bool completed = post_save_pending_;
  post_save_pending_ = false;
  if (error) std::rethrow_exception(error);
  if (completed) run_callbacks(CallbackEvent::kPostSave, agreed);
}

void CheckpointEngine::finish_pending_save() noexcept {
  if (!staging_ || !staging_->background) return;
  const std::exception_ptr error = staging_->background->wait();
  post_save_pending_ = false;
  if (!error || rank_ != 0) return;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    log_message(LogLevel::kWarning,
                std::string("an asynchronous save failed and nobody waited for it "
                            "(the engine was destroyed first): ") + e.what());
  } catch (...) {
  }
}

bool CheckpointEngine::do_checkpoint() const {
  if (!config_.enabled) return false;
  const Progress& p = trainer_.progress();
  if (p.global_step <= 0) return false;
  const bool at_step = config_.save_every_n_steps > 0 &&
                       p.global_step % config_.save_every_n_steps == 0;
  const bool at_epoch = config_.save_every_n_epochs > 0 && p.epoch_finished &&
                        p.epoch > 0 && p.epoch % config_.save_every_n_epochs == 0;
  const bool at_end = config_.save_end_of_training && p.training_finished;
  return at_step || at_epoch || at_end;
}

std::filesystem::path CheckpointEngine::checkpoint_dir() const {
  return config_.output_dir / tag_for_step(trainer_.progress().global_step);
}

bool CheckpointEngine::latest_checkpoint_exists() const {
  // Engines are never const objects; waiting changes no observable state
  // but the callbacks it runs.
  const_cast<CheckpointEngine*>(this)->wait_for_save();
  const Comm comm(trainer_.comm());
  Coordinator coordinator(*fs_, comm, config_.output_dir);
  const auto tag = coordinator.latest();
  std::uint64_t found = 0;
  if (tag && comm.rank() == 0) {
    found = fs_->exists(config_.output_dir / *tag / kManifestName) ? 1 : 0;
  }
  return comm.allreduce_max(found) == 1;
}

void CheckpointEngine::add_callback(CallbackEvent event,
                                    std::function<void(CheckpointEngine&)> callback) {
  callbacks_.emplace_back(event, std::move(callback));
}

void CheckpointEngine::set_file_system(std::shared_ptr<FileSystem> fs) {
  if (!fs) throw Error(ErrorCode::kInvalidArgument, "set_file_system(nullptr)");
  wait();  // the I/O thread may be using the current one
  fs_ = std::move(fs);
}

void CheckpointEngine::run_callbacks(CallbackEvent event, bool agreed) {
  // Agreed on: a callback that throws on one rank (a trainer's check, an
  // upload of the new checkpoint failing on one node) took that rank out of
  // save() or load() while the others went on into the next collective and
  // hung there. Now every rank throws, naming the rank and the event.
  static constexpr const char* kNames[] = {"pre-save", "post-save", "pre-load",
                                           "post-load"};
  const std::string what = std::string(kNames[static_cast<int>(event)]) + " callback: ";
  auto run = [&] {
    for (auto& [when, callback] : callbacks_) {
      if (when != event) continue;
      try {
        callback(*this);
      } catch (...) {
        rethrow_in_context(std::current_exception(), what);
      }
    }
  };
  if (agreed) {
    collectively(Comm(trainer_.comm()), run);
  } else {
    run();
  }
}

void CheckpointEngine::recover_once() {
  if (recovered_) return;
  const Comm comm(trainer_.comm());
  Coordinator(*fs_, comm, config_.output_dir).recover();
  recovered_ = true;
}

void CheckpointEngine::save() {
  wait_for_save();
  if (config_.async && !resumable()) {
    throw Error(ErrorCode::kUnsupported,
                "config key \"async\": engine \"" + std::string(name()) +
                    "\" exports in one synchronous pass; asynchronous saves are "
                    "for the resumable engines (hdf5, mpiio)");
  }
  const Comm comm(trainer_.comm());
  run_callbacks(CallbackEvent::kPreSave);
  recover_once();
  State& state = trainer_.state();
  const Progress progress = trainer_.progress();
  const std::string device = trainer_.device();
  if (!config_.async && !any_rank_on_device(comm, device)) {
    write_and_commit(comm, state, progress, std::string(name()));
    run_callbacks(CallbackEvent::kPostSave);
    return;
  }
  // Stage: copy the state into the pool. A rank that cannot (no memory for
  // the pool, a CUDA error) fails every rank here, before anything is written.
  Staging& s = staging();
  State* staged = collectively(comm, [&] {
    return &s.snapshot.capture(state, s.pool, s.copier_for(device),
                               config_.staging_pool_limit);
  });
  if (!config_.async) {
    write_and_commit(comm, *staged, progress, std::string(name()));
    run_callbacks(CallbackEvent::kPostSave);
    return;
  }
  if (!s.background) s.background = std::make_unique<BackgroundSave>(comm.get());
  s.background->start([this, staged, progress, engine = std::string(name())](
                          MPI_Comm io_comm) {
    write_and_commit(Comm(io_comm), *staged, progress, engine);
  });
  post_save_pending_ = true;
}

void CheckpointEngine::write_and_commit(const Comm& comm, State& state,
                                        const Progress& progress,
                                        const std::string& engine) {
  // Rank 0 lets the previous save's retention finish before writing, so the
  // disk never holds more old checkpoints than before it deleted in the
  // background. On the I/O thread with `async: true`: the trainer does not
  // wait for it.
  PhaseLog phases(config_.trace_phases,
                  "save " + tag_for_step(progress.global_step), comm.rank());
  deleter_->wait();
  phases.mark("retention wait");
  Coordinator coordinator(*fs_, comm, config_.output_dir);
  // Deterministic on every rank: a bad layout throws the same Error on all.
  const std::shared_ptr<const GlobalLayout> kept = layout_cache_->exchange(state, comm.get());
  const GlobalLayout& layout = *kept;
  phases.mark(layout_cache_->reused() ? "layout (kept)" : "layout");

  Manifest manifest;
  manifest.floe_version = version();
  manifest.engine = engine;
  manifest.tag = tag_for_step(progress.global_step);
  manifest.step = progress.global_step;
  manifest.epoch = progress.epoch;
  manifest.world_size = comm.size();
  manifest.created_utc = utc_now();
  for (const auto& [key, value] : state.scalars()) {
    manifest.scalars[key] = scalar_to_json(value);
  }
  manifest.metadata = state.metadata();

  const auto staging = coordinator.begin(manifest.tag);
  std::vector<std::filesystem::path> doomed;  // rank 0: retention's renames
  try {
    // The seam sees each rank's data volume before any collective write, so
    // an injected (or real, quota-style) refusal is agreed on up front.
    collectively(comm, [&] {
      fs_->before_data_write(staging, bytes_this_rank_writes(layout, comm.rank()));
    });
    phases.mark("begin");
    SaveContext ctx{staging, layout, state, comm.get(), comm.rank(), comm.size(), *fs_};
    WriteResult result = collectively(comm, [&] { return write_state(ctx); });
    phases.mark("write");
    manifest.tensors = std::move(result.tensors);
    manifest.blobs = std::move(result.blobs);
    manifest.engine_info = std::move(result.engine_info);
    doomed = coordinator.commit(staging, manifest, result.files,
                                config_.keep_last_n, loaded_tag_);
    phases.mark("commit");
  } catch (...) {
    coordinator.abort(staging);
    throw;
  }
  for (auto& dir : doomed) deleter_->remove(fs_, std::move(dir));
}

Manifest CheckpointEngine::load(const std::optional<std::filesystem::path>& checkpoint,
                                const LoadOptions& options) {
  wait_for_save();
  const Comm comm(trainer_.comm());
  if (!resumable()) {
    throw Error(ErrorCode::kUnsupported,
                "engine \"" + std::string(name()) +
                    "\" writes exports without optimizer state, which cannot be "
                    "loaded to resume training; use a resumable engine (hdf5 or "
                    "mpiio)");
  }
  run_callbacks(CallbackEvent::kPreLoad);
  PhaseLog phases(config_.trace_phases, "load", comm.rank());
  recover_once();
  std::filesystem::path dir;
  if (checkpoint) {
    dir = *checkpoint;
  } else {
    const auto tag = Coordinator(*fs_, comm, config_.output_dir).latest();
    if (!tag) {
      throw Error(ErrorCode::kNotFound, "no checkpoint to load: " +
                                            config_.output_dir.string() +
                                            " has no `latest`");
    }
    dir = config_.output_dir / *tag;
  }
  phases.mark("recover");
  OpenCheckpoint opened = open_checkpoint(dir, comm.get(), *fs_, false, config_.direct_io);
  phases.mark("open");
  const std::string device = trainer_.device();
  if (!any_rank_on_device(comm, device)) {
    restore_state(opened, trainer_.state(), comm, config_.verify_on_load, options,
                  config_.load_exchange);
  } else {
    // Device tensors: read into the pinned pool, then copy to the GPU.
    Staging& s = staging();
    State* mirror = collectively(comm, [&] {
      return &s.snapshot.mirror(trainer_.state(), s.pool, s.copier_for(device),
                                config_.staging_pool_limit);
    });
    restore_state(opened, *mirror, comm, config_.verify_on_load, options,
                  config_.load_exchange);
    collectively(comm, [&] { s.snapshot.copy_back(trainer_.state(), s.copier.get()); });
    phases.mark("copy back");
  }
  loaded_tag_ = opened.manifest.tag;
  loaded(dir, opened.manifest);
  run_callbacks(CallbackEvent::kPostLoad);
  return std::move(opened.manifest);  // not a copy: 20,000 tensors' records
}

std::optional<Manifest> CheckpointEngine::resume(const LoadOptions& options) {
  wait_for_save();
  const Comm comm(trainer_.comm());
  recover_once();
  Coordinator coordinator(*fs_, comm, config_.output_dir);
  const auto latest = coordinator.latest();
  const auto entries = coordinator.list();  // oldest first
  std::vector<std::string> candidates;
  bool latest_listed = false;
  for (const auto& e : entries) latest_listed |= latest && e.tag == *latest;
  if (latest && latest_listed) candidates.push_back(*latest);
  if (latest && !latest_listed && comm.rank() == 0) {
    log_message(LogLevel::kWarning,
                "`latest` names " + *latest + ", which is not a complete "
                "checkpoint in " + config_.output_dir.string() +
                "; falling back to the newest one that is");
  }
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    if (!latest || it->tag != *latest) candidates.push_back(it->tag);
  }
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    try {
      return load(config_.output_dir / candidates[i], options);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kCorrupt) throw;
      // Damage that a second reading does not find was an I/O error: an
      // MPI-IO that hides a failed read hands HDF5 a short buffer, which it
      // fills with zeros (RELIABILITY.md, "Faults below MPI-IO"). Only what
      // is damaged on disk is set aside.
      const std::filesystem::path dir = config_.output_dir / candidates[i];
      bool intact = false;
      try {
        intact = verify_checkpoint(dir, comm.get(), *fs_).ok();
      } catch (const Error& again) {
        if (again.code() != ErrorCode::kCorrupt) throw;  // kCorrupt: damaged
      }
      if (intact) {
        throw Error(ErrorCode::kIo,
                    "loading " + dir.string() + " failed: " + e.what() +
                        "; a second reading found it intact, so it was an I/O "
                        "error, not damage (nothing set aside)");
      }
      const std::optional<std::string> fallback =
          i + 1 < candidates.size() ? std::optional<std::string>(candidates[i + 1])
                                    : std::nullopt;
      const auto moved = coordinator.set_aside(candidates[i], fallback);
      if (comm.rank() == 0) {
        log_message(LogLevel::kWarning,
                    "skipped checkpoint " + candidates[i] + ": " + e.what() +
                        "; set aside as " + moved.filename().string());
      }
    }
  }
  return std::nullopt;
}

}  // namespace floe
