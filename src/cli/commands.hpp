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

// floe engines: the registered checkpoint engines and their options.
int run_engines(const std::vector<std::string>& args);
extern const char kEnginesSummary[];

// floe version: "floe <version>".
int run_version(const std::vector<std::string>& args);
extern const char kVersionSummary[];

}  // namespace floe::cli
