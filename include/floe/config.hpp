// CheckpointConfig: what to save, where and when, validated from JSON or
// command-line flags with errors that name the key.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace floe {

// How an option's value is read and checked.
enum class OptionKind {
  kBool,    // true/false (flags: true/false/1/0/yes/no/on/off)
  kCount,   // integer >= 0; "1k" = 1000, "4Ki" = 4096 (k M G T P, Ki .. Pi)
  kBytes,   // like kCount, and also "5GB" = 5e9, "64MiB" = 64 * 2^20
  kString,  // any string
  kNumber,  // a finite number >= 0
};

// One engine-specific option: its key, kind, default and one line of doc.
struct OptionSpec {
  std::string key;
  OptionKind kind = OptionKind::kString;
  nlohmann::json default_value;
  std::string doc;
  // Optional extra check on the parsed value; return an empty string when the
  // value is fine, or what is wrong with it ("must be a power of two").
  std::string (*check)(const nlohmann::json& value) = nullptr;
};

// Engine options after validation: every key of the engine's schema is
// present, with the user's value or the default.
class EngineOptions {
 public:
  EngineOptions() = default;
  explicit EngineOptions(nlohmann::json values) : values_(std::move(values)) {}

  bool get_bool(const std::string& key) const;
  std::uint64_t get_count(const std::string& key) const;  // kCount and kBytes
  double get_number(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  const nlohmann::json& json() const { return values_; }

 private:
  const nlohmann::json& at(const std::string& key) const;
  nlohmann::json values_ = nlohmann::json::object();
};

// One checkpoint engine's configuration. Keys match ArcticTraining's
// CheckpointConfig; engine options sit beside them, flat.
struct CheckpointConfig {
  std::string type = "hdf5";          // Default: "hdf5". A registered engine name.
  std::filesystem::path output_dir;   // Required, non-empty.
  bool enabled = true;                // Default: true. false: do_checkpoint() is never true.
  std::int64_t save_every_n_steps = 0;   // Default: 0 (off).
  std::int64_t save_every_n_epochs = 0;  // Default: 0 (off).
  bool save_end_of_training = false;     // Default: false.
  bool auto_resume = false;   // Default: false. Load `latest` at start.
  std::int64_t keep_last_n = 0;  // Default: 0 (keep every checkpoint).
  bool verify_on_load = true;    // Default: true. Check checksums on load.
  // Default: false. save() stages the state and returns; the write and the
  // commit go on in the background (see engine.hpp).
  bool async = false;
  // Default: 0 (no cap). The most bytes of host staging memory one rank may
  // allocate (asynchronous saves, device tensors); a state that needs more
  // fails to save with Error(kIo) naming both sizes, nothing written.
  std::uint64_t staging_pool_limit = 0;
  // Default: false. Every rank logs, after each save() and load(), the wall
  // and CPU time of each of its steps (layout, data, commit, manifest, ...)
  // through the log sink at kInfo: "trace rank R save TAG: ...".
  bool trace_phases = false;
  // Default: false. A two-phase load: each rank reads one contiguous part
  // of the data file in large requests and MPI hands every rank the bytes
  // its regions need (collective buffering for reads, ROMIO's, across all
  // tensors at once). For checkpoints whose reader reads one data file
  // with plain reads (hdf5 and mpiio; others are read as without it). Off
  // by default: on one node it moved each byte three times where a rank's
  // own reads move it once, and loaded slower (BENCHMARKS.md, "A two-phase
  // load").
  bool load_exchange = false;
  // Default: false. Loads read each large stretch of a data file (256 KiB
  // or more) around the page cache (O_DIRECT), straight into the state's
  // memory, where the file system allows it and the memory lines up with
  // the file (ReadOnlyFile; the state's own shards of 64 KiB or more are
  // 4 KiB-aligned for it): no copy out of the page cache, and no cache to
  // fill. On this project's VM it halved a load's CPU time and made it
  // slower (one request in flight a rank, without the kernel's read-ahead:
  // BENCHMARKS.md, "Loads around the page cache"), hence off by default.
  bool direct_io = false;
  EngineOptions options;         // The engine's own keys, with defaults.

  nlohmann::json to_json() const;
};

// Parses and validates one engine's config. Throws Error(kInvalidConfig)
// naming the key on an unknown key, a wrong type or an impossible value, or
// an unknown `type` (the message lists the known engines).
CheckpointConfig parse_config(const nlohmann::json& json);

// Parses a trainer's list of checkpoint configs (one object is a list of
// one). At most one may set auto_resume; the error names both indices.
std::vector<CheckpointConfig> parse_configs(const nlohmann::json& json);

// Turns `key=value` flag pairs (values as typed on a command line) into the
// JSON parse_config takes, converting each value by its key's kind. Throws
// Error(kInvalidConfig) naming the flag on an unknown key or a bad value.
nlohmann::json config_json_from_flags(
    const std::vector<std::pair<std::string, std::string>>& flags);

// Parses a count: an integer >= 0 with an optional suffix k/M/G/T (powers of
// 1000) or Ki/Mi/Gi/Ti (powers of 1024); with `bytes`, a trailing "B" is
// allowed too ("5GB", "500MB", "64MiB"). Throws Error(kInvalidConfig) naming
// `key` on anything else or on overflow: as a config key (`config key
// "keep_last_n": ...`), or, when `key` starts with "--", as the command-line
// flag it is (`--size: ...`).
std::uint64_t parse_count(const std::string& text, const std::string& key,
                          bool bytes = false);

}  // namespace floe
