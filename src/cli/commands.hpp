// The `floe` subcommands. Each lives in its own cmd_<name>.cpp and exposes
// run_<name>(args), which gets the arguments after the subcommand's name and
// returns the exit status, and k<Name>Summary, its line in `floe --help`.
// Errors: throw floe::Error (exit 1) or UsageError (exit 2); main() prints.
#pragma once

#include <string>
#include <vector>

namespace floe::cli {

// floe bench: save/load throughput against raw POSIX I/O of the same bytes.
int run_bench(const std::vector<std::string>& args);
extern const char kBenchSummary[];

// floe diff: compares two checkpoints' tensors, scalars and blobs by value.
int run_diff(const std::vector<std::string>& args);
extern const char kDiffSummary[];

// floe export-hf: a checkpoint's model tensors as Hugging Face safetensors
// (built with the hf engine: FLOE_CLI_HF).
int run_export_hf(const std::vector<std::string>& args);
extern const char kExportHfSummary[];

// floe engines: the registered checkpoint engines and their options.
int run_engines(const std::vector<std::string>& args);
extern const char kEnginesSummary[];

// floe inspect: a checkpoint's manifest, tensor by tensor.
int run_inspect(const std::vector<std::string>& args);
extern const char kInspectSummary[];

// floe list: the checkpoints (and leftovers) in an output directory.
int run_list(const std::vector<std::string>& args);
extern const char kListSummary[];

// floe verify: checks every checksum of a checkpoint.
int run_verify(const std::vector<std::string>& args);
extern const char kVerifySummary[];

// floe version: "floe <version>".
int run_version(const std::vector<std::string>& args);
extern const char kVersionSummary[];

}  // namespace floe::cli
