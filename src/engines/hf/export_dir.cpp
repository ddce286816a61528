#include "engines/hf/export_dir.hpp"

#include <regex>
#include <set>

#include "core/wire.hpp"
#include "engines/hf/safetensors_index.hpp"
#include "floe/error.hpp"

namespace floe::hf {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kMaxCopiedFile = 1ull << 30;

}  // namespace

bool is_export_file_name(const std::string& name) {
  static const std::regex kExportFile(
      R"(model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?)");
  return std::regex_match(name, kExportFile);
}

void prepare_export_dir(const Comm& comm, const fs::path& dir, bool overwrite,
                        FileSystem& fs) {
  collectively(comm, [&] {
    if (comm.rank() != 0) return;
    fs.create_directories(dir);
    for (const std::string& name : fs.list(dir)) {
      if (!is_export_file_name(name)) continue;
      if (!overwrite) {
        throw Error(ErrorCode::kInvalidArgument,
                    "hf export: " + dir.string() +
                        " already holds an export (" + name +
                        "); remove it or choose another directory");
      }
      fs.remove_all(dir / name);
    }
  });
}

std::vector<std::string> copy_files_on_rank0(
    const Comm& comm, const std::vector<fs::path>& sources, const fs::path& dir,
    const ExportPlan& plan, FileSystem& fs) {
  std::vector<std::string> names;
  collectively(comm, [&] {
    if (comm.rank() != 0) return;
    std::set<std::string> taken = {"manifest.json", kIndexFileName};
    for (const auto& f : plan.files) taken.insert(f.name);
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
  });
  // Only rank 0 knows what it copied.
  WireWriter w;
  for (const auto& name : names) w.str(name);
  const std::string all = comm.broadcast_bytes(w.bytes(), 0);
  names.clear();
  for (WireReader r(all); !r.done();) names.push_back(r.str());
  return names;
}

}  // namespace floe::hf
