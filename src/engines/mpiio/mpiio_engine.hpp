// The `mpiio` engine: raw MPI-IO into one data file per checkpoint, one
// aligned extent per rank, written with collective calls. The smallest
// engine in the tree: read it as the template for a new one.
#pragma once

#include "floe/engine.hpp"
#include "floe/registry.hpp"
#include "io/gathered_read.hpp"
#include "io/mpi_file.hpp"

namespace floe {

class MpiioEngine : public CheckpointEngine {
 public:
  static constexpr const char* kName = "mpiio";
  static constexpr const char* kDataFile = "data.bin";

  MpiioEngine(TrainerView& trainer, const CheckpointConfig& config)
      : CheckpointEngine(trainer, config) {}
  // An asynchronous save's I/O thread calls write_state(): it must end
  // before this engine's part is destroyed.
  ~MpiioEngine() override { finish_pending_save(); }

  std::string_view name() const override { return kName; }

 protected:
  WriteResult write_state(const SaveContext& ctx) override;
};

// Collective. Opens a checkpoint written by MpiioEngine, or any whose pieces
// name a file and the byte offset of their bytes in it (the hf engine's).
std::unique_ptr<CheckpointReader> open_mpiio_reader(const ReadContext& ctx);

// How read_some() of `reader`, one of open_mpiio_reader, went so far (all
// threads). kInvalidArgument for another reader.
GatheredReadStats mpiio_read_stats(const CheckpointReader& reader);

// The MPI-IO hints the engine options ask for (unset ones left out).
MpiInfo mpiio_hints(const EngineOptions& options);

}  // namespace floe
