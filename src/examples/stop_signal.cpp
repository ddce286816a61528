// The handlers only store the signal number: everything else (agreeing,
// saving, exiting) happens at the next step boundary, outside the handler.
#include "examples/stop_signal.hpp"

#include <csignal>

namespace floe::example {
namespace {

volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_stop_signal(int signo) { g_signal = signo; }

}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // MPI calls in flight carry on
  sigaction(SIGUSR1, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

bool stop_requested(MPI_Comm comm) {
  int mine = g_signal != 0 ? 1 : 0;
  int any = 0;
  MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, comm);
  return any != 0;
}

int stop_signal() { return g_signal; }

}  // namespace floe::example
