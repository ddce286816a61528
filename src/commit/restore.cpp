#include "commit/restore.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>

#include "commit/coordinator.hpp"
#include "commit/exchange_read.hpp"
#include "commit/load_match.hpp"
#include "commit/paths.hpp"
#include "commit/piece_check.hpp"
#include "commit/read_ahead.hpp"
#include "core/page_memory.hpp"
#include "core/phase_log.hpp"
#include "floe/error.hpp"
#include "floe/layout.hpp"
#include "floe/registry.hpp"
#include "io/checksum.hpp"

namespace floe {
namespace {

// Checks the checksums of pieces a rank loaded in place on a thread of its
// own, so hashing tensor t overlaps reading tensor t+1 (XXH3 is fast, but
// not free next to a cold read), when the caller reads them itself (no
// ReadAhead). Problems carry their tensor's index, so the first one
// reported is the first in manifest order whoever found it.
class InlineChecker {
 public:
  using Problem = std::pair<std::size_t, std::string>;

  InlineChecker() : thread_([this] { run(); }) {}
  ~InlineChecker() { join(); }
  InlineChecker(const InlineChecker&) = delete;
  InlineChecker& operator=(const InlineChecker&) = delete;

  // `data` must stay unchanged until join().
  void add(std::size_t index, const TensorRecord& tensor, const PieceRecord& piece,
           const void* data, std::uint64_t nbytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      jobs_.push_back(Job{index, &tensor, &piece, data, nbytes});
    }
    wake_.notify_one();
  }

  // Waits for every added piece; returns the problems found.
  std::vector<Problem> join() {
    if (thread_.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        done_ = true;
      }
      wake_.notify_one();
      thread_.join();
    }
    return std::move(problems_);
  }

 private:
  struct Job {
    std::size_t index;
    const TensorRecord* tensor;
    const PieceRecord* piece;
    const void* data;
    std::uint64_t nbytes;
  };

  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [this] { return done_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // done_ and drained
      std::deque<Job> batch;
      batch.swap(jobs_);
      lock.unlock();
      for (const Job& job : batch) {
        if (xxh3_64(job.data, job.nbytes) != job.piece->xxh3) {
          problems_.emplace_back(job.index, describe_piece(*job.tensor, *job.piece));
        }
      }
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> jobs_;
  bool done_ = false;
  std::vector<Problem> problems_;  // the thread's until join()
  std::thread thread_;             // last: starts once the rest exists
};

// XXH3 of shard `t`, hashed chunk by chunk as `ahead` reads it: each chunk
// is still in cache (L2/L3) when hashed, where hashing the whole shard
// once it has arrived (64 MiB) goes over it again from memory.
std::uint64_t hash_as_read(ReadAhead& ahead, std::size_t t, const TensorShard& shard) {
  Xxh3Stream stream;
  const std::byte* const data = shard.data();
  std::uint64_t hashed = 0;
  while (hashed < shard.nbytes()) {
    const std::uint64_t arrived = ahead.wait_more(t, hashed);
    stream.update(data + hashed, arrived - hashed);
    hashed = arrived;
  }
  return stream.digest();
}

bool checks_inline(Assignment::Pieces who, int rank) {
  for (int w : who) {
    if (w == -1 - rank) return true;
  }
  return false;
}

bool any_dedicated(Assignment::Pieces who) {
  for (int w : who) {
    if (w >= 0) return true;
  }
  return false;
}

void throw_if_problems(const Comm& comm, const std::vector<std::string>& problems) {
  collectively(comm, [&] {
    if (problems.empty()) return;
    std::string message = problems.front();
    if (problems.size() > 1) {
      message += " (and " + std::to_string(problems.size() - 1) + " more)";
    }
    throw Error(ErrorCode::kCorrupt, message);
  });
}

}  // namespace

OpenCheckpoint open_checkpoint(const std::filesystem::path& dir, MPI_Comm mpi_comm,
                               FileSystem& fs, bool check_structure, bool direct_io) {
  const Comm comm(mpi_comm);
  Coordinator coordinator(fs, comm, dir.parent_path());
  collectively(comm, [&] {
    if (comm.rank() != 0) return;
    if (!fs.is_directory(dir)) {
      throw Error(ErrorCode::kNotFound, "no checkpoint at " + dir.string() +
                                            " (not a directory)");
    }
    if (!fs.exists(dir / kManifestName)) {
      throw Error(ErrorCode::kNotFound,
                  "no checkpoint at " + dir.string() +
                      " (no manifest.json: an unfinished or foreign directory)");
    }
  });
  OpenCheckpoint out{dir, coordinator.read_manifest(dir), nullptr};
  mark_phase("manifest parse");
  collectively(comm, [&] {
    if (comm.rank() != 0) return;
    for (const auto& file : out.manifest.files) {
      const auto path = resolve_inside(dir, file.path, "manifest file list");
      if (!fs.exists(path)) {
        throw Error(ErrorCode::kCorrupt,
                    path.string() + " is missing (listed in the manifest)");
      }
      const std::uint64_t size = fs.file_size(path);
      if (size != file.size) {
        throw Error(ErrorCode::kCorrupt,
                    path.string() + " is " + std::to_string(size) +
                        " bytes but the manifest records " +
                        std::to_string(file.size) +
                        (size < file.size ? " (truncated)" : ""));
      }
    }
  });
  out.reader = collectively(comm, [&] {
    return open_reader(
        ReadContext{dir, out.manifest, mpi_comm, fs, check_structure, direct_io});
  });
  mark_phase("file sizes, reader");
  return out;
}

VerifyReport verify_checkpoint(const std::filesystem::path& dir, MPI_Comm mpi_comm,
                               FileSystem& fs, const VerifyProgress& progress) {
  const Comm comm(mpi_comm);
  // Verify checks all it can: the hdf5 reader also opens every dataset.
  const OpenCheckpoint checkpoint = open_checkpoint(dir, mpi_comm, fs, true);
  const Manifest& manifest = checkpoint.manifest;
  const Assignment who = assign_checks(manifest, nullptr, comm.size());
  const std::size_t steps = manifest.tensors.size() + 1;  // blobs: the last
  VerifyReport report;
  std::vector<std::string> problems;
  // One agreement for the whole pass: a rank whose read fails keeps joining
  // each tensor's (collective) read with nothing to read, so none waits.
  std::exception_ptr error;
  PageBytes buffer;
  const std::vector<std::uint32_t> calls = collective_check_reads(
      *checkpoint.reader, manifest.tensors, who, comm, [](std::size_t) { return true; });
  for (std::size_t t = 0; t < manifest.tensors.size(); ++t) {
    const std::uint32_t collective = calls.empty() ? 0 : calls[t];
    if (!error) {
      std::uint32_t reads = 0;
      try {
        check_pieces(*checkpoint.reader, manifest.tensors[t], who[t], comm.rank(), collective,
                     buffer, problems, report.pieces_checked, report.bytes_checked, reads);
      } catch (...) {
        error = std::current_exception();
        if (reads < collective) idle_read(*checkpoint.reader, manifest.tensors[t], collective - reads);
      }
    } else {
      idle_read(*checkpoint.reader, manifest.tensors[t], collective);
    }
    if (progress) progress(t + 1, steps);
  }
  try {
    agree_on_error(comm, error);
  } catch (const Error& e) {
    // A reader that finds the file's own structures damaged (HDF5's
    // metadata checksums) reports it; verify reports it as a problem.
    if (e.code() != ErrorCode::kCorrupt) throw;
    if (comm.rank() == 0) problems.push_back(e.what());
  }
  collectively(comm, [&] {
    for (std::size_t i = 0; i < manifest.blobs.size(); ++i) {
      if (static_cast<int>(i % comm.size()) != comm.rank()) continue;
      const BlobRecord& blob = manifest.blobs[i];
      const auto bytes = checkpoint.reader->read_blob(blob);
      if (bytes.size() != blob.nbytes || xxh3_64(bytes.data(), bytes.size()) != blob.xxh3) {
        problems.push_back("checksum mismatch in " + blob.file + " for blob \"" +
                           blob.name + "\" of rank " + std::to_string(blob.rank));
      }
      ++report.blobs_checked;
      report.bytes_checked += blob.nbytes;
    }
  });
  if (progress) progress(steps, steps);
  std::string joined;
  for (const auto& p : problems) joined += p + '\n';
  for (const auto& part : comm.allgather_bytes(joined)) {
    std::size_t start = 0;
    while (start < part.size()) {
      const std::size_t end = part.find('\n', start);
      report.problems.push_back(part.substr(start, end - start));
      start = end + 1;
    }
  }
  report.pieces_checked = comm.allreduce_sum(report.pieces_checked);
  report.blobs_checked = comm.allreduce_sum(report.blobs_checked);
  report.bytes_checked = comm.allreduce_sum(report.bytes_checked);
  return report;
}

void restore_state(const OpenCheckpoint& checkpoint, State& state,
                   const Comm& comm, bool verify, const LoadOptions& options,
                   bool exchange) {
  const Manifest& manifest = checkpoint.manifest;
  const LoadMatch match = match_state(checkpoint, state, comm, verify, options);
  mark_phase("match");
  const std::vector<TensorShard*>& shards = match.shards;
  const Assignment& who = match.who;
  // With `exchange`, the ranks read the file in contiguous parts and
  // exchange the bytes (exchange_read) where the reader allows it: every
  // shard has arrived when it returns. Otherwise a reader whose reads are
  // independent reads on a thread of its own from here on; this thread
  // checks each tensor once it has arrived. Where the thread cannot start,
  // this thread reads (as for other readers): a rank that threw here would
  // leave the others in the agreement below.
  const bool exchanged =
      exchange && exchange_read(*checkpoint.reader, manifest.tensors, shards, comm).used;
  std::optional<ReadAhead> ahead;
  if (!exchanged && checkpoint.reader->reads_independently()) {
    try {
      ahead.emplace(*checkpoint.reader, manifest.tensors, shards);
    } catch (const std::system_error&) {
      ahead.reset();
    }
  }
  std::vector<InlineChecker::Problem> found;  // (tensor index, problem)
  std::uint64_t pieces = 0, bytes = 0;
  std::exception_ptr error;  // one agreement for the pass, as in verify
  // Without a ReadAhead, small pieces are hashed here (a hand-off would
  // cost more than XXH3 of a few KiB) and the checker thread starts with
  // the first large one. With one, this thread hashes every piece as it
  // arrives: a shard read in chunks chunk by chunk, any other once read
  // (at most kChunkBytes, still in cache), while the next one is read.
  constexpr std::uint64_t kThreadFrom = 1u << 20;
  std::optional<InlineChecker> checker;
  PageBytes reread;  // check_pieces' buffer
  const std::vector<std::uint32_t> check_calls = collective_check_reads(
      *checkpoint.reader, manifest.tensors, who, comm,
      [&](std::size_t t) { return verify && any_dedicated(who[t]); });
  for (std::size_t t = 0; t < manifest.tensors.size(); ++t) {
    const TensorRecord& record = manifest.tensors[t];
    const bool dedicated = verify && any_dedicated(who[t]);
    // The reads of this tensor every rank makes when they are collective:
    // the load's, then check_pieces'.
    const std::uint32_t check_reads = check_calls.empty() ? 0 : check_calls[t];
    const std::uint32_t collective = 1 + check_reads;
    if (error) {
      idle_read(*checkpoint.reader, record, collective);
      continue;
    }
    // This tensor's reads on this thread, counted as each starts: a rank
    // that fails before one of them still joins it (collective readers).
    std::uint32_t reads = 0;
    try {
      TensorShard* shard = shards[t];
      std::optional<std::uint64_t> digest;  // of the shard, hashed as read
      if (exchanged) {
        // Read already.
      } else if (ahead) {
        if (verify && shard && ReadAhead::reads_in_chunks(shard->nbytes()) &&
            checks_inline(who[t], comm.rank())) {
          digest = hash_as_read(*ahead, t, *shard);
        }
        ahead->wait(t);
      } else {
        std::vector<Box> boxes;
        if (shard) boxes = shard->region().boxes(record.spec.shape);
        ++reads;
        checkpoint.reader->read(record, boxes, shard ? shard->data() : nullptr);
      }
      if (verify) {
        for (std::size_t k = 0; k < record.pieces.size(); ++k) {
          if (who[t][k] != -1 - comm.rank()) continue;
          const PieceRecord& p = record.pieces[k];
          if (!digest && !ahead && shard->nbytes() >= kThreadFrom) {
            if (!checker) checker.emplace();
            checker->add(t, record, p, shard->data(), shard->nbytes());
            continue;
          }
          if (!digest) digest = xxh3_64(shard->data(), shard->nbytes());
          if (*digest != p.xxh3) found.emplace_back(t, describe_piece(record, p));
        }
      }
      if (dedicated) {
        std::vector<std::string> mine;
        check_pieces(*checkpoint.reader, record, who[t], comm.rank(), check_reads, reread,
                     mine, pieces, bytes, reads);
        for (auto& p : mine) found.emplace_back(t, std::move(p));
      }
    } catch (...) {
      error = std::current_exception();
      // The reads of this tensor the other ranks still make when they are
      // collective: without a ReadAhead.
      if (!ahead && !exchanged && reads < collective) {
        idle_read(*checkpoint.reader, record, collective - reads);
      }
      ahead.reset();  // reads nothing more into the state
    }
  }
  ahead.reset();
  if (checker) {
    for (auto& p : checker->join()) found.push_back(std::move(p));
  }
  mark_phase("read, check");
  std::stable_sort(found.begin(), found.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> problems;
  for (auto& p : found) problems.push_back(std::move(p.second));
  agree_on_error(comm, error);
  throw_if_problems(comm, problems);
  mark_phase("agree");

  state.metadata() = manifest.metadata;
  for (const auto& [name, value] : manifest.scalars.items()) {
    state.set_scalar(name, scalar_from_json(value));
  }
  collectively(comm, [&] {
    state.clear_blobs();
    for (const auto& blob : manifest.blobs) {
      if (blob.rank != comm.rank()) continue;
      auto bytes = checkpoint.reader->read_blob(blob);
      if (verify && (bytes.size() != blob.nbytes ||
                     xxh3_64(bytes.data(), bytes.size()) != blob.xxh3)) {
        throw Error(ErrorCode::kCorrupt, "checksum mismatch in " + blob.file +
                                             " for blob \"" + blob.name +
                                             "\" of rank " + std::to_string(blob.rank));
      }
      state.set_blob(blob.name, std::move(bytes));
    }
  });
}

}  // namespace floe
