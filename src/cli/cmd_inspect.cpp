// floe inspect: what a checkpoint's manifest says: who wrote it and when,
// its files, every tensor (dtype, global shape, pieces; with --regions each
// piece's rank, region and bytes), scalars, blobs and user metadata. Reads
// only manifest.json, so it also describes a checkpoint whose data files
// are damaged (floe verify checks those).
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/cli_common.hpp"
#include "cli/cli_format.hpp"
#include "cli/commands.hpp"
#include "commit/coordinator.hpp"
#include "commit/paths.hpp"
#include "core/comm.hpp"
#include "core/shape_text.hpp"
#include "floe/error.hpp"

namespace floe::cli {

const char kInspectSummary[] =
    "Show a checkpoint's manifest: tensors, pieces, scalars, blobs.";

namespace {

namespace fs = std::filesystem;

// Collective: rank 0 reads `dir`'s manifest, every rank gets it.
Manifest read_manifest(const fs::path& dir) {
  const auto fs = posix_file_system();
  const Comm comm(MPI_COMM_WORLD);
  collectively(comm, [&] {
    if (comm.rank() != 0) return;
    if (!fs->is_directory(dir)) {
      throw Error(ErrorCode::kNotFound,
                  "no checkpoint at " + dir.string() + " (not a directory)");
    }
    if (!fs->exists(dir / kManifestName)) {
      throw Error(ErrorCode::kNotFound,
                  "no checkpoint at " + dir.string() + " (no " + kManifestName +
                      ": an unfinished or foreign directory)");
    }
  });
  Coordinator coordinator(*fs, comm, dir.parent_path());
  return coordinator.read_manifest(dir);
}

void print_summary(const Manifest& m, const fs::path& dir) {
  std::uint64_t file_bytes = 0;
  for (const auto& f : m.files) file_bytes += f.size;
  print_table(out(), {{"checkpoint", dir.string()},
                      {"tag", m.tag},
                      {"engine", m.engine},
                      {"step", std::to_string(m.step)},
                      {"epoch", std::to_string(m.epoch)},
                      {"world size", std::to_string(m.world_size)},
                      {"created", m.created_utc},
                      {"floe version", m.floe_version},
                      {"format", std::to_string(m.format_version)}});
  out() << "\nfiles (" << m.files.size() << ", " << human_bytes(file_bytes)
        << "):\n";
  std::vector<std::vector<std::string>> files;
  for (const auto& f : m.files) {
    files.push_back({f.path, human_bytes(f.size),
                     "(" + std::to_string(f.size) + " bytes)"});
  }
  print_table(out(), files, "  ");
}

void print_tensors(const Manifest& m, bool regions) {
  std::uint64_t bytes = 0;
  for (const auto& t : m.tensors) bytes += t.spec.nbytes();
  out() << "\ntensors (" << m.tensors.size() << ", " << human_bytes(bytes)
        << "):\n";
  std::vector<std::vector<std::string>> table = {
      {"KEY", "DTYPE", "SHAPE", "PIECES", "SIZE"}};
  for (const auto& t : m.tensors) {
    table.push_back({t.spec.key(), std::string(dtype_name(t.spec.dtype)),
                     shape_text(t.spec.shape), std::to_string(t.pieces.size()),
                     human_bytes(t.spec.nbytes())});
  }
  if (!regions) {
    print_table(out(), table, "  ");
    return;
  }
  // One block per tensor: its line, then its pieces.
  const std::vector<std::string> lines = table_lines(table, "  ");
  out() << lines[0] << "\n";
  for (std::size_t i = 0; i < m.tensors.size(); ++i) {
    const TensorRecord& t = m.tensors[i];
    out() << lines[i + 1] << "\n";
    std::vector<std::vector<std::string>> pieces;
    for (const auto& p : t.pieces) {
      pieces.push_back({"rank " + std::to_string(p.rank), p.region.to_string(),
                        p.file, "offset " + std::to_string(p.offset),
                        "nbytes " + std::to_string(p.nbytes)});
    }
    print_table(out(), pieces, "      ");
    if (!t.dataset.empty()) out() << "      dataset " << t.dataset << "\n";
  }
}

void print_rest(const Manifest& m) {
  out() << "\nscalars (" << m.scalars.size() << "):\n";
  std::vector<std::vector<std::string>> scalars;
  for (const auto& [name, value] : m.scalars.items()) {
    scalars.push_back({name, "= " + value.dump()});
  }
  print_table(out(), scalars, "  ");

  out() << "\nblobs (" << m.blobs.size() << "):\n";
  std::vector<std::vector<std::string>> blobs;
  for (const auto& b : m.blobs) {
    blobs.push_back({"rank " + std::to_string(b.rank), b.name, b.file,
                     "offset " + std::to_string(b.offset),
                     "nbytes " + std::to_string(b.nbytes)});
  }
  print_table(out(), blobs, "  ");

  out() << "\nmetadata:";
  if (m.metadata.empty()) {
    out() << " (none)\n";
  } else {
    out() << "\n";
    std::string text = m.metadata.dump(2);
    std::size_t start = 0;
    while (start <= text.size()) {
      const std::size_t end = std::min(text.find('\n', start), text.size());
      out() << "  " << text.substr(start, end - start) << "\n";
      start = end + 1;
    }
  }
  if (!m.engine_info.empty()) {
    out() << "\nengine info: " << m.engine_info.dump() << "\n";
  }
}

}  // namespace

int run_inspect(const std::vector<std::string>& args) {
  CommandLine line;
  line.usage = "floe inspect CKPT [--regions] [--json]";
  line.summary = std::string(kInspectSummary) +
                 "\n\nCKPT is a checkpoint directory (DIR/global_step_<N>). "
                 "Only manifest.json is\nread; `floe verify` checks the data.";
  line.options.add_options()(
      "regions",
      "Also list each tensor's pieces: the rank that wrote it, "
      "its region, file, offset and size.")(
      "json", "Print the manifest itself (JSON).")(
      "checkpoint", po::value<std::string>()->required(), "The checkpoint.");
  line.positional.add("checkpoint", 1);
  const auto vm = parse_command_line(line, args);
  if (!vm) return 0;

  const fs::path dir = (*vm)["checkpoint"].as<std::string>();
  const Manifest manifest = read_manifest(dir);
  if (vm->count("json")) {
    out() << manifest.to_json().dump(2) << "\n";
    return 0;
  }
  print_summary(manifest, dir);
  print_tensors(manifest, vm->count("regions") > 0);
  print_rest(manifest);
  return 0;
}

}  // namespace floe::cli
