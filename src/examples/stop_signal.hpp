// Preemption: SIGUSR1 and SIGTERM set a flag; at a step boundary the ranks
// agree whether any of them got one.
#pragma once

#include <mpi.h>

namespace floe::example {

// Installs the handlers (async-signal-safe: they only set a flag).
void install_stop_handlers();

// Collective: true on every rank when any rank has received a signal since
// install_stop_handlers() (one MPI_Allreduce(MAX) of an int).
bool stop_requested(MPI_Comm comm);

// The number of the last signal received on this rank, 0 for none.
int stop_signal();

}  // namespace floe::example
