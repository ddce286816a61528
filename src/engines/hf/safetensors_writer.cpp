#include "engines/hf/safetensors_writer.hpp"

#include <algorithm>
#include <map>
#include <memory>

#include "core/comm.hpp"
#include "core/wire.hpp"
#include "engines/hf/collective_write.hpp"
#include "engines/hf/export_dir.hpp"
#include "io/read_only_file.hpp"
#include "engines/hf/safetensors_index.hpp"
#include "engines/hf/write_runs.hpp"
#include "floe/error.hpp"
#include "io/checksum.hpp"

namespace floe::hf {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kMaxRoundBytes = 1ull << 30;
constexpr std::uint64_t kMinRoundBytes = 64;
constexpr std::uint64_t kChecksumChunk = 8u << 20;

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

// Tensor indices each rank checksums: largest first, to the least loaded rank.
std::vector<int> checksum_owners(const ExportPlan& plan, int ranks) {
  std::vector<std::size_t> order(plan.tensors.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) {
                     return plan.tensors[a].nbytes > plan.tensors[b].nbytes;
                   });
  std::vector<std::uint64_t> load(static_cast<std::size_t>(ranks), 0);
  std::vector<int> owner(plan.tensors.size(), 0);
  for (const std::size_t i : order) {
    const auto least =
        std::min_element(load.begin(), load.end()) - load.begin();
    owner[i] = static_cast<int>(least);
    load[static_cast<std::size_t>(least)] += plan.tensors[i].nbytes + 1;
  }
  return owner;
}

// Reads back this rank's share of the tensors and returns every tensor's
// XXH3, gathered from all ranks.
std::vector<std::uint64_t> checksum_tensors(const ExportPlan& plan,
                                            const fs::path& dir,
                                            const Comm& comm) {
  const std::vector<int> owner = checksum_owners(plan, comm.size());
  WireWriter mine;
  collectively(comm, [&] {
    std::map<std::size_t, std::unique_ptr<ReadOnlyFile>> open;
    std::vector<unsigned char> buffer;
    for (std::size_t i = 0; i < plan.tensors.size(); ++i) {
      if (owner[i] != comm.rank()) continue;
      const PlannedTensor& t = plan.tensors[i];
      auto& file = open[t.file];
      if (!file) {
        file = std::make_unique<ReadOnlyFile>(dir / plan.files[t.file].name);
        if (file->size() != plan.files[t.file].size) {
          throw Error(ErrorCode::kIo,
                      file->path().string() + " is " +
                          std::to_string(file->size()) +
                          " bytes after writing, not " +
                          std::to_string(plan.files[t.file].size));
        }
      }
      Xxh3Stream hash;
      buffer.resize(std::min(t.nbytes, kChecksumChunk));
      for (std::uint64_t done = 0; done < t.nbytes; done += buffer.size()) {
        const std::uint64_t n =
            std::min<std::uint64_t>(buffer.size(), t.nbytes - done);
        file->read_exact(t.file_offset + done, n, buffer.data());
        hash.update(buffer.data(), n);
      }
      mine.u64(i);
      mine.u64(hash.digest());
    }
  });
  std::vector<std::uint64_t> out(plan.tensors.size(), 0);
  for (const std::string& part : comm.allgather_bytes(mine.bytes())) {
    WireReader r(part);
    while (!r.done()) {
      const std::uint64_t i = r.u64();
      out.at(i) = r.u64();
    }
  }
  return out;
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
  for (std::size_t f = 0; f < plan.files.size(); ++f) {
    const fs::path path = dir / plan.files[f].name;
    std::vector<WriteRun> runs;
    collectively(comm, [&] {
      runs = runs_for_file(plan, f, layout, state, comm.rank());
      fs.before_data_write(path, run_bytes(runs));
    });
    write_file_collectively(mpi_comm, path, plan.files[f].size, runs,
                            round_bytes, staging);
    out.files.push_back(plan.files[f].name);
  }
  if (!plan.index_json.empty()) {
    collectively(comm, [&] {
      if (comm.rank() == 0)
        fs.write_file(dir / kIndexFileName, plan.index_json);
    });
    out.files.push_back(kIndexFileName);
  }
  out.files.insert(out.files.end(), copied.begin(), copied.end());
  if (checksums) {
    out.xxh3 = checksum_tensors(plan, dir, comm);
  } else {
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
  }
  return out;
}

}  // namespace floe::hf
