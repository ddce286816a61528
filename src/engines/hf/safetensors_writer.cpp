#include "engines/hf/safetensors_writer.hpp"

#include <algorithm>
#include <functional>
#include <optional>

#include "core/comm.hpp"
#include "engines/hf/collective_write.hpp"
#include "engines/hf/export_dir.hpp"
#include "engines/hf/safetensors_index.hpp"
#include "engines/hf/tensor_checksums.hpp"
#include "engines/hf/write_runs.hpp"
#include "floe/error.hpp"
#include "io/checksum.hpp"

namespace floe::hf {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kMaxRoundBytes = 1ull << 30;
constexpr std::uint64_t kMinRoundBytes = 64;

// One hash of everything the plan puts on disk; equal on every rank when
// the ranks agree on the plan.
std::uint64_t plan_digest(const ExportPlan& plan) {
  Xxh3Stream h;
  for (const auto& f : plan.files) {
    h.update(f.name.data(), f.name.size());
    h.update(f.header.data(), f.header.size());
  }
  h.update(plan.index_json.data(), plan.index_json.size());
  return h.digest();
}

}  // namespace

ExportOutcome write_export(const GlobalLayout& layout, const State& state,
                           MPI_Comm mpi_comm, const fs::path& dir,
                           const HfExportOptions& options, FileSystem& fs,
                           bool checksums) {
  const Comm comm(mpi_comm);
  std::vector<TensorSpec> specs;
  for (const auto& t : layout.tensors) specs.push_back(t.spec);
  ExportOutcome out;
  out.plan = collectively(comm, [&] { return plan_export(specs, options); });
  const ExportPlan& plan = out.plan;
  const std::uint64_t digest = plan_digest(plan);
  if (comm.allreduce_min(digest) != comm.allreduce_max(digest)) {
    throw Error(
        ErrorCode::kInvalidArgument,
        "hf export: the ranks planned different files (is the rename function "
        "the same on every rank?)");
  }
  const std::vector<std::string> copied =
      copy_files_on_rank0(comm, options.copy_files, dir, plan, fs);

  const std::uint64_t round_bytes =
      std::clamp(options.round_bytes, kMinRoundBytes, kMaxRoundBytes);
  std::vector<unsigned char> staging;
  // The checksums from the writers' buffers are computed while the first
  // file is written (the CPU is idle while the device works).
  std::optional<TensorChecksums> sums;
  if (checksums) sums.emplace(plan, layout, state, comm);
  for (std::size_t f = 0; f < plan.files.size(); ++f) {
    const fs::path path = dir / plan.files[f].name;
    std::vector<WriteRun> runs;
    collectively(comm, [&] {
      runs = runs_for_file(plan, f, layout, state, comm.rank());
      fs.before_data_write(path, run_bytes(runs));
    });
    std::function<void()> meanwhile;
    if (sums && f == 0) meanwhile = [&] { sums->hash_buffers(); };
    write_file_collectively(mpi_comm, path, plan.files[f].size, runs,
                            round_bytes, staging, meanwhile);
    out.files.push_back(plan.files[f].name);
  }
  if (sums && plan.files.empty()) sums->hash_buffers();
  if (!plan.index_json.empty()) {
    collectively(comm, [&] {
      if (comm.rank() == 0)
        fs.write_file(dir / kIndexFileName, plan.index_json);
    });
    out.files.push_back(kIndexFileName);
  }
  out.files.insert(out.files.end(), copied.begin(), copied.end());
  collectively(comm, [&] {
    if (comm.rank() != 0) return;
    for (const auto& f : plan.files) {
      const std::uint64_t size = fs.file_size(dir / f.name);
      if (size != f.size) {
        throw Error(ErrorCode::kIo, (dir / f.name).string() + " is " +
                                        std::to_string(size) +
                                        " bytes after writing, not " +
                                        std::to_string(f.size));
      }
    }
  });
  if (sums) out.xxh3 = sums->finish(dir);
  return out;
}

}  // namespace floe::hf
