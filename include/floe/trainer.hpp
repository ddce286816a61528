// The view of a trainer that a checkpoint engine reads: where training is,
// which ranks take part, and the state to save or fill.
#pragma once

#include <cstdint>
#include <string>

#include <mpi.h>

#include "floe/state.hpp"

namespace floe {

// Where training stands. The trainer updates it as it goes.
struct Progress {
  std::int64_t global_step = 0;  // optimizer steps taken so far
  std::int64_t epoch = 0;        // epochs finished so far
  bool epoch_finished = false;   // true right after the last step of an epoch
  bool training_finished = false;
};

// What an engine needs from a trainer. Implement it in a trainer, or fill a
// SimpleTrainer. The engine keeps a reference: the trainer must outlive it.
class TrainerView {
 public:
  virtual ~TrainerView() = default;
  // The communicator of the ranks that save and load together.
  virtual MPI_Comm comm() const = 0;
  virtual const Progress& progress() const = 0;
  virtual State& state() = 0;
  // "cpu", "cuda:0", ...: where the state's tensors live.
  virtual std::string device() const { return "cpu"; }
};

// A TrainerView made of plain fields.
struct SimpleTrainer : TrainerView {
  explicit SimpleTrainer(MPI_Comm c = MPI_COMM_WORLD) : communicator(c) {}

  MPI_Comm comm() const override { return communicator; }
  const Progress& progress() const override { return progress_now; }
  State& state() override { return state_now; }

  MPI_Comm communicator;
  Progress progress_now;
  State state_now;
};

}  // namespace floe
