#include "core/comm.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>

namespace floe {
namespace {
// Results of a gather or broadcast from this size on are allocated under
// agreement.
constexpr std::uint64_t kAgreeAllocationFrom = 64ull << 20;
}  // namespace

std::string mpi_error_text(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  return std::string(text, static_cast<std::size_t>(length));
}

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  throw Error(ErrorCode::kIo, std::string(what) + ": " + mpi_error_text(rc));
}

void agree_mpi(const Comm& comm, int rc, const std::string& what) {
  collectively(comm, [&] {
    if (rc != MPI_SUCCESS)
      throw Error(ErrorCode::kIo, what + ": " + mpi_error_text(rc));
  });
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

namespace {
void allreduce_in_place(MPI_Comm comm, std::vector<std::uint32_t>& values, MPI_Op op) {
  if (values.size() >
      static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw Error(ErrorCode::kInvalidArgument,
                "allreduce: more than 2^31 values");
  }
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, values.data(),
                          static_cast<int>(values.size()), MPI_UINT32_T, op, comm),
            "MPI_Allreduce");
}
}  // namespace

void Comm::allreduce_min(std::vector<std::uint32_t>& values) const {
  allreduce_in_place(comm_, values, MPI_MIN);
}
void Comm::allreduce_max(std::vector<std::uint32_t>& values) const {
  allreduce_in_place(comm_, values, MPI_MAX);
}

std::vector<std::uint64_t> Comm::allgather(std::uint64_t value) const {
  return allgather(std::vector<std::uint64_t>{value});
}

std::vector<std::uint64_t> Comm::allgather(
    const std::vector<std::uint64_t>& values) const {
  if (values.size() >
      static_cast<std::size_t>(std::numeric_limits<int>::max() / size_)) {
    throw Error(ErrorCode::kInvalidArgument, "allgather: too many values");
  }
  const int n = static_cast<int>(values.size());
  std::vector<std::uint64_t> out(values.size() * static_cast<std::size_t>(size_));
  check_mpi(MPI_Allgather(values.data(), n, MPI_UINT64_T, out.data(), n,
                          MPI_UINT64_T, comm_),
            "MPI_Allgather");
  return out;
}

void Comm::allocate_agreed(std::uint64_t bytes,
                           const std::function<void()>& allocate) const {
  if (bytes < kAgreeAllocationFrom) {
    allocate();
  } else {
    collectively(*this, allocate);
  }
}

std::vector<std::string> Comm::allgather_bytes(
    const std::string& bytes, std::uint64_t round_bytes) const {
  return gather_any(bytes, -1, round_bytes);
}

std::vector<std::string> Comm::gather_bytes(const std::string& bytes, int root,
                                            std::uint64_t round_bytes) const {
  return gather_any(bytes, root, round_bytes);
}

std::vector<std::string> Comm::gather_any(const std::string& bytes, int root,
                                          std::uint64_t round_bytes) const {
  const bool everyone = root < 0;
  const bool receives = everyone || rank_ == root;
  // Every rank learns every length, so all take the same rounds and none
  // throws alone (the others would wait in the gather).
  const std::vector<std::uint64_t> lengths = allgather(bytes.size());
  round_bytes = std::min(round_bytes, kMaxRoundBytes);
  // Each rank's share of a round: a whole message when they fit together.
  std::uint64_t total = 0, longest = 0;
  for (std::uint64_t n : lengths) {
    total += n;
    longest = std::max(longest, n);
  }
  const std::uint64_t share =
      total <= round_bytes
          ? std::max<std::uint64_t>(longest, 1)
          : std::max<std::uint64_t>(round_bytes / lengths.size(), 1);
  std::vector<std::string> out(receives ? lengths.size() : 0);
  // Room for the result: above kAgreeAllocationFrom bytes it may not be
  // there on some rank, which then throws and every rank with it (one
  // allreduce) instead of leaving the others in the gather.
  std::string round;  // one round's bytes, on a rank that receives them
  const auto allocate = [&] {
    for (std::size_t r = 0; r < out.size(); ++r) out[r].resize(lengths[r]);
    if (receives) round.resize(std::min(total, share * lengths.size()));
  };
  allocate_agreed(total, allocate);
  std::vector<int> counts(lengths.size()), displs(lengths.size());
  std::uint64_t done = 0;  // of each message, before this round
  do {
    int at = 0;
    for (std::size_t r = 0; r < lengths.size(); ++r) {
      counts[r] = static_cast<int>(
          std::min(share, lengths[r] - std::min(done, lengths[r])));
      displs[r] = at;
      at += counts[r];
    }
    const int mine = counts[static_cast<std::size_t>(rank_)];
    const char* send =
        bytes.data() + std::min<std::uint64_t>(done, bytes.size());
    if (everyone) {
      check_mpi(MPI_Allgatherv(send, mine, MPI_BYTE, round.data(),
                               counts.data(), displs.data(), MPI_BYTE, comm_),
                "MPI_Allgatherv");
    } else {
      check_mpi(MPI_Gatherv(send, mine, MPI_BYTE, round.data(), counts.data(),
                            displs.data(), MPI_BYTE, root, comm_),
                "MPI_Gatherv");
    }
    for (std::size_t r = 0; r < out.size(); ++r) {
      if (counts[r] > 0)
        std::memcpy(out[r].data() + done, round.data() + displs[r], counts[r]);
    }
    done += share;
  } while (done < longest);
  return out;
}

std::string Comm::broadcast_bytes(const std::string& bytes, int root) const {
  std::uint64_t length = bytes.size();
  check_mpi(MPI_Bcast(&length, 1, MPI_UINT64_T, root, comm_), "MPI_Bcast");
  std::string out;
  allocate_agreed(length, [&] {
    out = rank_ == root ? bytes : std::string(length, '\0');
  });
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

// What agree_on_error throws: the same Error on every rank, already naming
// the failing rank. An enclosing agreement that finds it on every rank
// passes it on as it is, instead of naming a rank again ("rank 0 (and 3
// other ranks): rank 2: ...").
class AgreedError : public Error {
 public:
  using Error::Error;
};

bool is_agreed(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const AgreedError&) {
    return true;
  } catch (...) {
    return false;
  }
}

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

void rethrow_in_context(std::exception_ptr error, const std::string& context) {
  auto [code, message] = describe(error);
  if (is_agreed(error)) throw AgreedError(code, context + message);
  throw Error(code, context + message);
}

void agree_on_error(const Comm& comm, std::exception_ptr local_error) {
  const auto size = static_cast<std::uint64_t>(comm.size());
  const std::uint64_t mine = local_error ? comm.rank() : size;
  const std::uint64_t first = comm.allreduce_min(mine);
  if (first == size) return;

  // The failed ranks (low 32 bits) and those among them holding an error
  // agreed on inside (high bits), in one allreduce.
  const std::uint64_t counts = comm.allreduce_sum(
      local_error ? 1 + (static_cast<std::uint64_t>(is_agreed(local_error)) << 32) : 0);
  const std::uint64_t failed = counts & 0xffffffffu;
  if (counts >> 32 == size) std::rethrow_exception(local_error);
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
  throw AgreedError(code, message);
}

}  // namespace floe
