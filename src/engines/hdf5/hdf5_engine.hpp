// The `hdf5` engine (the default, resumable): one parallel-HDF5 file per
// checkpoint whose datasets keep each tensor's global shape, so h5py and
// h5dump read it without Floe (docs/hdf5_layout.md).
#pragma once

#include <string_view>

#include "engines/hdf5/h5_transfer.hpp"
#include "engines/hdf5/hdf5_options.hpp"
#include "engines/hdf5/hdf5_template.hpp"
#include "floe/engine.hpp"
#include "floe/registry.hpp"

namespace floe {

class Hdf5Engine : public CheckpointEngine {
 public:
  // Throws Error(kInvalidConfig) naming the key on a bad engine option; a
  // config made by hand without the engine's keys gets their defaults.
  Hdf5Engine(TrainerView& trainer, CheckpointConfig config);
  // An asynchronous save's I/O thread calls write_state() and reads
  // options_: it must end before this engine's part is destroyed.
  ~Hdf5Engine() override { finish_pending_save(); }

  std::string_view name() const override { return "hdf5"; }
  const h5::Hdf5Options& options() const { return options_; }

  // This rank's tensor transfers in its last save, as HDF5 reported them:
  // whether each one really was collective.
  const h5::TransferStats& last_save_stats() const { return last_save_stats_; }
  // Whether the last save was written from the previous save's file
  // structure (the `reuse_structure` option, hdf5_template.hpp).
  bool last_save_reused_structure() const { return saved_structure_.reused; }

 protected:
  WriteResult write_state(const SaveContext& ctx) override;
  // Keeps what the manifest says of the loaded file's structure, for the
  // next save (hdf5_loaded_template.hpp).
  void loaded(const std::filesystem::path& dir,
              const Manifest& manifest) override;

 private:
  h5::Hdf5Options options_;
  h5::TransferStats last_save_stats_;
  // Used by write_state() alone (one save at a time, on the caller's or the
  // asynchronous save's thread).
  h5::SavedStructure saved_structure_;
};

// The registry entry: name, options, engine and reader factories.
EngineInfo hdf5_engine_info();

}  // namespace floe
