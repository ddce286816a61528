// CheckpointConfig and EngineOptions accessors, and the common keys' schema.
#include <cmath>

#include "core/config_schema.hpp"
#include "floe/error.hpp"

namespace floe {

const std::vector<OptionSpec>& common_options() {
  static const std::vector<OptionSpec> kOptions = {
      {"type", OptionKind::kString, "hdf5", "engine name (floe --list-engines)"},
      {"output_dir", OptionKind::kString, "", "directory holding the checkpoints"},
      {"enabled", OptionKind::kBool, true, "false: never save"},
      {"save_every_n_steps", OptionKind::kCount, 0, "save every N steps (0: off)"},
      {"save_every_n_epochs", OptionKind::kCount, 0, "save every N epochs (0: off)"},
      {"save_end_of_training", OptionKind::kBool, false, "save when training ends"},
      {"auto_resume", OptionKind::kBool, false, "load `latest` at start"},
      {"keep_last_n", OptionKind::kCount, 0, "keep the newest N checkpoints (0: all)"},
      {"verify_on_load", OptionKind::kBool, true, "check checksums on load"},
      {"async", OptionKind::kBool, false,
       "save() returns once the state is staged; the write goes on in the background"},
      {"staging_pool_limit", OptionKind::kBytes, 0,
       "most bytes of staging memory per rank (async saves, GPU tensors; 0: no cap)"},
      {"trace_phases", OptionKind::kBool, false,
       "each rank logs the wall and CPU time of every step of each save and load"},
      {"direct_io", OptionKind::kBool, false,
       "loads read large stretches around the page cache (O_DIRECT) where the file "
       "system and memory allow it"},
      {"load_exchange", OptionKind::kBool, false,
       "two-phase loads: each rank reads one contiguous part of the data file and "
       "MPI moves the bytes to the ranks that need them"},
  };
  return kOptions;
}

const nlohmann::json& EngineOptions::at(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) {
    throw Error(ErrorCode::kInvalidConfig,
                "engine option \"" + key + "\" is not in this engine's schema");
  }
  return *it;
}

bool EngineOptions::get_bool(const std::string& key) const {
  return at(key).get<bool>();
}
std::uint64_t EngineOptions::get_count(const std::string& key) const {
  return at(key).get<std::uint64_t>();
}
double EngineOptions::get_number(const std::string& key) const {
  return at(key).get<double>();
}
std::string EngineOptions::get_string(const std::string& key) const {
  return at(key).get<std::string>();
}

nlohmann::json CheckpointConfig::to_json() const {
  nlohmann::json out = options.json();
  out["type"] = type;
  out["output_dir"] = output_dir.string();
  out["enabled"] = enabled;
  out["save_every_n_steps"] = save_every_n_steps;
  out["save_every_n_epochs"] = save_every_n_epochs;
  out["save_end_of_training"] = save_end_of_training;
  out["auto_resume"] = auto_resume;
  out["keep_last_n"] = keep_last_n;
  out["verify_on_load"] = verify_on_load;
  out["async"] = async;
  out["staging_pool_limit"] = staging_pool_limit;
  out["trace_phases"] = trace_phases;
  out["load_exchange"] = load_exchange;
  out["direct_io"] = direct_io;
  return out;
}

}  // namespace floe
