// The `floe` command: global flags, then a dispatcher over the subcommand
// table. Runs under mpirun as well as alone; only rank 0 prints reports.
#include <mpi.h>

#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "cli/cli_common.hpp"
#include "cli/commands.hpp"
#include "floe/error.hpp"

namespace floe::cli {
namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const std::vector<std::string>& args);
};

// Every subcommand, in the order `floe --help` lists them.
const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"bench", kBenchSummary, run_bench},
      {"diff", kDiffSummary, run_diff},
      {"engines", kEnginesSummary, run_engines},
#ifdef FLOE_CLI_HF
      {"export-hf", kExportHfSummary, run_export_hf},
#endif
      {"inspect", kInspectSummary, run_inspect},
      {"list", kListSummary, run_list},
      {"verify", kVerifySummary, run_verify},
      {"version", kVersionSummary, run_version},
  };
  return table;
}

std::string command_names() {
  std::string names;
  for (const Command& c : commands()) {
    names += (names.empty() ? "" : ", ") + std::string(c.name);
  }
  return names;
}

const Command* find_command(const std::string& name) {
  for (const Command& c : commands()) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

void print_help(std::ostream& os, const po::options_description& flags) {
  os << "Usage: floe [--help] [--version] [--list-engines]\n"
        "       floe <command> [<args>]   (floe <command> --help for more)\n\n"
        "Distributed checkpoint I/O for MPI trainers. Runs alone or under\n"
        "mpirun; rank 0 prints.\n\n"
     << flags << "\nCommands:\n";
  for (const Command& c : commands()) {
    const std::string name = c.name;
    os << "  " << name
       << std::string(name.size() < 12 ? 12 - name.size() : 1, ' ') << c.summary
       << "\n";
  }
}

// Global flags come before the subcommand's name; everything after it is
// the subcommand's.
int dispatch(const std::vector<std::string>& args) {
  std::size_t first = 0;
  while (first < args.size() && !args[first].empty() && args[first][0] == '-')
    ++first;
  const std::vector<std::string> flags(args.begin(), args.begin() + first);

  po::options_description global("Options");
  global.add_options()("help,h", "Show this help and exit.")(
      "version", "Print \"floe <version>\" and exit (= floe version).")(
      "list-engines", "List the checkpoint engines (= floe engines).");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(flags).options(global).run(), vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }

  if (vm.count("help")) {
    print_help(out(), global);
    return 0;
  }
  if (vm.count("version")) return run_version({});
  if (vm.count("list-engines")) return run_engines({});
  if (first == args.size()) {
    print_help(err(), global);
    return 2;
  }

  const std::string& name = args[first];
  const Command* command = find_command(name);
  if (command == nullptr) {
    throw UsageError("unknown command '" + name +
                     "' (known commands: " + command_names() + ")");
  }
  return command->run({args.begin() + first + 1, args.end()});
}

}  // namespace
}  // namespace floe::cli

int main(int argc, char** argv) {
  namespace cli = floe::cli;
  cli::MpiSession mpi(&argc, &argv);
  try {
    return cli::dispatch({argv + 1, argv + argc});
  } catch (const cli::UsageError& e) {
    cli::err() << "floe: " << e.what() << "\nTry 'floe --help'.\n";
    return 2;
  } catch (const floe::Error& e) {
    // Collective calls throw the same Error on every rank: rank 0 reports.
    cli::err() << "floe: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    // Not agreed on (not a floe::Error): the other ranks may be waiting in
    // a collective for this one, and MPI_Finalize would wait for them.
    std::cerr << "floe: internal error: " << e.what() << "\n";
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
}
