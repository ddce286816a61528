// What every `floe` subcommand shares: the MPI session, rank-0 output, usage
// errors and argument parsing with Boost.Program_options.
#pragma once

#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

namespace floe::cli {

namespace po = boost::program_options;

// A mistake on the command line (unknown flag, missing argument). main()
// prints it with a hint and exits 2; floe::Error exits 1.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Owns MPI for the life of the process: MPI_Init_thread asking for
// MPI_THREAD_MULTIPLE (engines may do I/O off the main thread), and
// MPI_Finalize in the destructor. Construct exactly once, in main().
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

// This process's rank in MPI_COMM_WORLD (0 before MPI is up).
int world_rank();

// Where reports go: std::cout on rank 0, a discarding stream elsewhere, so
// `mpirun -np 8 floe ...` prints each report once.
std::ostream& out();
// The same for diagnostics (std::cerr on rank 0).
std::ostream& err();

// A subcommand's command line: its options and positional arguments.
struct CommandLine {
  std::string usage;  // "floe engines [--json]"
  std::string summary;
  po::options_description options{"Options"};
  po::positional_options_description positional;
};

// Parses `args` against `line` plus a built-in --help. Returns nullopt after
// printing the help when --help is given. Throws UsageError on anything the
// options do not describe.
std::optional<po::variables_map> parse_command_line(
    const CommandLine& line, const std::vector<std::string>& args);

}  // namespace floe::cli
