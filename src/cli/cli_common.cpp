#include "cli/cli_common.hpp"

#include <cstdlib>

#include <iostream>

#include <mpi.h>

namespace floe::cli {

MpiSession::MpiSession(int* argc, char*** argv) {
#ifdef OPEN_MPI
  // Open MPI 4.1's default MPI-IO component (OMPIO) wrote checkpoints at
  // 0.34-0.41 of raw POSIX throughput here, ROMIO at 0.87 (BENCHMARKS.md):
  // prefer ROMIO unless the user chose a component.
  ::setenv("OMPI_MCA_io", "romio321", /*overwrite=*/0);
#endif
  int provided = 0;
  // MPI's default error handler aborts on failure, so there is nothing to
  // check here. A lower `provided` level is fine for the CLI's own thread.
  MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

int world_rank() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) return 0;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

namespace {

// A stream that drops everything written to it (no buffer: badbit is set,
// and writes are discarded).
std::ostream& null_stream() {
  static std::ostream stream(nullptr);
  return stream;
}

}  // namespace

std::ostream& out() { return world_rank() == 0 ? std::cout : null_stream(); }
std::ostream& err() {
  if (world_rank() != 0) return null_stream();
  // What went to stdout goes out first: under mpirun both reach the
  // terminal through one forwarder, and an unflushed stdout block could
  // land in the middle of an (unbuffered, piecewise) stderr line.
  std::cout.flush();
  return std::cerr;
}

std::optional<po::variables_map> parse_command_line(
    const CommandLine& line, const std::vector<std::string>& args) {
  po::options_description all;
  all.add_options()("help,h", "Show this help and exit.");
  all.add(line.options);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args)
                  .options(all)
                  .positional(line.positional)
                  .run(),
              vm);
    if (vm.count("help")) {
      out() << "Usage: " << line.usage << "\n\n"
            << line.summary << "\n\n"
            << all;
      return std::nullopt;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  return vm;
}

}  // namespace floe::cli
