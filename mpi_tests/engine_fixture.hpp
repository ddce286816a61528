// A test trainer over a sub-communicator, and the state the engine suites
// save and load: every dtype family and every region kind.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "floe/floe.hpp"
#include "test_util.hpp"

namespace floe::test {

// How the test state splits tensors across ranks.
enum class Partition {
  kDim0,   // dim-0 shards, ZeRO flat optimizer state
  kFlat,   // ZeRO flat ranges for everything shardable
  kMixed,  // dim-0 for model, flat for optimizer, replicated small tensors
};

// The first `size` ranks of MPI_COMM_WORLD (MPI_COMM_NULL on the others).
// Collective over MPI_COMM_WORLD.
class SubComm {
 public:
  explicit SubComm(int size);
  ~SubComm();
  SubComm(const SubComm&) = delete;
  SubComm& operator=(const SubComm&) = delete;
  MPI_Comm get() const { return comm_; }
  bool member() const { return comm_ != MPI_COMM_NULL; }
  // This rank's rank in it (its world rank: the first ranks keep their
  // order); members only.
  int rank() const { return rank_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
};

// Fills `state` with rank `rank` of `size`'s part of the test model and
// optimizer (values from expected_value), scalars, metadata and a blob.
void build_test_state(State& state, int rank, int size, Partition partition);

// Asserts every shard of `state` holds its expected values.
::testing::AssertionResult state_holds_expected(const State& state);

// Makes an engine of `type` saving into `dir` for `trainer`.
std::unique_ptr<CheckpointEngine> make_test_engine(
    TrainerView& trainer, const std::string& type,
    const std::filesystem::path& dir, nlohmann::json extra = {});

// A trainer holding the full test state (mixed partition) at this job's
// world size, and an engine of `engine` saving into `dir`.
struct EngineRig {
  EngineRig(const std::filesystem::path& dir, const std::string& engine,
            nlohmann::json extra = {}) {
    build_test_state(trainer.state(), world_rank(), world_size(), Partition::kMixed);
    this->engine = make_test_engine(trainer, engine, dir, std::move(extra));
  }
  // Collective: saves the state as the checkpoint of `step`.
  void save_at(std::int64_t step) {
    trainer.progress_now.global_step = step;
    engine->save();
  }
  SimpleTrainer trainer;
  std::unique_ptr<CheckpointEngine> engine;
};

// Registered engines that can resume (have a factory and a reader).
std::vector<std::string> resumable_engines();

}  // namespace floe::test
