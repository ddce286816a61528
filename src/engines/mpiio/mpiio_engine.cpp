#include "engines/mpiio/mpiio_engine.hpp"

#include "core/comm.hpp"
#include "engines/mpiio/extent_plan.hpp"
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
  // 1. Checksum what this rank writes, and tell every rank how much it is.
  RankContribution mine;
  std::vector<const TensorShard*> shards;  // this rank's written pieces
  for (const auto& tensor : ctx.layout.tensors) {
    for (const auto& piece : tensor.pieces) {
      if (piece.rank != ctx.rank || !piece.writer) continue;
      const TensorShard* shard = ctx.state.find(tensor.spec.key());
      mine.piece_xxh3.push_back(xxh3_64(shard->data(), shard->nbytes()));
      shards.push_back(shard);
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

  // 2. Every rank computes the same plan; each writes its own extent.
  const std::uint64_t alignment = config().options.get_count("alignment");
  ExtentPlan plan = plan_extents(ctx.layout, all, kDataFile, alignment);
  std::vector<IoRun> runs;
  std::size_t next = 0;
  for (const auto& tensor : plan.tensors) {
    for (const auto& piece : tensor.pieces) {
      if (piece.rank == ctx.rank && piece.nbytes > 0) {
        runs.push_back(IoRun{piece.offset, shards[next]->data(), piece.nbytes});
      }
      if (piece.rank == ctx.rank) ++next;
    }
  }
  for (const auto& blob : plan.blobs) {
    if (blob.rank == ctx.rank && blob.nbytes > 0) {
      runs.push_back(IoRun{blob.offset, ctx.state.blob(blob.name)->data(), blob.nbytes});
    }
  }
  MpiFile file(ctx.comm, ctx.dir / kDataFile, MpiFile::Mode::kCreate,
               mpiio_hints(config().options));
  file.write_all(ctx.comm, runs);
  file.sync();
  file.close();

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
