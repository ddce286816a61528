// Bytes that rank 0 has and every rank reads, held once per node.
//
// A manifest of 20,000 tensors saved by 4 ranks is ~11 MB. Broadcast, it
// was copied into every rank's memory, fragment by fragment through the
// shared-memory transport, and at 4 ranks the broadcast took as long as
// parsing the text (BENCHMARKS.md, "The manifest once per node"). Here the
// ranks of a node map one MPI shared-memory window instead: the first rank
// of each node receives the bytes (rank 0 copies them in; the other nodes'
// first ranks get them by a broadcast among themselves, straight into
// their window), and the others read them where they are.
//
// Where a node cannot have the window (its backing directory, /dev/shm or
// Open MPI's osc_sm_backing_directory, is missing or lacks room for the
// bytes), or rank 0's environment has FLOE_NODE_SHARED=0, every rank falls
// back to a plain broadcast into its own memory.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <mpi.h>

#include "core/comm.hpp"

namespace floe {

class NodeSharedBytes {
 public:
  // What a node's backing directory must have free beyond the bytes (and
  // their NUL) for the window to be used: room for the MPI's own records.
  static constexpr std::uint64_t kRoomMargin = 1u << 20;

  // Collective over `comm`. `bytes` is read on rank 0 only.
  NodeSharedBytes(const Comm& comm, const std::string& bytes);
  // Collective over the ranks of a node (it frees the window): every rank
  // must destroy the object at the same point of the program, as it does
  // when the object lives in one scope around collective calls only.
  ~NodeSharedBytes();
  NodeSharedBytes(const NodeSharedBytes&) = delete;
  NodeSharedBytes& operator=(const NodeSharedBytes&) = delete;

  // Rank 0's bytes, followed by a NUL byte (not part of the view).
  std::string_view view() const { return {data_, size_}; }
  // Whether the bytes are in a node-shared window (false: the fallback).
  bool shared() const { return window_ != MPI_WIN_NULL; }

 private:
  // The fallback: rank 0's bytes broadcast into own_.
  void receive_broadcast(const Comm& comm, const std::string& bytes);

  MPI_Comm node_ = MPI_COMM_NULL;
  MPI_Win window_ = MPI_WIN_NULL;
  std::string own_;  // the fallback's copy
  const char* data_ = nullptr;
  std::uint64_t size_ = 0;
};

}  // namespace floe
