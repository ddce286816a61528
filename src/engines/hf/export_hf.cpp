// floe::export_hf: the hf export outside the commit protocol, straight into
// a directory (what `floe export-hf` builds on).
#include <regex>

#include "core/comm.hpp"
#include "engines/hf/safetensors_index.hpp"
#include "engines/hf/safetensors_writer.hpp"
#include "floe/error.hpp"
#include "floe/hf.hpp"
#include "floe/layout.hpp"

namespace floe {

HfExportSummary export_hf(const State& state, const std::filesystem::path& dir,
                          MPI_Comm mpi_comm, const HfExportOptions& options) {
  const Comm comm(mpi_comm);
  const GlobalLayout layout = exchange_layout(state, mpi_comm);
  const auto fs = posix_file_system();
  collectively(comm, [&] {
    if (comm.rank() != 0) return;
    fs->create_directories(dir);
    static const std::regex kExportFile(
        R"(model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?)");
    for (const std::string& name : fs->list(dir)) {
      if (std::regex_match(name, kExportFile)) {
        throw Error(ErrorCode::kInvalidArgument,
                    "hf export: " + dir.string() +
                        " already holds an export (" + name +
                        "); remove it or choose another directory");
      }
    }
  });
  const hf::ExportOutcome outcome =
      hf::write_export(layout, state, mpi_comm, dir, options, *fs);
  HfExportSummary summary;
  summary.files = outcome.files;
  summary.total_size = outcome.plan.total_size;
  summary.tensors = outcome.plan.tensors.size();
  return summary;
}

}  // namespace floe
