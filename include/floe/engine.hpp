// CheckpointEngine: the base every engine derives from (after
// ArcticTraining's CheckpointEngine). It decides when to save, runs the
// commit protocol, and leaves the data files to the engine.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "floe/config.hpp"
#include "floe/file_system.hpp"
#include "floe/layout.hpp"
#include "floe/manifest.hpp"
#include "floe/trainer.hpp"

namespace floe {

class BackgroundDeleter;
class LayoutCache;
class Comm;

// Events a callback can attach to (the seed's CallbackMixin).
enum class CallbackEvent { kPreSave, kPostSave, kPreLoad, kPostLoad };

// What an engine's write step hands to the commit protocol.
struct WriteResult {
  // Every tensor, every written piece. Only rank 0's go into the manifest:
  // the other ranks may leave it empty.
  std::vector<TensorRecord> tensors;
  std::vector<BlobRecord> blobs;      // every rank's blobs
  std::vector<std::string> files;     // data files, relative to the directory
  nlohmann::json engine_info = nlohmann::json::object();
};

// What the engine's write step is given.
struct SaveContext {
  std::filesystem::path dir;  // the staging directory, already created
  const GlobalLayout& layout;
  State& state;
  MPI_Comm comm;
  int rank = 0;
  int world_size = 1;
  FileSystem& fs;  // call fs.before_data_write() before each data write
};

// Reads tensors out of one committed checkpoint; an engine's open_reader()
// makes one. Every method is collective unless it says otherwise.
class CheckpointReader {
 public:
  virtual ~CheckpointReader() = default;

  // Collective: every rank calls it for the same tensor, in the same order.
  // Reads the elements of `boxes` (global coordinates; possibly none on some
  // ranks) into `out`, box after box, row-major within each box.
  virtual void read(const TensorRecord& tensor, const std::vector<Box>& boxes,
                    void* out) = 0;

  // Not collective. Reads one saved blob.
  virtual std::vector<std::uint8_t> read_blob(const BlobRecord& blob) = 0;

  // True when read() is not collective (a rank may skip tensors it reads
  // nothing of) and several threads may call read() and read_blob() at
  // once: load() then reads on a thread of its own while it checks what
  // has arrived. Default: false.
  virtual bool reads_independently() const { return false; }

  // One tensor's share of a read_some() call: what read() is given.
  struct ReadRequest {
    const TensorRecord* tensor = nullptr;
    std::vector<Box> boxes;
    void* out = nullptr;
  };

  // Only for a reader that reads independently; not collective. Reads a
  // prefix of `requests[0, count)`, at least the first (count > 0), each as
  // read() would, and returns its length: a reader may read many tensors in
  // one system call (mpiio: one preadv for tensors that lie one after the
  // other in the file). When the first request fails it throws what read()
  // of it throws; when a later one fails the prefix ends before it, so the
  // next call starts with it and throws its error (the bytes of requests
  // past the prefix may have been written in part, as a read() that throws
  // may write part of its output). Default: read() of the first request,
  // returns 1.
  virtual std::size_t read_some(const ReadRequest* requests, std::size_t count) {
    (void)count;
    read(*requests->tensor, requests->boxes, requests->out);
    return 1;
  }

 protected:
  // read() of each request in turn, as read_some() must read them: the
  // first that fails throws (when it is the first request) or ends the
  // prefix. For a read_some() whose batch failed without telling which
  // request failed, so that the error is read()'s own, naming its tensor.
  std::size_t read_each(const ReadRequest* requests, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
      try {
        read(*requests[i].tensor, requests[i].boxes, requests[i].out);
      } catch (...) {
        if (i == 0) throw;
        return i;
      }
    }
    return count;
  }
};

// What a ReaderFactory is given. Valid only during the call: a reader copies
// what it keeps.
struct ReadContext {
  std::filesystem::path dir;  // a committed checkpoint
  const Manifest& manifest;
  MPI_Comm comm;
  FileSystem& fs;
  // Also check the data file's own structure where the reader can, beyond
  // what reading needs (verify): the hdf5 reader then opens and checks every
  // tensor's dataset even where the manifest says where its bytes lie, and
  // compares the two.
  bool check_structure = false;
  // Read large stretches around the page cache (O_DIRECT) where the file
  // system and the memory allow it (ReadOnlyFile): CheckpointConfig's
  // direct_io.
  bool direct_io = false;
};

// How load() treats differences between the state and the checkpoint.
struct LoadOptions {
  // Tensors in the checkpoint that the state lacks are skipped instead of
  // being an error. Default: false.
  bool allow_extra_tensors = false;
};

class CheckpointEngine {
 public:
  // Keeps a reference to `trainer`, which must outlive the engine.
  CheckpointEngine(TrainerView& trainer, CheckpointConfig config);
  // Waits for a save in flight (logging its error, see
  // finish_pending_save()) and for retention's deletions, at most 60 s for
  // those: a trainer on a hung file system still exits, and what is left
  // stays as .deleting-* (a logged warning) for the next start to remove.
  virtual ~CheckpointEngine();
  CheckpointEngine(const CheckpointEngine&) = delete;
  CheckpointEngine& operator=(const CheckpointEngine&) = delete;

  // The registered name ("hdf5", "mpiio", "hf", ...).
  virtual std::string_view name() const = 0;
  // False for export-only engines, whose load() throws.
  virtual bool resumable() const { return true; }

  const CheckpointConfig& config() const { return config_; }
  TrainerView& trainer() { return trainer_; }
  int global_rank() const { return rank_; }
  int world_size() const { return world_size_; }
  std::string device() const { return trainer_.device(); }
  bool epoch_finished() const { return trainer_.progress().epoch_finished; }
  bool training_finished() const {
    return trainer_.progress().training_finished;
  }

  // True at a configured boundary: every save_every_n_steps steps, at the end
  // of every save_every_n_epochs-th epoch, or at the end of training with
  // save_end_of_training. Never when disabled or before the first step.
  // Pure: ranks with the same Progress agree.
  bool do_checkpoint() const;

  // Where a checkpoint of the current step lives: output_dir/global_step_<N>.
  std::filesystem::path checkpoint_dir() const;

  // Collective. True when output_dir has a `latest` naming a directory with
  // a manifest (rank 0 looks; every rank gets its answer). Waits for an
  // asynchronous save in flight first (see wait()).
  bool latest_checkpoint_exists() const;

  // Collective. Saves the trainer's state as checkpoint_dir() with the
  // commit protocol: nothing is visible until every rank has succeeded, and
  // a failure on any rank throws the same Error on every rank and leaves
  // the previous checkpoints and `latest` untouched. Saves whenever called
  // (`enabled` only gates do_checkpoint()). The first save(), load() or
  // resume() of an engine removes what interrupted saves left behind.
  //
  // With `async: true` (docs/async.md) save() first waits for the previous
  // save (see wait()), then copies the state into the engine's staging pool
  // and returns: the trainer may change its tensors at once. A background
  // thread writes and commits the copy; the checkpoint exists only once it
  // is committed. Errors of the staging step (a pool that cannot be
  // allocated: kIo) are thrown here, the same on every rank, with nothing
  // written; errors of the background write surface at the next wait().
  //
  // Tensors on a GPU (device() "cuda" or "cuda:<N>", pointers that CUDA
  // reports as device memory) are copied to the page-locked staging pool on
  // a stream of the engine's own, in both modes, after the work queued on
  // the legacy default stream: a trainer computing on other streams
  // synchronizes them before save().
  void save();

  // Waits for the asynchronous save in flight, if any, and throws its Error
  // (the same on every rank: the background write agreed on it), after which
  // it is forgotten. On success runs the post-save callbacks, on this thread.
  // Then waits (rank 0) for retention's deletions of old checkpoints, which
  // run in the background (docs/manifest.md, "Retention"); a deletion that
  // fails is a warning, never an Error. Not collective: each rank waits for
  // its own threads. save(), load(), resume() and latest_checkpoint_exists()
  // wait for the save in flight first (not for the deletions: the next
  // save's write waits for those), set_file_system() for both, so the call
  // that surfaces an error does not do its own work.
  void wait();

  // Collective. Loads `checkpoint` (a checkpoint directory; by default the
  // one `latest` names) into the trainer's state, whatever world size and
  // partition wrote it, and returns its manifest (step, epoch, ...). Each
  // rank reads the bytes that overlap its regions. With verify_on_load,
  // every piece's checksum is checked once across the ranks. Throws the
  // same Error on every rank: kNotFound when there is no checkpoint,
  // kMismatch naming the tensor when names, dtypes or shapes differ,
  // kCorrupt naming the file when a checksum or size is wrong.
  Manifest load(const std::optional<std::filesystem::path>& checkpoint = {},
                const LoadOptions& options = {});

  // Collective. What auto_resume does at start: loads the checkpoint
  // `latest` names; if it is missing or fails verification (kCorrupt), warns,
  // sets it aside as `<tag>.corrupt` (never deleting it) and tries the next
  // newest, and so on. Returns the loaded manifest, or nullopt when there is
  // no usable checkpoint (a fresh start). Other errors (a different model:
  // kMismatch) are thrown as load() throws them.
  std::optional<Manifest> resume(const LoadOptions& options = {});

  // Runs `callback` around save()/load() on every rank. Agreed on: when a
  // callback throws on any rank, that save() or load() throws on every rank
  // an Error naming the first failing rank and the event ("rank 2: pre-save
  // callback: ..."; a floe::Error keeps its code, another exception becomes
  // kInternal). A pre-save or pre-load failure stops the call before it
  // touches anything; a post-save failure comes after the commit (the
  // checkpoint stays), a post-load one after the state was filled. The
  // post-save callbacks of an asynchronous save run in the call that waits
  // for it: agreed on in save(), load(), resume() and
  // latest_checkpoint_exists(); in wait(), which is not collective, a
  // callback's error is thrown on its own rank only.
  void add_callback(CallbackEvent event,
                    std::function<void(CheckpointEngine&)> callback);

  // Replaces the file system (tests inject faults through it). Waits for an
  // asynchronous save in flight and for retention's deletions first (see
  // wait()). Deletions may call its remove_all() on a thread of their own,
  // at the same time as other calls on the engine's threads.
  void set_file_system(std::shared_ptr<FileSystem> fs);

 protected:
  // Waits for an asynchronous save in flight, logging (never throwing) its
  // error; post-save callbacks do not run. Every engine that allows
  // `async: true` calls it first in its destructor: the I/O thread calls the
  // engine's write_state(), and by the time the base destructor runs the
  // derived part (its members, its vtable) is gone. The base destructor
  // calls it too, as a last resort.
  void finish_pending_save() noexcept;

  // Collective. Writes the state's data into files under ctx.dir and makes
  // it durable (MPI_File_sync, H5Fflush) before returning. Rank 0's
  // WriteResult must describe every rank's pieces and blobs; it becomes the
  // manifest. Throw floe::Error on failure: the base class makes the failure
  // collective and removes the staging directory.
  virtual WriteResult write_state(const SaveContext& ctx) = 0;

  // Collective. Called by load() on every rank once `manifest`, the
  // checkpoint in `dir`, has been loaded into the state, with no save in
  // flight: an engine may keep what helps its next save (the hdf5 engine
  // keeps the checkpoint's file as the template of a save of the same
  // structure). Must not throw for a checkpoint it cannot use. Default:
  // nothing.
  virtual void loaded(const std::filesystem::path& dir,
                      const Manifest& manifest) {
    (void)dir;
    (void)manifest;
  }

  FileSystem& fs() { return *fs_; }

 private:
  struct Staging;  // the staging pool, device copier and I/O thread

  // `agreed`: every rank is in this call (save(), load(), ...), and a
  // callback's failure on one rank fails it on every rank. False from
  // wait(), which is not collective: the callbacks' errors stay local.
  void run_callbacks(CallbackEvent event, bool agreed = true);
  void recover_once();
  // wait() without the deletions: what save() and load() wait for.
  void wait_for_save(bool agreed = true);
  // Collective over `comm`: exchange_layout, the engine's write step and the
  // commit of `state` as the checkpoint of `progress` by engine `engine`
  // (name(), read on the trainer's thread).
  void write_and_commit(const Comm& comm, State& state, const Progress& progress,
                        const std::string& engine);
  Staging& staging();

  TrainerView& trainer_;
  CheckpointConfig config_;
  int rank_ = 0;
  int world_size_ = 1;
  std::shared_ptr<FileSystem> fs_;
  bool recovered_ = false;
  std::string loaded_tag_;  // retention never deletes the checkpoint loaded
  std::vector<std::pair<CallbackEvent, std::function<void(CheckpointEngine&)>>>
      callbacks_;
  std::unique_ptr<Staging> staging_;  // made at the first staged save or load
  // Removes (rank 0) the checkpoints retention renamed aside; its destructor
  // waits for them, up to BackgroundDeleter::kDefaultExitWait.
  std::unique_ptr<BackgroundDeleter> deleter_;
  bool post_save_pending_ = false;    // an asynchronous save awaits its callbacks
  // The last save's layout, reused while every rank saves the same tensors
  // and regions (core/layout_cache.hpp). Used by one save at a time.
  std::unique_ptr<LayoutCache> layout_cache_;
};

}  // namespace floe
