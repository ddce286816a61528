// Flags and the JSON --config of floe-train-example.
#include "examples/train_options.hpp"

#include <fstream>
#include <sstream>
#include <vector>

#include <boost/program_options.hpp>

namespace po = boost::program_options;

namespace floe::example {
namespace {

constexpr const char* kUsage =
    "Usage: floe-train-example --output-dir DIR [options]\n"
    "\n"
    "Trains a small MLP on synthetic data, data parallel over MPI with a ZeRO-1\n"
    "partitioned AdamW, and checkpoints it with a Floe engine. The global batch\n"
    "and the data stream depend only on --seed, --global-batch and the step, so\n"
    "runs on different rank counts compute the same thing up to rounding.\n"
    "Run it under mpirun; every rank takes --global-batch / ranks samples.\n";

constexpr const char* kExitCodes =
    "\nExit status:\n"
    "   0  training finished (and the export, if asked for, was written)\n"
    "   1  a run-time error (I/O, no checkpoint to resume from, a checkpoint of\n"
    "      another model); every rank prints it before any training step\n"
    "   2  bad usage or config (unknown flag/key/engine, uneven --global-batch)\n"
    "  75  stopped by SIGUSR1 or SIGTERM after writing an emergency checkpoint\n"
    "      (EX_TEMPFAIL: requeue the job and run it again with --auto-resume)\n"
    "  86  --crash-at-step fired: MPI_Abort(MPI_COMM_WORLD, 86) (mpirun may\n"
    "      report another non-zero status)\n"
    "\n"
    "--config FILE takes a JSON object with the same keys as the flags (\"-\" or\n"
    "\"_\"), e.g. {\"engine\": \"mpiio\", \"save_every_n_steps\": 5}, plus an optional\n"
    "\"checkpoint\" object of further checkpoint-config keys (engine options,\n"
    "verify_on_load). Flags given on the command line win over the file.\n";

// The keys the trainer sets itself; "checkpoint" may not repeat them.
const std::vector<std::string> kOwnCheckpointKeys = {
    "type", "output_dir", "save_every_n_steps", "save_every_n_epochs",
    "save_end_of_training", "auto_resume", "keep_last_n", "async"};

po::options_description describe(TrainOptions& o) {
  po::options_description d("Options");
  auto flag = [](bool* b) {
    return po::value<bool>(b)->default_value(false)->implicit_value(true);
  };
  d.add_options()
      ("help,h", "Show this help and exit.")
      ("config", po::value<std::string>(), "JSON file with the same keys as the flags.")
      ("output-dir", po::value<std::string>(), "Checkpoint directory (required).")
      ("engine", po::value<std::string>(&o.engine)->default_value("hdf5"),
       "Checkpoint engine: hdf5, mpiio (resumable), hf (export only), or one registered.")
      ("steps", po::value<std::int64_t>(&o.steps)->default_value(20), "Optimizer steps in all.")
      ("steps-per-epoch", po::value<std::int64_t>(&o.steps_per_epoch)->default_value(0),
       "Steps per epoch (0: no epochs).")
      ("save-every-n-steps", po::value<std::int64_t>(&o.save_every_n_steps)->default_value(0),
       "Save every N steps (0: off).")
      ("save-every-n-epochs", po::value<std::int64_t>(&o.save_every_n_epochs)->default_value(0),
       "Save every N epochs (0: off; needs --steps-per-epoch).")
      ("save-end-of-training", flag(&o.save_end_of_training), "Save after the last step.")
      ("keep-last-n", po::value<std::int64_t>(&o.keep_last_n)->default_value(0),
       "Keep the newest N checkpoints (0: all).")
      ("auto-resume", flag(&o.auto_resume),
       "Resume from the newest usable checkpoint in --output-dir, if any.")
      ("resume-from", po::value<std::string>(), "Resume from this checkpoint directory.")
      ("export-hf", po::value<std::string>(),
       "After training, export the model as HF safetensors into DIR.")
      ("hidden", po::value<std::int64_t>(&o.hidden)->default_value(64), "Hidden width.")
      ("layers", po::value<std::int64_t>(&o.layers)->default_value(2), "Hidden layers.")
      ("seed", po::value<std::uint64_t>(&o.seed)->default_value(0),
       "Seed of the model init and the data stream.")
      ("global-batch", po::value<std::int64_t>(&o.global_batch)->default_value(24),
       "Samples per step over all ranks; must split evenly over the ranks.")
      ("lr", po::value<double>(&o.lr)->default_value(1e-3), "AdamW learning rate.")
      ("log-every", po::value<std::int64_t>(&o.log_every)->default_value(1),
       "Log step and loss every N steps (saves are always logged).")
      ("crash-at-step", po::value<std::int64_t>(&o.crash_at_step)->default_value(0),
       "Abort the job before step N's update (0: never). Fires only in a run that "
       "started fresh, so the resumed run (same flags) goes on.")
      ("step-delay-ms", po::value<std::int64_t>(&o.step_delay_ms)->default_value(0),
       "Sleep this long after each step, standing in for a real model's compute "
       "(the Slurm tests use it so that a signal finds the run still training).")
      ("async", flag(&o.async), "Sets the checkpoint config's `async` key.")
      ("bench-torch-save", flag(&o.bench_torch_save),
       "After each save, also time torch::save of each rank's share to its own file.");
  return d;
}

std::string json_value_text(const std::string& key, const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number()) return v.dump();
  throw UsageError("config key \"" + key + "\": expected a string, number or bool, got " +
                   v.dump());
}

// The config file's keys as "--key=value" tokens, and its "checkpoint" object.
std::vector<std::string> config_tokens(const std::string& path,
                                       const po::options_description& desc,
                                       nlohmann::json& checkpoint) {
  std::ifstream in(path);
  if (!in) throw UsageError("--config " + path + ": cannot open the file");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw UsageError("--config " + path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw UsageError("--config " + path + ": expected a JSON object");
  std::vector<std::string> tokens;
  for (const auto& [raw_key, value] : j.items()) {
    if (raw_key == "checkpoint") {
      if (!value.is_object()) {
        throw UsageError("--config " + path + ": \"checkpoint\" must be an object");
      }
      for (const auto& [k, v] : value.items()) {
        for (const auto& own : kOwnCheckpointKeys) {
          if (k == own) {
            throw UsageError("--config " + path + ": checkpoint." + k +
                             " is set by the trainer's own key; set it at the top level");
          }
        }
        checkpoint[k] = v;
      }
      continue;
    }
    std::string key = raw_key;
    for (char& c : key) c = (c == '_') ? '-' : c;
    if (key == "config" || key == "help" || !desc.find_nothrow(key, false)) {
      throw UsageError("--config " + path + ": unknown key \"" + raw_key + "\"");
    }
    tokens.push_back("--" + key + "=" + json_value_text(raw_key, value));
  }
  return tokens;
}

}  // namespace

nlohmann::json TrainOptions::checkpoint_json() const {
  nlohmann::json j = checkpoint_extra;
  j["type"] = engine;
  j["output_dir"] = output_dir.string();
  j["save_every_n_steps"] = save_every_n_steps;
  j["save_every_n_epochs"] = save_every_n_epochs;
  j["save_end_of_training"] = save_end_of_training;
  j["auto_resume"] = auto_resume;
  j["keep_last_n"] = keep_last_n;
  j["async"] = async;
  return j;
}

TrainOptions parse_train_options(int argc, char** argv) {
  TrainOptions o;
  const po::options_description desc = describe(o);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
    if (vm.count("config")) {
      const auto tokens =
          config_tokens(vm["config"].as<std::string>(), desc, o.checkpoint_extra);
      po::store(po::command_line_parser(tokens).options(desc).run(), vm);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  if (vm.count("help")) {
    std::ostringstream text;
    text << kUsage << "\n" << desc << kExitCodes;
    o.help = true;
    o.help_text = text.str();
    return o;
  }
  if (!vm.count("output-dir") || vm["output-dir"].as<std::string>().empty()) {
    throw UsageError("--output-dir is required");
  }
  o.output_dir = vm["output-dir"].as<std::string>();
  if (vm.count("resume-from")) o.resume_from = vm["resume-from"].as<std::string>();
  if (vm.count("export-hf")) o.export_hf = vm["export-hf"].as<std::string>();

  auto at_least = [](const char* flag, std::int64_t v, std::int64_t min) {
    if (v < min) {
      throw UsageError(std::string("--") + flag + " must be >= " + std::to_string(min) +
                       ", got " + std::to_string(v));
    }
  };
  at_least("steps", o.steps, 0);
  at_least("steps-per-epoch", o.steps_per_epoch, 0);
  at_least("save-every-n-steps", o.save_every_n_steps, 0);
  at_least("save-every-n-epochs", o.save_every_n_epochs, 0);
  at_least("keep-last-n", o.keep_last_n, 0);
  at_least("hidden", o.hidden, 1);
  at_least("layers", o.layers, 1);
  at_least("global-batch", o.global_batch, 1);
  at_least("crash-at-step", o.crash_at_step, 0);
  at_least("log-every", o.log_every, 1);
  at_least("step-delay-ms", o.step_delay_ms, 0);
  if (o.save_every_n_epochs > 0 && o.steps_per_epoch == 0) {
    throw UsageError("--save-every-n-epochs needs --steps-per-epoch");
  }
  if (o.auto_resume && !o.resume_from.empty()) {
    throw UsageError("--auto-resume and --resume-from exclude each other");
  }
  if (!(o.lr > 0)) throw UsageError("--lr must be > 0");
  return o;
}

}  // namespace floe::example
