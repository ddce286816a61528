// floe verify: reads every piece and blob of a checkpoint once, split across
// the ranks under mpirun, and checks each checksum against the manifest.
// Exit 0 when all match; 1 with one line per problem (naming the file and
// the tensor or blob), or with the error when the checkpoint cannot be read
// at all (no manifest, a missing or truncated file).
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/cli_common.hpp"
#include "cli/cli_format.hpp"
#include "cli/commands.hpp"
#include "core/comm.hpp"
#include "floe/checkpoint.hpp"
#ifdef FLOE_CLI_HF
#include "cli/hf_dir.hpp"
#endif

namespace floe::cli {

const char kVerifySummary[] =
    "Check every checksum of a checkpoint (split across ranks).";

int run_verify(const std::vector<std::string>& args) {
  CommandLine line;
  line.usage = "floe verify CKPT";
  line.summary = std::string(kVerifySummary) +
                 "\n\nCKPT is a checkpoint directory (DIR/global_step_<N>). "
                 "Run under mpirun to\nshare the reading. Exit status: 0 "
                 "when every checksum matches, 1 otherwise.\n\nCKPT may also be Hugging "
                 "Face weights (a directory with model.safetensors or\n"
                 "model.safetensors.index.json and no manifest.json, or one "
                 "such file): every\nfile's header and offsets and the index "
                 "are checked as safetensors' reader\nchecks them; each "
                 "problem names the file and the rule broken.";
  line.options.add_options()("checkpoint", po::value<std::string>()->required(),
                             "The checkpoint.");
  line.positional.add("checkpoint", 1);
  const auto vm = parse_command_line(line, args);
  if (!vm) return 0;

  const std::filesystem::path dir = (*vm)["checkpoint"].as<std::string>();
#ifdef FLOE_CLI_HF
  // A Hugging Face directory (no manifest.json): the safe reader checks it.
  // Rank 0 decides, so every rank takes the same (collective) path.
  const Comm world(MPI_COMM_WORLD);
  if (world.broadcast_bytes(is_hf_weights(dir) ? "h" : "c", 0) == "h") {
    return run_verify_hf(dir);
  }
#endif
  const auto start = std::chrono::steady_clock::now();
  VerifyReport report;
  {
    ProgressLine progress("verify " + dir.filename().string());
    report = verify_checkpoint(dir, MPI_COMM_WORLD, *posix_file_system(),
                               [&](std::size_t done, std::size_t total) {
                                 progress.update(done, total, "tensors");
                               });
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();

  int ranks = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  char rate[64];
  std::snprintf(rate, sizeof(rate), "in %.2f s (%s/s, %s)", seconds,
                human_bytes(static_cast<std::uint64_t>(report.bytes_checked /
                                                       std::max(seconds, 1e-6)))
                    .c_str(),
                counted(static_cast<std::uint64_t>(ranks), "rank").c_str());
  for (const auto& problem : report.problems) out() << problem << "\n";
  out() << "verify " << dir.string() << ": " << (report.ok() ? "ok" : "FAILED")
        << "\n  " << counted(report.pieces_checked, "piece") << ", "
        << counted(report.blobs_checked, "blob") << ", "
        << human_bytes(report.bytes_checked) << " (" << report.bytes_checked
        << " bytes) checked " << rate << "\n";
  if (report.ok()) return 0;
  err() << "floe: verify: " + counted(report.problems.size(), "problem") + "\n";
  return 1;
}

}  // namespace floe::cli
