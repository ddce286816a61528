// CheckpointEngine::do_checkpoint(): when a trainer saves, as a table over
// the config's triggers and the trainer's progress; and checkpoint_dir().
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "floe/engine.hpp"
#include "floe/error.hpp"
#include "floe/trainer.hpp"

namespace floe {
namespace {

// The smallest engine: do_checkpoint() and checkpoint_dir() need no I/O.
class NoWriteEngine : public CheckpointEngine {
 public:
  using CheckpointEngine::CheckpointEngine;
  std::string_view name() const override { return "do_checkpoint_test"; }

 protected:
  WriteResult write_state(const SaveContext&) override {
    throw Error(ErrorCode::kInternal, "NoWriteEngine does not write");
  }
};

struct Case {
  const char* what;
  // config
  bool enabled;
  std::int64_t every_steps;
  std::int64_t every_epochs;
  bool at_end;
  // progress
  std::int64_t step;
  std::int64_t epoch;  // epochs finished so far
  bool epoch_finished;
  bool training_finished;
  // verdict
  bool saves;
};

std::ostream& operator<<(std::ostream& out, const Case& c) {
  return out << c.what << " {enabled=" << c.enabled
             << " every_steps=" << c.every_steps
             << " every_epochs=" << c.every_epochs << " end=" << c.at_end
             << " | step=" << c.step << " epoch=" << c.epoch
             << " epoch_finished=" << c.epoch_finished
             << " training_finished=" << c.training_finished << "} -> "
             << c.saves;
}

// clang-format off
const Case kCases[] = {
  // what                                   en  steps ep end   step ep  ep_fin train_fin  saves
  {"disabled: every trigger fires",          false, 1,  1, true,  10,  1, true,  true,  false},
  {"disabled: step boundary",                false, 5,  0, false, 10,  0, false, false, false},
  {"nothing configured",                     true,  0,  0, false, 10,  1, true,  true,  false},

  {"step 0 is never a boundary",             true,  1,  0, false,  0,  0, false, false, false},
  {"step 0 with every-10 steps",             true, 10,  0, false,  0,  0, false, false, false},
  {"step 0, an empty epoch ended",           true,  0,  1, false,  0,  1, true,  false, false},
  {"step 0, training ended before a step",   true,  0,  0, true,   0,  0, false, true,  false},

  {"every step: step 1",                     true,  1,  0, false,  1,  0, false, false, true},
  {"every step: step 7",                     true,  1,  0, false,  7,  0, false, false, true},
  {"every 10: step 9",                       true, 10,  0, false,  9,  0, false, false, false},
  {"every 10: step 10",                      true, 10,  0, false, 10,  0, false, false, true},
  {"every 10: step 11",                      true, 10,  0, false, 11,  0, false, false, false},
  {"every 10: step 20",                      true, 10,  0, false, 20,  0, false, false, true},
  {"every 10: step 1",                       true, 10,  0, false,  1,  0, false, false, false},
  {"every 10: step 1000",                    true, 10,  0, false, 1000, 3, false, false, true},
  {"steps off: step 10",                     true,  0,  0, false, 10,  0, false, false, false},

  {"every epoch: first epoch ends",          true,  0,  1, false, 50,  1, true,  false, true},
  {"every epoch: mid second epoch",          true,  0,  1, false, 60,  1, false, false, false},
  {"every epoch: second epoch ends",         true,  0,  1, false, 100, 2, true,  false, true},
  {"every 2 epochs: epoch 1 ends",           true,  0,  2, false, 50,  1, true,  false, false},
  {"every 2 epochs: epoch 2 ends",           true,  0,  2, false, 100, 2, true,  false, true},
  {"every 2 epochs: mid epoch 3",            true,  0,  2, false, 101, 2, false, false, false},
  {"every 2 epochs: epoch 3 ends",           true,  0,  2, false, 150, 3, true,  false, false},
  {"every 2 epochs: epoch 4 ends",           true,  0,  2, false, 200, 4, true,  false, true},
  {"every 3 epochs: epoch 3 ends",           true,  0,  3, false, 33,  3, true,  false, true},
  {"epochs off: epoch ends",                 true,  0,  0, false, 50,  1, true,  false, false},
  {"steps only: epoch end off the grid",     true,  7,  0, false, 50,  1, true,  false, false},

  {"end of training",                        true,  0,  0, true,  37,  2, false, true,  true},
  {"end of training, also an epoch end",     true,  0,  0, true,  40,  2, true,  true,  true},
  {"end of training not asked for",          true,  0,  0, false, 37,  2, false, true,  false},
  {"end asked for, training goes on",        true,  0,  0, true,  37,  2, false, false, false},
  {"steps off-grid at end, end asked",       true, 10,  0, true,  37,  2, false, true,  true},
  {"steps off-grid at end, end not asked",   true, 10,  0, false, 37,  2, false, true,  false},

  {"step and epoch coincide",                true, 50,  1, false, 100, 2, true,  false, true},
  {"step, epoch and end coincide",           true, 50,  1, true,  100, 2, true,  true,  true},
  {"epoch and end coincide",                 true,  7,  2, true,  100, 2, true,  true,  true},
  {"step and end coincide",                  true, 10,  0, true,  30,  0, false, true,  true},
  {"disabled: all coincide",                 false, 50, 1, true,  100, 2, true,  true,  false},
};
// clang-format on

TEST(DoCheckpoint, Table) {
  int checked = 0;
  for (const Case& c : kCases) {
    CheckpointConfig config;
    config.output_dir = "/ckpt/do_checkpoint_test";
    config.enabled = c.enabled;
    config.save_every_n_steps = c.every_steps;
    config.save_every_n_epochs = c.every_epochs;
    config.save_end_of_training = c.at_end;
    SimpleTrainer trainer;
    trainer.progress_now =
        Progress{c.step, c.epoch, c.epoch_finished, c.training_finished};
    NoWriteEngine engine(trainer, config);
    EXPECT_EQ(engine.do_checkpoint(), c.saves) << c;
    // The same answer when asked again: do_checkpoint() is pure.
    EXPECT_EQ(engine.do_checkpoint(), c.saves) << c;
    EXPECT_EQ(engine.epoch_finished(), c.epoch_finished) << c;
    EXPECT_EQ(engine.training_finished(), c.training_finished) << c;
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(std::size(kCases)));
}

TEST(DoCheckpoint, FollowsTheTrainerAsItAdvances) {
  // A run of 3 epochs of 4 steps, saving every 3 steps, every 2 epochs and
  // at the end: the steps at which do_checkpoint() says "save".
  CheckpointConfig config;
  config.output_dir = "/ckpt/run";
  config.save_every_n_steps = 3;
  config.save_every_n_epochs = 2;
  config.save_end_of_training = true;
  SimpleTrainer trainer;
  NoWriteEngine engine(trainer, config);
  std::vector<std::int64_t> saved_at;
  EXPECT_FALSE(engine.do_checkpoint());  // before the first step
  for (int epoch = 0; epoch < 3; ++epoch) {
    for (int i = 0; i < 4; ++i) {
      Progress& p = trainer.progress_now;
      ++p.global_step;
      p.epoch_finished = i == 3;
      if (p.epoch_finished) ++p.epoch;
      p.training_finished = p.epoch_finished && epoch == 2;
      if (engine.do_checkpoint()) saved_at.push_back(p.global_step);
    }
  }
  // Steps 3, 6, 9, 12 (every 3); 8 (end of epoch 2); 12 (end) once.
  EXPECT_EQ(saved_at, (std::vector<std::int64_t>{3, 6, 8, 9, 12}));
}

TEST(DoCheckpoint, CheckpointDirIsOutputDirSlashGlobalStep) {
  CheckpointConfig config;
  config.output_dir = "/scratch/job 42/ckpt";
  SimpleTrainer trainer;
  NoWriteEngine engine(trainer, config);
  for (std::int64_t step : {1, 7, 120, 1000000}) {
    trainer.progress_now.global_step = step;
    EXPECT_EQ(engine.checkpoint_dir(),
              std::filesystem::path("/scratch/job 42/ckpt") /
                  ("global_step_" + std::to_string(step)));
  }
}

TEST(DoCheckpoint, EngineViewOfTheTrainer) {
  CheckpointConfig config;
  config.output_dir = "/ckpt";
  SimpleTrainer trainer;
  NoWriteEngine engine(trainer, config);
  EXPECT_EQ(engine.global_rank(), 0);
  EXPECT_EQ(engine.world_size(), 1);
  EXPECT_EQ(engine.device(), "cpu");
  EXPECT_EQ(&engine.trainer(), static_cast<TrainerView*>(&trainer));
  EXPECT_EQ(engine.config().output_dir, std::filesystem::path("/ckpt"));
  EXPECT_EQ(engine.name(), "do_checkpoint_test");
}

}  // namespace
}  // namespace floe
