// floe version: prints "floe <version>" (also `floe --version`).
#include "cli/cli_common.hpp"
#include "cli/commands.hpp"
#include "floe/version.hpp"

namespace floe::cli {

const char kVersionSummary[] = "Print the version of the Floe library.";

int run_version(const std::vector<std::string>& args) {
  CommandLine line;
  line.usage = "floe version";
  line.summary = kVersionSummary;
  if (!parse_command_line(line, args)) return 0;
  // The library's version, which is what a user's job actually runs.
  out() << "floe " << floe::version() << "\n";
  return 0;
}

}  // namespace floe::cli
