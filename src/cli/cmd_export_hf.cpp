// floe export-hf: converts a committed checkpoint's model tensors into a
// Hugging Face directory (model.safetensors, or shards and an index) with
// floe::export_checkpoint_hf, streamed in bounded slices at any rank count.
// Every check of the command line, the output directory and the copied
// files happens before anything is written.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/cli_common.hpp"
#include "cli/cli_format.hpp"
#include "cli/commands.hpp"
#include "core/comm.hpp"
#include "floe/config.hpp"
#include "floe/error.hpp"
#include "floe/hf.hpp"

namespace floe::cli {

const char kExportHfSummary[] =
    "Export a checkpoint's model tensors as Hugging Face safetensors.";

namespace {

namespace fs = std::filesystem;

const char kExportHfHelp[] =
    "\n\nCKPT is a committed checkpoint directory (DIR/global_step_<N>) of a "
    "resumable\nengine (hdf5, mpiio), saved at any world size. DIR gets "
    "model.safetensors, or\nmodel-0000k-of-0000n.safetensors and "
    "model.safetensors.index.json when the\ntensors exceed --max-shard-size "
    "(split greedily in checkpoint order, as\ntransformers' save_pretrained "
    "does). Optimizer state is never exported. Run\nunder mpirun to share the "
    "work: each rank holds at most --buffer-size bytes of data\n(more when "
    "casting), whatever the model's size. DIR must be\nempty or new; "
    "with --force an export already there is replaced (other files\nstay). "
    "Exit status: 0 written, 1 error, 2 usage.";

std::uint64_t size_option(const po::variables_map& vm, const char* name) {
  try {
    return parse_count(vm[name].as<std::string>(), std::string("--") + name,
                       true);
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
}

HfExportOptions parse_export_options(const po::variables_map& vm) {
  HfExportOptions options;
  options.max_shard_size = size_option(vm, "max-shard-size");
  if (options.max_shard_size == 0)
    throw UsageError("--max-shard-size must be > 0 (e.g. 5GB, 500MB)");
  options.round_bytes = size_option(vm, "buffer-size");
  if (options.round_bytes < 64 || options.round_bytes > (1ull << 30))
    throw UsageError("--buffer-size must be between 64 and 1GiB");
  if (vm.count("dtype")) {
    const std::string name = vm["dtype"].as<std::string>();
    for (const DType d :
         {DType::kF16, DType::kBF16, DType::kF32, DType::kF64}) {
      if (dtype_name(d) == name) options.dtype = d;
    }
    if (!options.dtype) {
      throw UsageError("unknown --dtype '" + name +
                       "' (expected F16, BF16, F32 or F64)");
    }
  }
  if (vm.count("strip-prefix")) {
    const std::string prefix = vm["strip-prefix"].as<std::string>();
    options.rename = [prefix](const std::string& name) {
      return name.compare(0, prefix.size(), prefix) == 0
                 ? name.substr(prefix.size())
                 : name;
    };
  }
  if (vm.count("metadata")) {
    for (const auto& item : vm["metadata"].as<std::vector<std::string>>()) {
      const auto eq = item.find('=');
      if (eq == std::string::npos || eq == 0) {
        throw UsageError("--metadata '" + item + "' is not KEY=VALUE");
      }
      options.metadata[item.substr(0, eq)] = item.substr(eq + 1);
    }
  }
  if (vm.count("copy")) {
    for (const auto& f : vm["copy"].as<std::vector<std::string>>())
      options.copy_files.emplace_back(f);
  }
  options.overwrite = vm.count("force") > 0;
  return options;
}

// Rank 0 checks what the command line names on disk; every rank gets the
// same verdict. Nothing is written here.
void check_paths(const fs::path& checkpoint, const fs::path& out,
                 const HfExportOptions& options, const Comm& comm) {
  collectively(comm, [&] {
    if (comm.rank() != 0) return;
    std::error_code ec;
    if (fs::exists(out, ec) && !fs::is_directory(out, ec)) {
      throw Error(ErrorCode::kInvalidArgument,
                  "--out " + out.string() + " exists and is not a directory");
    }
    if (fs::exists(out, ec) && fs::equivalent(out, checkpoint, ec)) {
      throw Error(ErrorCode::kInvalidArgument,
                  "--out " + out.string() +
                      " is the checkpoint itself; choose another directory");
    }
    if (!options.overwrite && fs::is_directory(out, ec)) {
      auto it = fs::directory_iterator(out, ec);
      if (!ec && it != fs::directory_iterator()) {
        throw Error(ErrorCode::kInvalidArgument,
                    "--out " + out.string() + " is not empty (it holds " +
                        it->path().filename().string() +
                        "); choose an empty or new directory, or pass --force "
                        "to replace an export there");
      }
    }
    for (const auto& f : options.copy_files) {
      if (!fs::is_regular_file(f, ec)) {
        throw Error(ErrorCode::kNotFound,
                    "--copy " + f.string() + ": no such file");
      }
    }
  });
}

}  // namespace

int run_export_hf(const std::vector<std::string>& args) {
  CommandLine line;
  line.usage =
      "floe export-hf CKPT --out DIR [--max-shard-size S] [--dtype DT] "
      "[--force] [options]";
  line.summary = std::string(kExportHfSummary) + kExportHfHelp;
  line.options.add_options()(
      "out,o", po::value<std::string>()->required(),
      "The export directory (created; must be empty unless --force).")(
      "max-shard-size", po::value<std::string>()->default_value("5GB"),
      "Most tensor bytes per file, decimal units as transformers counts them "
      "(5GB = 5,000,000,000; also 500MB, 2GiB, 1000000).")(
      "dtype", po::value<std::string>(),
      "Cast floating-point tensors to F16, BF16, F32 or F64 (round to "
      "nearest even); integer and bool tensors keep theirs. Default: keep.")(
      "strip-prefix", po::value<std::string>(),
      "Remove this prefix from the tensor names that have it (e.g. "
      "\"module.\").")(
      "metadata", po::value<std::vector<std::string>>()->composing(),
      "KEY=VALUE added to every file's __metadata__ (beside format: pt); "
      "repeatable.")(
      "copy", po::value<std::vector<std::string>>()->composing(),
      "A file to copy into DIR under its own name (config.json, "
      "tokenizer.json, ...); repeatable.")(
      "buffer-size", po::value<std::string>()->default_value("32MiB"),
      "Staging memory per rank: it reads a slice of a quarter of it while "
      "the previous ones are written.")(
      "force", "Replace an export already in DIR.")(
      "checkpoint", po::value<std::string>()->required(), "The checkpoint.");
  line.positional.add("checkpoint", 1);
  const auto vm = parse_command_line(line, args);
  if (!vm) return 0;
  const HfExportOptions options = parse_export_options(*vm);
  const fs::path checkpoint = (*vm)["checkpoint"].as<std::string>();
  const fs::path dir = (*vm)["out"].as<std::string>();
  const Comm comm(MPI_COMM_WORLD);
  check_paths(checkpoint, dir, options, comm);

  const auto start = std::chrono::steady_clock::now();
  const HfExportSummary summary =
      export_checkpoint_hf(checkpoint, dir, MPI_COMM_WORLD, options);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  char rate[96];
  std::snprintf(rate, sizeof rate, "%.2f s (%s/s, %s)", seconds,
                human_bytes(static_cast<std::uint64_t>(
                                summary.total_size / std::max(seconds, 1e-6)))
                    .c_str(),
                counted(static_cast<std::uint64_t>(comm.size()), "rank").c_str());
  out() << "export-hf " << checkpoint.string() << " -> " << dir.string()
        << ": " << counted(summary.tensors, "tensor") << ", "
        << human_bytes(summary.total_size) << " (" << summary.total_size
        << " bytes) in " << rate << "\n";
  for (const auto& f : summary.files) out() << "  " << f << "\n";
  return 0;
}

}  // namespace floe::cli
