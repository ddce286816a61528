#include "engines/hf/safetensors_writer.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <set>

#include "core/comm.hpp"
#include "core/wire.hpp"
#include "engines/hf/collective_write.hpp"
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
constexpr std::uint64_t kMaxCopiedFile = 1ull << 30;

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

std::vector<std::string> copy_side_files(const std::vector<fs::path>& sources,
                                         const fs::path& dir,
                                         const ExportPlan& plan,
                                         FileSystem& fs) {
  std::set<std::string> taken = {"manifest.json", kIndexFileName};
  for (const auto& f : plan.files) taken.insert(f.name);
  std::vector<std::string> names;
  for (const auto& source : sources) {
    const std::string name = source.filename().string();
    if (name.empty() || name == "." || name == "..") {
      throw Error(
          ErrorCode::kInvalidArgument,
          "copy_files: \"" + source.string() + "\" does not name a file");
    }
    if (!taken.insert(name).second) {
      throw Error(ErrorCode::kInvalidArgument,
                  "copy_files: \"" + source.string() + "\" would overwrite " +
                      name + " in the export");
    }
    if (!fs.exists(source)) {
      throw Error(ErrorCode::kNotFound,
                  "copy_files: " + source.string() + " does not exist");
    }
    fs.write_file(dir / name, fs.read_file(source, kMaxCopiedFile));
    names.push_back(name);
  }
  return names;
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
                           const HfExportOptions& options, FileSystem& fs) {
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
  std::vector<std::string> copied;
  collectively(comm, [&] {
    if (comm.rank() == 0)
      copied = copy_side_files(options.copy_files, dir, plan, fs);
  });

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
  // Only rank 0 knows what it copied.
  WireWriter names;
  for (const auto& name : copied) names.str(name);
  const std::string all = comm.broadcast_bytes(names.bytes(), 0);
  for (WireReader r(all); !r.done();) out.files.push_back(r.str());
  out.xxh3 = checksum_tensors(plan, dir, comm);
  return out;
}

}  // namespace floe::hf
