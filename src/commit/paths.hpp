// Names inside output_dir (tags, staging, set-aside) and the check that a
// path named by a manifest stays inside its checkpoint directory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace floe {

inline constexpr const char* kManifestName = "manifest.json";
inline constexpr const char* kLatestName = "latest";
inline constexpr const char* kStagingPrefix = ".staging-";
inline constexpr const char* kReplacedPrefix = ".replaced-";
inline constexpr const char* kDeletingPrefix = ".deleting-";
inline constexpr const char* kSetAsideSuffix = ".corrupt";
// The largest manifest.json a reader accepts.
inline constexpr std::uint64_t kMaxManifestBytes = 1ull << 31;

// "global_step_<step>".
std::string tag_for_step(std::int64_t step);
// The step of a tag "global_step_<N>", or nullopt for any other name.
std::optional<std::int64_t> step_of_tag(const std::string& name);

// Throws Error(kCorrupt) naming `what` unless `relative` is a plain relative
// path (no root, no "..", no ".", no empty part, no NUL).
void check_relative_path(const std::string& relative, const std::string& what);

// `dir / relative` after check_relative_path, also refusing a path whose
// existing part resolves (through symlinks) outside `dir`.
std::filesystem::path resolve_inside(const std::filesystem::path& dir,
                                     const std::string& relative,
                                     const std::string& what);

}  // namespace floe
