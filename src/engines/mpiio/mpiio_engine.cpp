#include "engines/mpiio/mpiio_engine.hpp"

#include <system_error>
#include <thread>

#include "core/comm.hpp"
#include "core/phase_log.hpp"
#include "engines/mpiio/extent_plan.hpp"
#include "floe/error.hpp"
#include "io/checksum.hpp"
#include "io/mpi_file.hpp"

namespace floe {
namespace {

std::string power_of_two(const nlohmann::json& value) {
  const auto v = value.get<std::uint64_t>();
  if (v == 0 || (v & (v - 1)) != 0) return "must be a power of two";
  if (v > (1ull << 30)) return "must be at most 1GiB";
  return "";
}

std::string cb_mode(const nlohmann::json& value) {
  const auto v = value.get<std::string>();
  if (v == "automatic" || v == "enable" || v == "disable") return "";
  return "must be automatic, enable or disable";
}

std::vector<OptionSpec> mpiio_options() {
  return {
      {"alignment", OptionKind::kBytes, 4096,
       "each rank's extent starts at a multiple of this (power of two; use the "
       "file system's stripe size on Lustre/GPFS)",
       power_of_two},
      {"cb_buffer_size", OptionKind::kBytes, 0,
       "MPI-IO hint cb_buffer_size (0: MPI's default)"},
      {"romio_cb_write", OptionKind::kString, "automatic",
       "MPI-IO hint romio_cb_write: automatic, enable or disable", cb_mode},
      {"striping_factor", OptionKind::kCount, 0,
       "MPI-IO hint striping_factor: stripe count of new files (0: unset)"},
      {"striping_unit", OptionKind::kBytes, 0,
       "MPI-IO hint striping_unit: stripe size of new files (0: unset)"},
  };
}

// Checksums `shards` into `out` on a thread of its own from construction
// to finish() (the destructor joins it, also when the write throws).
class ChecksumTask {
 public:
  // Where no thread can start (a process at its limit of threads), the
  // checksums are computed by finish() instead: a rank that threw here
  // would leave the others in the collective open that follows.
  ChecksumTask(const std::vector<const TensorShard*>& shards,
               std::vector<std::uint64_t>& out)
      : shards_(shards), out_(out) {
    try {
      thread_ = std::thread([this] { hash(); });
    } catch (const std::system_error&) {
      // finish() hashes.
    }
  }
  ~ChecksumTask() {
    if (thread_.joinable()) thread_.join();
  }
  ChecksumTask(const ChecksumTask&) = delete;
  ChecksumTask& operator=(const ChecksumTask&) = delete;

  // The checksums are in `out` when it returns.
  void finish() {
    if (thread_.joinable()) {
      thread_.join();
    } else {
      hash();
    }
  }

 private:
  void hash() {
    for (std::size_t i = 0; i < shards_.size(); ++i) {
      out_[i] = xxh3_64(shards_[i]->data(), shards_[i]->nbytes());
    }
  }

  const std::vector<const TensorShard*>& shards_;
  std::vector<std::uint64_t>& out_;
  std::thread thread_;
};

}  // namespace

MpiInfo mpiio_hints(const EngineOptions& options) {
  MpiInfo info;
  auto set_count = [&](const char* key) {
    if (const auto v = options.get_count(key)) info.set(key, std::to_string(v));
  };
  set_count("cb_buffer_size");
  set_count("striping_factor");
  set_count("striping_unit");
  if (options.get_string("romio_cb_write") != "automatic") {
    info.set("romio_cb_write", options.get_string("romio_cb_write"));
  }
  return info;
}

WriteResult MpiioEngine::write_state(const SaveContext& ctx) {
  const Comm comm(ctx.comm);
  // 1. Tell every rank how much this rank writes: the layout has the
  // pieces' sizes, the exchange adds the blobs. The pieces' checksums are
  // not needed for the plan: they are computed while the data is written.
  RankContribution mine;
  std::vector<const TensorShard*> shards;  // this rank's written pieces
  for (const auto& tensor : ctx.layout.tensors) {
    for (const auto& piece : tensor.pieces) {
      if (piece.rank != ctx.rank || !piece.writer) continue;
      shards.push_back(ctx.state.find(tensor.spec.key()));
    }
  }
  for (const auto& [name, bytes] : ctx.state.blobs()) {
    mine.blobs.push_back(
        BlobRecord{ctx.rank, name, "", 0, bytes.size(), xxh3_64(bytes.data(), bytes.size())});
  }
  std::vector<RankContribution> all;
  for (const auto& bytes : comm.allgather_bytes(mine.encode())) {
    all.push_back(RankContribution::decode(bytes));
  }
  mark_phase("write: sizes");

  // 2. Every rank computes the same plan (rank 0 with the records of every
  // piece, for the manifest); each writes its own extent while a second
  // thread checksums the same (unchanging) memory.
  const std::uint64_t alignment = config().options.get_count("alignment");
  ExtentPlan plan =
      plan_extents(ctx.layout, all, kDataFile, alignment, ctx.rank, ctx.rank == 0);
  // plan.offsets has one offset per shard: both follow this rank's writer
  // pieces in layout order.
  std::vector<IoRun> runs;
  runs.reserve(shards.size() + ctx.state.blobs().size());
  for (std::size_t i = 0; i < shards.size(); ++i) {
    if (shards[i]->nbytes() > 0) {
      runs.push_back(IoRun{plan.offsets[i], shards[i]->data(), shards[i]->nbytes()});
    }
  }
  for (const auto& blob : plan.blobs) {
    if (blob.rank == ctx.rank && blob.nbytes > 0) {
      runs.push_back(IoRun{blob.offset, ctx.state.blob(blob.name)->data(), blob.nbytes});
    }
  }
  mark_phase("write: plan");
  mine.piece_xxh3.assign(shards.size(), 0);
  {
    ChecksumTask sums(shards, mine.piece_xxh3);
    MpiFile file(ctx.comm, ctx.dir / kDataFile, MpiFile::Mode::kCreate,
                 mpiio_hints(config().options));
    // Rank 0 reserves the whole file's blocks first (FileSystem::reserve),
    // so that the ranks' extents, written at once, lie in file order
    // rather than in pieces allocated as each rank's writeback came.
    collectively(comm, [&] {
      if (ctx.rank == 0) ctx.fs.reserve(ctx.dir / kDataFile, 0, plan.file_size);
    });
    // Agreed on before the collective sync and close, which a rank leaving
    // early would make the others wait in.
    std::exception_ptr error;
    try {
      file.write_all(ctx.comm, std::move(runs));
    } catch (...) {
      error = std::current_exception();
    }
    agree_on_error(comm, error);
    mark_phase("write: data");
    file.sync();
    file.close();
    mark_phase("write: sync");
    sums.finish();
  }

  // 3. The checksums, to rank 0, into its records: rank r's pieces take
  // r's checksums in layout order, as plan_extents placed them.
  mine.blobs.clear();
  const auto sums = comm.gather_bytes(mine.encode(), 0);
  for (std::size_t r = 0; r < sums.size(); ++r) {
    all[r].piece_xxh3 = RankContribution::decode(sums[r]).piece_xxh3;
  }
  std::vector<std::size_t> taken(all.size(), 0);
  for (auto& tensor : plan.tensors) {
    for (auto& piece : tensor.pieces) {
      const auto& rank_sums = all.at(static_cast<std::size_t>(piece.rank)).piece_xxh3;
      if (taken[piece.rank] >= rank_sums.size()) {
        throw Error(ErrorCode::kInternal, "rank " + std::to_string(piece.rank) +
                                              " sent too few checksums");
      }
      piece.xxh3 = rank_sums[taken[piece.rank]++];
    }
  }

  mark_phase("write: checksums");
  WriteResult result;
  result.tensors = std::move(plan.tensors);
  result.blobs = std::move(plan.blobs);
  result.files = {kDataFile};
  result.engine_info = {{"data_file", kDataFile}, {"alignment", alignment}};
  return result;
}

EngineInfo mpiio_engine_info() {
  EngineInfo info;
  info.name = MpiioEngine::kName;
  info.description = "raw MPI-IO into one data file, one aligned extent per rank";
  info.resumable = true;
  info.options = mpiio_options();
  info.factory = [](TrainerView& trainer, const CheckpointConfig& config) {
    return std::unique_ptr<CheckpointEngine>(new MpiioEngine(trainer, config));
  };
  info.reader = open_mpiio_reader;
  return info;
}

}  // namespace floe
