// floe::export_hf: the hf export outside the commit protocol, straight into
// a directory, from the ranks' states (export_checkpoint.cpp does the same
// from a saved checkpoint). No checksums: nothing records them.
#include "core/comm.hpp"
#include "engines/hf/export_dir.hpp"
#include "engines/hf/shard_plan.hpp"
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
  // Options are checked (the plan made once) before the directory is touched.
  std::vector<TensorSpec> specs;
  for (const auto& t : layout.tensors) specs.push_back(t.spec);
  collectively(comm, [&] { hf::plan_export(specs, options); });
  hf::prepare_export_dir(comm, dir, options.overwrite, *fs);
  const hf::ExportOutcome outcome =
      hf::write_export(layout, state, mpi_comm, dir, options, *fs,
                       /*checksums=*/false);
  HfExportSummary summary;
  summary.files = outcome.files;
  summary.total_size = outcome.plan.total_size;
  summary.tensors = outcome.plan.tensors.size();
  return summary;
}

}  // namespace floe
