// The first save after a load (docs/hdf5_layout.md, "After a load"): a
// trainer that resumes saves the structure it just loaded, so the loaded
// checkpoint's file can be that save's template, as an earlier save's file
// is for later saves, when its manifest says what that structure is and the
// file still has it.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/comm.hpp"
#include "engines/hdf5/hdf5_rank_report.hpp"
#include "engines/hdf5/hdf5_template.hpp"
#include "floe/layout.hpp"
#include "floe/manifest.hpp"

namespace floe::h5 {

// The members of engine_info that name the file's structure
// (docs/manifest.md): the XXH3-64 of describe_structure(), of the
// structure bytes (image_xxh3()), and every blob's storage offset in the
// manifest's blob order.
inline constexpr const char* kStructureXxh3Key = "structure_xxh3";
inline constexpr const char* kTemplateXxh3Key = "template_xxh3";
inline constexpr const char* kBlobOffsetsKey = "blob_storage_offsets";

// Adds those members to a save's engine_info.
void record_structure(
    nlohmann::json& engine_info, const std::string& structure,
    std::uint64_t image_xxh3,
    const std::vector<std::vector<std::uint64_t>>& blob_offsets);

// Local: what `manifest` (the checkpoint in `dir`) says its file's
// structure is, or nothing when it is not an hdf5 checkpoint, lacks those
// members (written by an earlier Floe, or with reuse_structure off) or has
// them malformed. Never throws.
std::optional<LoadedFile> loaded_file_of(const std::filesystem::path& dir,
                                         const Manifest& manifest);

// Collective over `comm` (every rank holds the same `loaded`): the template
// of the loaded file for a save whose describe_structure() is `structure`,
// or nothing (on every rank) when the structures differ or the file's
// structure bytes no longer hash to the manifest's (changed or removed
// since). Never throws for those: the save is then made in full.
std::optional<FileTemplate> template_from_loaded(
    const Comm& comm, const LoadedFile& loaded, const std::string& structure,
    const GlobalLayout& layout, const std::vector<RankReport>& reports);

}  // namespace floe::h5
