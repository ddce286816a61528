// floe-train-example's options: command-line flags and a JSON --config with
// the same keys, validated before MPI work starts.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace floe::example {

// The exit statuses (documented in --help and the README).
inline constexpr int kExitDone = 0;
inline constexpr int kExitError = 1;         // a Floe error at run time
inline constexpr int kExitUsage = 2;         // bad flags or config
inline constexpr int kExitPreempted = 75;    // emergency checkpoint written
inline constexpr int kExitCrashInjected = 86;  // --crash-at-step (MPI_Abort)

// A usage or config error: exit status kExitUsage.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct TrainOptions {
  std::filesystem::path output_dir;    // required
  std::string engine = "hdf5";
  std::int64_t steps = 20;
  std::int64_t steps_per_epoch = 0;    // 0: no epochs
  std::int64_t save_every_n_steps = 0;
  std::int64_t save_every_n_epochs = 0;
  bool save_end_of_training = false;
  std::int64_t keep_last_n = 0;
  bool auto_resume = false;
  std::filesystem::path resume_from;   // empty: none
  std::filesystem::path export_hf;     // empty: none
  std::int64_t hidden = 64;
  std::int64_t layers = 2;
  std::uint64_t seed = 0;
  std::int64_t global_batch = 24;
  std::int64_t crash_at_step = 0;      // 0: never
  bool async = false;
  double lr = 1e-3;
  std::int64_t log_every = 1;          // log the loss every N steps
  std::int64_t step_delay_ms = 0;      // sleep after each step (compute stand-in)
  bool bench_torch_save = false;       // also time torch::save of each rank's share
  // Extra checkpoint-config keys (engine options, verify_on_load) from the
  // JSON config's "checkpoint" object.
  nlohmann::json checkpoint_extra = nlohmann::json::object();
  bool help = false;
  std::string help_text;

  // The checkpoint config JSON for floe::parse_config.
  nlohmann::json checkpoint_json() const;
};

// Parses argv (and the --config file it names; flags win over the file).
// Throws UsageError with a message naming the flag or key.
TrainOptions parse_train_options(int argc, char** argv);

}  // namespace floe::example
