// The directory side of an hf export: refusing (or clearing) an earlier
// export, and copying the side files (config.json, tokenizer files) in.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/comm.hpp"
#include "engines/hf/shard_plan.hpp"
#include "floe/file_system.hpp"

namespace floe::hf {

// True for the names an export writes: model.safetensors,
// model-0000k-of-0000n.safetensors, model.safetensors.index.json.
bool is_export_file_name(const std::string& name);

// Collective. Rank 0 creates `dir` if needed; when it holds export files,
// throws Error(kInvalidArgument) naming one, or with `overwrite` removes
// them (other files stay). The same verdict on every rank.
void prepare_export_dir(const Comm& comm, const std::filesystem::path& dir,
                        bool overwrite, FileSystem& fs);

// Collective. Rank 0 copies `sources` into `dir` under their own names
// (files of at most 1 GiB). Throws Error(kInvalidArgument) for a name that
// is not a file's or would overwrite a planned export file (or another
// copied file), kNotFound for a missing source. Returns the names copied,
// on every rank.
std::vector<std::string> copy_files_on_rank0(
    const Comm& comm, const std::vector<std::filesystem::path>& sources,
    const std::filesystem::path& dir, const ExportPlan& plan, FileSystem& fs);

}  // namespace floe::hf
