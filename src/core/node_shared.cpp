#include "core/node_shared.hpp"

#include <cstdlib>
#include <cstring>

#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace floe {
namespace {

// Where this MPI keeps its shared windows' backing files: Open MPI's
// osc_sm_backing_directory as `mpirun --mca` and OMPI_MCA_* set it, else
// /dev/shm. Not read through the MPI tool interface: MPI_T_init_thread
// costs ~210 ms per call in Open MPI 4.1 (it registers every component's
// variables). A value set in an mca-params.conf file is not seen.
std::string backing_directory() {
  const char* dir = std::getenv("OMPI_MCA_osc_sm_backing_directory");
  return dir != nullptr && *dir != '\0' ? dir : "/dev/shm";
}

// Whether the backing directory has room for a window of `size` bytes and
// the MPI's bookkeeping next to it. Open MPI 4.1 does not fail a window
// that does not fit, or one whose directory does not exist: it prints a
// warning and the job waits forever. So the first rank of each node looks
// first.
bool room_for(std::uint64_t size) {
  struct statvfs fs {};
  if (statvfs(backing_directory().c_str(), &fs) != 0) return false;
  return static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize >=
         size + NodeSharedBytes::kRoomMargin;
}

// Makes the pages of [data, data + size) present and writable now, so that
// a window larger than the room left in its backing file system (a tmpfs
// such as /dev/shm) fails here, with an error, rather than with SIGBUS at
// the first write into a page that cannot be allocated. False where the
// kernel cannot tell (before Linux 5.14): the caller then does not use the
// window.
bool populate(char* data, std::uint64_t size) {
#ifdef MADV_POPULATE_WRITE
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(data) / page * page;
  const auto end = (reinterpret_cast<std::uintptr_t>(data) + size + page - 1) / page * page;
  return madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE) == 0;
#else
  (void)data;
  (void)size;
  return false;
#endif
}

// Rank 0's environment decides, for every rank: FLOE_NODE_SHARED=0 turns
// the window off.
bool window_wanted() {
  const char* value = std::getenv("FLOE_NODE_SHARED");
  return value == nullptr || std::string(value) != "0";
}

}  // namespace

NodeSharedBytes::NodeSharedBytes(const Comm& comm, const std::string& bytes) {
  // The size and whether to use a window, as rank 0 sees them.
  std::uint64_t facts[2] = {bytes.size(), window_wanted() ? 1u : 0u};
  check_mpi(MPI_Bcast(facts, 2, MPI_UINT64_T, 0, comm.get()), "MPI_Bcast");
  size_ = facts[0];
  if (facts[1] == 0) {
    receive_broadcast(comm, bytes);
    return;
  }

  // The ranks of each node, in `comm`'s order: rank 0 comes first on its
  // node.
  check_mpi(MPI_Comm_split_type(comm.get(), MPI_COMM_TYPE_SHARED, comm.rank(),
                                MPI_INFO_NULL, &node_),
            "MPI_Comm_split_type");
  int node_rank = 0;
  check_mpi(MPI_Comm_rank(node_, &node_rank), "MPI_Comm_rank");
  const bool first = node_rank == 0;

  // Every node's first rank checks for room (see room_for); one that has
  // none means the broadcast everywhere, before any window exists.
  if (comm.allreduce_min(!first || room_for(size_ + 1) ? 1 : 0) == 0) {
    receive_broadcast(comm, bytes);
    return;
  }
  // Room for the bytes and a NUL in the first rank's part, none in the
  // others'. A failure to allocate comes back as an error code, not as the
  // end of the job (where the MPI reports it).
  check_mpi(MPI_Comm_set_errhandler(node_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  char* base = nullptr;
  const auto mine = static_cast<MPI_Aint>(first ? size_ + 1 : 0);
  bool ok = MPI_Win_allocate_shared(mine, 1, MPI_INFO_NULL, node_, &base, &window_) ==
            MPI_SUCCESS;
  if (ok && first) ok = populate(base, size_ + 1);
  // Freeing a window is collective over its node. The allocation is
  // collective over the node too, and taken to succeed or fail on all of
  // its ranks alike: where it failed on some only, the others' free would
  // wait.
  const bool everywhere = comm.allreduce_min(ok ? 1 : 0) == 1;
  if (!everywhere) {
    if (window_ != MPI_WIN_NULL) MPI_Win_free(&window_);  // sets it to MPI_WIN_NULL
    receive_broadcast(comm, bytes);
    return;
  }
  if (!first) {
    MPI_Aint size = 0;
    int unit = 0;
    check_mpi(MPI_Win_shared_query(window_, 0, &size, &unit, &base), "MPI_Win_shared_query");
  }

  // The nodes' first ranks pass the bytes on among themselves; rank 0 is
  // rank 0 among them too (the split keeps `comm`'s order).
  MPI_Comm firsts = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split(comm.get(), first ? 0 : MPI_UNDEFINED, comm.rank(), &firsts),
            "MPI_Comm_split");
  check_mpi(MPI_Win_lock_all(MPI_MODE_NOCHECK, window_), "MPI_Win_lock_all");
  if (first) {
    if (comm.rank() == 0) std::memcpy(base, bytes.data(), size_);
    Comm(firsts).broadcast(base, size_, 0);
    base[size_] = '\0';
    MPI_Comm_free(&firsts);
  }
  // The first rank's stores, then everyone's loads (MPI 3.1 section 11.7,
  // the shared-memory synchronization pattern).
  check_mpi(MPI_Win_sync(window_), "MPI_Win_sync");
  check_mpi(MPI_Barrier(node_), "MPI_Barrier");
  check_mpi(MPI_Win_sync(window_), "MPI_Win_sync");
  data_ = base;
}

void NodeSharedBytes::receive_broadcast(const Comm& comm, const std::string& bytes) {
  own_ = comm.broadcast_bytes(bytes, 0);
  data_ = own_.data();
}

NodeSharedBytes::~NodeSharedBytes() {
  if (window_ != MPI_WIN_NULL) {
    MPI_Win_unlock_all(window_);
    MPI_Win_free(&window_);
  }
  if (node_ != MPI_COMM_NULL) MPI_Comm_free(&node_);
}

}  // namespace floe
