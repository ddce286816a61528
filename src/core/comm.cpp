#include "core/comm.hpp"

#include <limits>

namespace floe {

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw Error(ErrorCode::kIo,
              std::string(what) + ": " + std::string(text, length));
}

Comm::Comm(MPI_Comm comm) : comm_(comm) {
  check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
}

void Comm::barrier() const { check_mpi(MPI_Barrier(comm_), "MPI_Barrier"); }

namespace {
std::uint64_t allreduce(MPI_Comm comm, std::uint64_t value, MPI_Op op) {
  std::uint64_t out = 0;
  check_mpi(MPI_Allreduce(&value, &out, 1, MPI_UINT64_T, op, comm),
            "MPI_Allreduce");
  return out;
}
}  // namespace

std::uint64_t Comm::allreduce_max(std::uint64_t v) const {
  return allreduce(comm_, v, MPI_MAX);
}
std::uint64_t Comm::allreduce_min(std::uint64_t v) const {
  return allreduce(comm_, v, MPI_MIN);
}
std::uint64_t Comm::allreduce_sum(std::uint64_t v) const {
  return allreduce(comm_, v, MPI_SUM);
}

void Comm::allreduce_min(std::vector<std::uint32_t>& values) const {
  if (values.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw Error(ErrorCode::kInvalidArgument, "allreduce: more than 2^31 values");
  }
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()),
                          MPI_UINT32_T, MPI_MIN, comm_),
            "MPI_Allreduce");
}

std::vector<std::uint64_t> Comm::allgather(std::uint64_t value) const {
  std::vector<std::uint64_t> out(size_);
  check_mpi(MPI_Allgather(&value, 1, MPI_UINT64_T, out.data(), 1,
                          MPI_UINT64_T, comm_),
            "MPI_Allgather");
  return out;
}

namespace {

// Where each rank's message starts in the gathered bytes, from the lengths.
std::vector<int> displacements(const std::vector<int>& counts, const char* what) {
  std::vector<int> displs(counts.size());
  long long total = 0;
  for (std::size_t r = 0; r < counts.size(); ++r) {
    displs[r] = static_cast<int>(total);
    total += counts[r];
    if (total > std::numeric_limits<int>::max()) {
      throw Error(ErrorCode::kInvalidArgument,
                  std::string(what) + ": the ranks' messages exceed 2 GiB together");
    }
  }
  return displs;
}

int message_size(const std::string& bytes, const char* what) {
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw Error(ErrorCode::kInvalidArgument,
                std::string(what) + ": a rank's message exceeds 2 GiB");
  }
  return static_cast<int>(bytes.size());
}

std::vector<std::string> split(const std::string& all, const std::vector<int>& counts,
                               const std::vector<int>& displs) {
  std::vector<std::string> out(counts.size());
  for (std::size_t r = 0; r < counts.size(); ++r) out[r] = all.substr(displs[r], counts[r]);
  return out;
}

}  // namespace

std::vector<std::string> Comm::allgather_bytes(const std::string& bytes) const {
  const int mine = message_size(bytes, "allgather");
  std::vector<int> counts(size_);
  check_mpi(MPI_Allgather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, comm_),
            "MPI_Allgather");
  const std::vector<int> displs = displacements(counts, "allgather");
  std::string all(static_cast<std::size_t>(displs.back()) + counts.back(), '\0');
  check_mpi(MPI_Allgatherv(bytes.data(), mine, MPI_BYTE, all.data(),
                           counts.data(), displs.data(), MPI_BYTE, comm_),
            "MPI_Allgatherv");
  return split(all, counts, displs);
}

std::vector<std::string> Comm::gather_bytes(const std::string& bytes, int root) const {
  // Every rank learns whether the total fits an int, so all throw alike
  // (a rank that threw alone would leave the others in the gather).
  if (allreduce_sum(bytes.size()) >
      static_cast<std::uint64_t>(std::numeric_limits<int>::max())) {
    throw Error(ErrorCode::kInvalidArgument,
                "gather: the ranks' messages exceed 2 GiB together");
  }
  const int mine = static_cast<int>(bytes.size());
  std::vector<int> counts(rank_ == root ? size_ : 0);
  check_mpi(MPI_Gather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, root, comm_),
            "MPI_Gather");
  std::vector<int> displs;
  std::string all;
  if (rank_ == root) {
    displs = displacements(counts, "gather");
    all.assign(static_cast<std::size_t>(displs.back()) + counts.back(), '\0');
  }
  check_mpi(MPI_Gatherv(bytes.data(), mine, MPI_BYTE, all.data(), counts.data(),
                        displs.data(), MPI_BYTE, root, comm_),
            "MPI_Gatherv");
  if (rank_ != root) return {};
  return split(all, counts, displs);
}

std::string Comm::broadcast_bytes(const std::string& bytes, int root) const {
  std::uint64_t length = bytes.size();
  check_mpi(MPI_Bcast(&length, 1, MPI_UINT64_T, root, comm_), "MPI_Bcast");
  std::string out = rank_ == root ? bytes : std::string(length, '\0');
  broadcast(out.data(), length, root);
  return out;
}

void Comm::broadcast(char* data, std::uint64_t size, int root) const {
  // In pieces below 2^31 bytes: MPI counts are ints.
  constexpr std::uint64_t kChunk = 1ull << 30;
  for (std::uint64_t done = 0; done < size; done += kChunk) {
    const int n = static_cast<int>(std::min(kChunk, size - done));
    check_mpi(MPI_Bcast(data + done, n, MPI_BYTE, root, comm_), "MPI_Bcast");
  }
}

namespace {

std::pair<ErrorCode, std::string> describe(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const Error& e) {
    return {e.code(), e.what()};
  } catch (const std::bad_alloc&) {
    return {ErrorCode::kIo, "out of memory"};
  } catch (const std::exception& e) {
    return {ErrorCode::kInternal, e.what()};
  } catch (...) {
    return {ErrorCode::kInternal, "unknown exception"};
  }
}

}  // namespace

void agree_on_error(const Comm& comm, std::exception_ptr local_error) {
  const auto size = static_cast<std::uint64_t>(comm.size());
  const std::uint64_t mine = local_error ? comm.rank() : size;
  const std::uint64_t first = comm.allreduce_min(mine);
  if (first == size) return;

  const std::uint64_t failed = comm.allreduce_sum(local_error ? 1 : 0);
  std::string payload;
  if (static_cast<std::uint64_t>(comm.rank()) == first) {
    auto [code, message] = describe(local_error);
    payload.push_back(static_cast<char>(code));
    payload += message;
  }
  payload = comm.broadcast_bytes(payload, static_cast<int>(first));
  const auto code = static_cast<ErrorCode>(payload[0]);
  std::string message = payload.substr(1);
  if (comm.size() > 1) {
    std::string prefix = "rank " + std::to_string(first);
    if (failed > 1) {
      prefix += " (and " + std::to_string(failed - 1) + " other rank" +
                (failed > 2 ? "s" : "") + ")";
    }
    message = prefix + ": " + message;
  }
  throw Error(code, message);
}

}  // namespace floe
