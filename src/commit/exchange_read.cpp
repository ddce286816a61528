#include "commit/exchange_read.hpp"

#include <algorithm>
#include <climits>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <system_error>

#include "core/page_memory.hpp"
#include "core/phase_log.hpp"
#include "io/run_planner.hpp"

namespace floe {
namespace {

constexpr std::uint64_t kAlign = 4096;  // parts start on page boundaries
// Bytes no rank asked for between two stretches some did: read through
// (one request) up to this gap, skipped past it.
constexpr std::uint64_t kMaxReadGap = 64u << 10;

struct Span {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::uint64_t end() const { return offset + length; }
};

// This rank's requests: every shard's runs of the one data file.
struct Requests {
  const ReadOnlyFile* file = nullptr;
  std::vector<FileRun> runs;  // by offset, none empty, none overlapping
};

// Plans every shard's runs, reading nothing; false when the exchange
// cannot read them all (the caller's own reads then say why, where it is
// an error: a storage offset beyond the file, a box outside its tensor).
bool plan_requests(CheckpointReader& reader,
                   const std::vector<TensorRecord>& tensors,
                   const std::vector<TensorShard*>& shards, int ranks,
                   Requests& out) {
  auto* planner = dynamic_cast<RunPlanner*>(&reader);
  if (!planner || !reader.reads_independently()) return false;
  try {
    out.file = planner->exchange_file();
    if (!out.file) return false;
    for (std::size_t t = 0; t < tensors.size(); ++t) {
      TensorShard* shard = shards[t];
      if (!shard || shard->nbytes() == 0) continue;
      const CheckpointReader::ReadRequest request{
          &tensors[t], shard->region().boxes(tensors[t].spec.shape),
          shard->data()};
      if (!planner->append_runs(request, out.runs)) return false;
    }
    out.runs.erase(
        std::remove_if(out.runs.begin(), out.runs.end(),
                       [](const FileRun& r) { return r.length == 0; }),
        out.runs.end());
    std::sort(
        out.runs.begin(), out.runs.end(),
        [](const FileRun& a, const FileRun& b) { return a.offset < b.offset; });
  } catch (...) {
    return false;
  }
  const std::uint64_t size = out.file->size();
  for (std::size_t i = 0; i < out.runs.size(); ++i) {
    const FileRun& run = out.runs[i];
    if (run.file != out.file || run.offset > size ||
        run.length > size - run.offset) {
      return false;
    }
    if (i > 0 && out.runs[i - 1].offset + out.runs[i - 1].length > run.offset)
      return false;
  }
  // The request lists travel as pairs of u64 in one MPI_Alltoallv, whose
  // counts and displacements are ints.
  return out.runs.size() <= static_cast<std::uint64_t>(INT_MAX / 2) / ranks;
}

// The span [lo, hi) the ranks ask for, split into one part per rank, and
// each part into rounds of at most `round` bytes.
struct Parts {
  std::uint64_t lo = 0, hi = 0;
  std::uint64_t round = 0;
  std::uint64_t per = 1;  // bytes of a part (the last may be shorter)
  std::uint64_t rounds = 0;

  Parts(std::uint64_t lo_, std::uint64_t hi_, int ranks, std::uint64_t round_)
      : lo(lo_), hi(hi_), round(round_) {
    const std::uint64_t n = static_cast<std::uint64_t>(ranks);
    per = std::max<std::uint64_t>(
        kAlign, ((hi - lo + n - 1) / n + kAlign - 1) / kAlign * kAlign);
    rounds = (per + round - 1) / round;
  }
  int owner(std::uint64_t offset) const {
    return static_cast<int>((offset - lo) / per);
  }
  std::uint64_t part_end(int q) const {
    return std::min(hi, lo + (q + 1) * per);
  }
  // Rank q's stretch of the file in round k (possibly empty).
  Span chunk(int q, std::uint64_t k) const {
    const std::uint64_t end = part_end(q);
    const std::uint64_t start = std::min(end, lo + q * per + k * round);
    return Span{start, std::min(end, start + round) - start};
  }
};

// Calls fn(offset, length, item) for the part inside `chunk` of each item of
// `items` (sorted by offset, none overlapping) from `cursor` on that
// overlaps it, first moving `cursor` past the items that end before it.
template <typename T, typename Fn>
void each_inside(const std::vector<T>& items, std::size_t& cursor,
                 const Span& chunk, Fn&& fn) {
  if (chunk.length == 0) return;
  while (cursor < items.size() &&
         items[cursor].offset + items[cursor].length <= chunk.offset) {
    ++cursor;
  }
  for (std::size_t i = cursor;
       i < items.size() && items[i].offset < chunk.end(); ++i) {
    const std::uint64_t from = std::max(items[i].offset, chunk.offset);
    const std::uint64_t to =
        std::min(items[i].offset + items[i].length, chunk.end());
    fn(from, to - from, items[i]);
  }
}

// Sends this rank's requests to the ranks whose parts hold them; returns
// what each rank asks of this rank's part, by rank (sorted by offset).
std::vector<std::vector<Span>> trade_requests(const Requests& mine,
                                              const Parts& parts,
                                              const Comm& comm) {
  const int n = comm.size();
  std::vector<std::vector<std::uint64_t>> out(n);
  for (const FileRun& run : mine.runs) {
    std::uint64_t at = run.offset;
    const std::uint64_t end = run.offset + run.length;
    while (at < end) {  // split where the parts meet
      const int q = parts.owner(at);
      const std::uint64_t to = std::min(end, parts.part_end(q));
      out[q].push_back(at);
      out[q].push_back(to - at);
      at = to;
    }
  }
  std::vector<int> send_counts(n), send_displs(n), recv_counts(n),
      recv_displs(n);
  std::vector<std::uint64_t> send;
  for (int q = 0; q < n; ++q) {
    send_counts[q] = static_cast<int>(out[q].size());
    send_displs[q] = static_cast<int>(send.size());
    send.insert(send.end(), out[q].begin(), out[q].end());
  }
  check_mpi(MPI_Alltoall(send_counts.data(), 1, MPI_INT, recv_counts.data(), 1,
                         MPI_INT, comm.get()),
            "MPI_Alltoall (load exchange requests)");
  std::uint64_t total = 0;
  for (int q = 0; q < n; ++q) {
    recv_displs[q] = static_cast<int>(total);
    total += static_cast<std::uint64_t>(recv_counts[q]);
  }
  std::vector<std::uint64_t> recv(total);
  check_mpi(MPI_Alltoallv(send.data(), send_counts.data(), send_displs.data(),
                          MPI_UINT64_T, recv.data(), recv_counts.data(),
                          recv_displs.data(), MPI_UINT64_T, comm.get()),
            "MPI_Alltoallv (load exchange requests)");
  std::vector<std::vector<Span>> asked(n);
  for (int q = 0; q < n; ++q) {
    for (int i = 0; i < recv_counts[q]; i += 2) {
      asked[q].push_back(
          Span{recv[recv_displs[q] + i], recv[recv_displs[q] + i + 1]});
    }
  }
  return asked;
}

// What this rank reads of its part: every rank's requests merged, gaps of
// at most kMaxReadGap read through.
std::vector<Span> reads_of(const std::vector<std::vector<Span>>& asked) {
  std::vector<Span> all;
  for (const auto& spans : asked)
    all.insert(all.end(), spans.begin(), spans.end());
  std::sort(all.begin(), all.end(),
            [](const Span& a, const Span& b) { return a.offset < b.offset; });
  std::vector<Span> reads;
  for (const Span& s : all) {
    if (!reads.empty() && s.offset <= reads.back().end() + kMaxReadGap) {
      reads.back().length =
          std::max(reads.back().end(), s.end()) - reads.back().offset;
    } else {
      reads.push_back(s);
    }
  }
  return reads;
}

// One round's MPI datatypes, freed with it.
class RoundTypes {
 public:
  explicit RoundTypes(int n)
      : types_(n, MPI_BYTE), counts_(n, 0), zeros_(n, 0) {}
  ~RoundTypes() {
    for (MPI_Datatype& t : types_) {
      if (t != MPI_BYTE) MPI_Type_free(&t);
    }
  }
  RoundTypes(const RoundTypes&) = delete;
  RoundTypes& operator=(const RoundTypes&) = delete;

  // Rank q's type: the blocks given (lengths, byte displacements).
  void set(int q, const std::vector<int>& lengths,
           const std::vector<MPI_Aint>& displs) {
    if (lengths.empty()) return;
    check_mpi(MPI_Type_create_hindexed(static_cast<int>(lengths.size()),
                                       lengths.data(), displs.data(), MPI_BYTE,
                                       &types_[q]),
              "MPI_Type_create_hindexed (load exchange)");
    check_mpi(MPI_Type_commit(&types_[q]), "MPI_Type_commit (load exchange)");
    counts_[q] = 1;
  }
  const MPI_Datatype* types() const { return types_.data(); }
  const int* counts() const { return counts_.data(); }
  const int* displs() const { return zeros_.data(); }

 private:
  std::vector<MPI_Datatype> types_;
  std::vector<int> counts_, zeros_;
};

// Runs fn on a thread of its own, or at get() where no thread can start.
std::future<void> start(std::function<void()> fn) {
  try {
    return std::async(std::launch::async, fn);
  } catch (const std::system_error&) {
    return std::async(std::launch::deferred, std::move(fn));
  }
}

}  // namespace

ExchangeStats exchange_read(CheckpointReader& reader,
                            const std::vector<TensorRecord>& tensors,
                            const std::vector<TensorShard*>& shards,
                            const Comm& comm, std::uint64_t round_bytes) {
  ExchangeStats stats;
  const int n = comm.size();
  Requests mine;
  const bool can = plan_requests(reader, tensors, shards, n, mine);
  // Every rank's [can, first byte, end of last byte, file id]: the same
  // file on every rank (its path and size, hashed, alike).
  const std::uint64_t id =
      mine.file ? std::hash<std::string>()(mine.file->path().string()) ^
                      mine.file->size()
                : 0;
  const std::vector<std::uint64_t> rows =
      comm.allgather(std::vector<std::uint64_t>{
          can ? 1u : 0u, mine.runs.empty() ? 0 : mine.runs.front().offset,
          mine.runs.empty() ? 0
                            : mine.runs.back().offset + mine.runs.back().length,
          id});
  std::uint64_t all_lo = ~std::uint64_t{0}, all_hi = 0;
  for (int q = 0; q < n; ++q) {
    const std::uint64_t* row = &rows[4 * static_cast<std::size_t>(q)];
    if (row[0] == 0 || row[3] != id) return stats;
    if (row[1] >= row[2]) continue;  // asks for nothing
    all_lo = std::min(all_lo, row[1]);
    all_hi = std::max(all_hi, row[2]);
  }
  if (all_lo >= all_hi) return stats;

  // MPI block lengths are ints: rounds of at most 1 GiB.
  const Parts parts(all_lo, all_hi, n,
                    std::clamp<std::uint64_t>(round_bytes, 1, 1u << 30));
  const int me = comm.rank();
  const std::uint64_t buffer_bytes = std::min(parts.per, parts.round);
  PageBlock buffers[2];  // what a read fills: on a page (core/page_memory.hpp)
  try {
    collectively(comm, [&] {
      for (auto& b : buffers) b = page_block(buffer_bytes);
    });
  } catch (const Error&) {
    return stats;  // on every rank: each reads its own bytes instead
  }
  const std::vector<std::vector<Span>> asked =
      trade_requests(mine, parts, comm);
  const std::vector<Span> reads = reads_of(asked);
  mark_phase("exchange plan");

  // Round k's reads of this rank's part into buffers[k % 2].
  std::size_t read_cursor = 0;
  const auto read_round = [&](std::uint64_t k) {
    return start([&, k] {
      const Span chunk = parts.chunk(me, k);
      char* into = reinterpret_cast<char*>(buffers[k % 2].get());
      each_inside(reads, read_cursor, chunk,
                  [&](std::uint64_t at, std::uint64_t length, auto&) {
                    mine.file->read_exact(at, length,
                                          into + (at - chunk.offset));
                    stats.read_bytes += length;
                    ++stats.reads;
                  });
    });
  };
  std::exception_ptr error;  // the first read that failed here
  std::vector<std::size_t> send_cursor(n, 0), recv_cursor(n, 0);
  std::vector<int> lengths;
  std::vector<MPI_Aint> displs;
  std::future<void> next = read_round(0);
  for (std::uint64_t k = 0; k < parts.rounds; ++k) {
    try {
      next.get();
    } catch (...) {
      if (!error) error = std::current_exception();
    }
    if (k + 1 < parts.rounds) next = read_round(k + 1);
    const Span mine_now = parts.chunk(me, k);
    RoundTypes send(n), recv(n);
    for (int q = 0; q < n; ++q) {
      lengths.clear();
      displs.clear();
      each_inside(
          asked[q], send_cursor[q], mine_now,
          [&](std::uint64_t at, std::uint64_t length, const Span&) {
            lengths.push_back(static_cast<int>(length));
            displs.push_back(static_cast<MPI_Aint>(at - mine_now.offset));
            if (q != me) stats.sent_bytes += length;
          });
      send.set(q, lengths, displs);
      lengths.clear();
      displs.clear();
      each_inside(
          mine.runs, recv_cursor[q], parts.chunk(q, k),
          [&](std::uint64_t at, std::uint64_t length, const FileRun& run) {
            MPI_Aint address = 0;
            check_mpi(MPI_Get_address(run.memory + (at - run.offset), &address),
                      "MPI_Get_address (load exchange)");
            lengths.push_back(static_cast<int>(length));
            displs.push_back(address);
          });
      recv.set(q, lengths, displs);
    }
    check_mpi(MPI_Alltoallw(buffers[k % 2].get(), send.counts(), send.displs(),
                            send.types(), MPI_BOTTOM, recv.counts(),
                            recv.displs(), recv.types(), comm.get()),
              "MPI_Alltoallw (load exchange)");
    ++stats.rounds;
  }
  mark_phase("exchange");
  agree_on_error(comm, error);
  stats.used = true;
  return stats;
}

}  // namespace floe
