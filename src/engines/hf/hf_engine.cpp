// The "hf" engine: exports the model tensors as Hugging Face safetensors
// (export only: not resumable). Its checkpoints are ordinary HF directories
// plus Floe's manifest.json, which transformers ignores. The manifest names
// each tensor's file, byte offset and checksum, as an mpiio manifest does,
// so the mpiio reader reads them: `floe verify` checks the export's bytes,
// `floe diff` compares it with a training checkpoint.
#include <sstream>

#include "engines/hf/safetensors_index.hpp"
#include "engines/hf/safetensors_writer.hpp"
#include "engines/mpiio/mpiio_engine.hpp"
#include "floe/error.hpp"
#include "floe/hf.hpp"
#include "floe/registry.hpp"

namespace floe {
namespace {

constexpr DType kCastTargets[] = {DType::kF16, DType::kBF16, DType::kF32,
                                  DType::kF64};

std::string check_dtype(const nlohmann::json& value) {
  const std::string name = value.get<std::string>();
  if (name.empty()) return "";
  for (const DType d : kCastTargets) {
    if (dtype_name(d) == name) return "";
  }
  return "must be empty (keep each tensor's dtype) or one of F16, BF16, F32, "
         "F64";
}

std::string check_positive(const nlohmann::json& value) {
  return value.get<std::uint64_t>() > 0 ? "" : "must be > 0";
}

std::vector<std::filesystem::path> split_files(const std::string& list) {
  std::vector<std::filesystem::path> out;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) {
    const auto first = item.find_first_not_of(" \t");
    if (first == std::string::npos) continue;
    out.emplace_back(
        item.substr(first, item.find_last_not_of(" \t") - first + 1));
  }
  return out;
}

HfExportOptions options_from(const EngineOptions& o) {
  HfExportOptions out;
  out.max_shard_size = o.get_count("max_shard_size");
  if (const std::string dtype = o.get_string("dtype"); !dtype.empty()) {
    out.dtype = parse_dtype(dtype);
  }
  if (std::string prefix = o.get_string("strip_prefix"); !prefix.empty()) {
    out.rename = [prefix](const std::string& name) {
      return name.compare(0, prefix.size(), prefix) == 0
                 ? name.substr(prefix.size())
                 : name;
    };
  }
  out.copy_files = split_files(o.get_string("copy_files"));
  return out;
}

class HfEngine final : public CheckpointEngine {
 public:
  HfEngine(TrainerView& trainer, CheckpointConfig config)
      : CheckpointEngine(trainer, std::move(config)),
        options_(options_from(this->config().options)) {}

  std::string_view name() const override { return "hf"; }
  bool resumable() const override { return false; }

 protected:
  // The manifest describes the safetensors data as the files hold it: one
  // piece per tensor (rank 0, the whole tensor, its absolute offset), with
  // the XXH3 of its bytes as the file holds them (TensorChecksums).
  // Optimizer tensors and blobs are not exported.
  WriteResult write_state(const SaveContext& ctx) override {
    const hf::ExportOutcome outcome = hf::write_export(
        ctx.layout, ctx.state, ctx.comm, ctx.dir, options_, ctx.fs);
    WriteResult result;
    nlohmann::json renamed = nlohmann::json::object();
    for (std::size_t i = 0; i < outcome.plan.tensors.size(); ++i) {
      const hf::PlannedTensor& t = outcome.plan.tensors[i];
      TensorRecord record;
      record.spec =
          TensorSpec{TensorGroup::kModel, t.name, "", t.dtype, t.shape};
      record.pieces.push_back(PieceRecord{
          0, Region::whole(t.shape), outcome.plan.files[t.file].name,
          t.file_offset, t.nbytes, outcome.xxh3[i]});
      result.tensors.push_back(std::move(record));
      const std::string& source = ctx.layout.tensors[t.source].spec.name;
      if (source != t.name) renamed[t.name] = source;
    }
    result.files = outcome.files;
    result.engine_info = {
        {"format", "safetensors"},
        {"index", outcome.plan.files.size() > 1
                      ? nlohmann::json(hf::kIndexFileName)
                      : nlohmann::json(nullptr)},
        {"total_size", outcome.plan.total_size},
        {"max_shard_size", options_.max_shard_size},
        {"dtype",
         options_.dtype ? std::string(dtype_name(*options_.dtype)) : ""},
        {"renamed_from", renamed},
    };
    return result;
  }

 private:
  HfExportOptions options_;
};

}  // namespace

EngineInfo hf_engine_info() {
  EngineInfo info;
  info.name = "hf";
  info.description =
      "export to Hugging Face safetensors (model weights only; not resumable)";
  info.resumable = false;
  info.options = {
      {"max_shard_size", OptionKind::kBytes, 5'000'000'000ULL,
       "most tensor bytes per file, decimal units as transformers counts "
       "(default 5GB)",
       check_positive},
      {"dtype", OptionKind::kString, "",
       "cast float tensors to F16, BF16, F32 or F64 (empty: keep)",
       check_dtype},
      {"strip_prefix", OptionKind::kString, "",
       "remove this prefix from tensor names that have it (e.g. \"module.\")"},
      {"copy_files", OptionKind::kString, "",
       "comma-separated files to copy into the export (config.json, "
       "tokenizer.json, ...)"},
  };
  info.factory = [](TrainerView& trainer, const CheckpointConfig& config) {
    return std::unique_ptr<CheckpointEngine>(new HfEngine(trainer, config));
  };
  info.reader = open_mpiio_reader;
  return info;
}

}  // namespace floe
