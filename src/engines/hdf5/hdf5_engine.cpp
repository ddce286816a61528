#include "engines/hdf5/hdf5_engine.hpp"

#include "engines/hdf5/hdf5_loaded_template.hpp"
#include "engines/hdf5/hdf5_reader.hpp"
#include "engines/hdf5/hdf5_writer.hpp"

namespace floe {

Hdf5Engine::Hdf5Engine(TrainerView& trainer, CheckpointConfig config)
    : CheckpointEngine(trainer, std::move(config)),
      options_(h5::Hdf5Options::from(this->config().options)) {}

WriteResult Hdf5Engine::write_state(const SaveContext& ctx) {
  last_save_stats_ = h5::TransferStats{};
  return h5::write_checkpoint(ctx, options_, last_save_stats_, saved_structure_);
}

void Hdf5Engine::loaded(const std::filesystem::path& dir,
                        const Manifest& manifest) {
  // load() waited for any save in flight: the I/O thread is not using it.
  saved_structure_.loaded.reset();
  if (options_.reuse_structure) {
    saved_structure_.loaded = h5::loaded_file_of(dir, manifest);
  }
}

EngineInfo hdf5_engine_info() {
  EngineInfo info;
  info.name = "hdf5";
  info.description =
      "one parallel-HDF5 file per checkpoint, tensors at their global shape "
      "(h5py-readable)";
  info.resumable = true;
  info.options = h5::hdf5_option_specs();
  info.factory = [](TrainerView& trainer, const CheckpointConfig& config) {
    return std::unique_ptr<CheckpointEngine>(new Hdf5Engine(trainer, config));
  };
  info.reader = h5::open_hdf5_reader;
  return info;
}

}  // namespace floe
