// Hugging Face weight directories (model.safetensors, or shards and
// model.safetensors.index.json, with no manifest.json) in `floe verify` and
// `floe diff`: checked with the safe reader, and read like a checkpoint.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/comm.hpp"
#include "floe/checkpoint.hpp"

namespace floe::cli {

// What Manifest::engine says for an HF directory opened as a checkpoint.
inline constexpr const char* kHfWeightsEngine = "safetensors";

// True when `path` is HF weights rather than a checkpoint: a directory with
// no manifest.json but with model.safetensors or
// model.safetensors.index.json, or a .safetensors file, or an index file
// (*.index.json). Not collective.
bool is_hf_weights(const std::filesystem::path& path);

struct HfVerifyReport {
  std::uint64_t files = 0;    // safetensors files checked
  std::uint64_t tensors = 0;  // tensors they hold
  std::uint64_t bytes = 0;    // tensor bytes they hold
  // One line per problem, naming the file (or index) and the rule broken.
  std::vector<std::string> problems;
  // Observations that do not fail the check (a shard the index omits).
  std::vector<std::string> notes;
};

// Collective. Rank 0 checks `path` with the safe reader: the index (its
// JSON, every name a plain file inside the directory), every file it names
// (or model.safetensors) on its own, then the whole: every tensor in the
// file the index says, total_size. Every rank returns the same report.
HfVerifyReport verify_hf_weights(const std::filesystem::path& path,
                                 const Comm& comm);

// Collective. Opens HF weights for `floe diff`: a manifest whose tensors
// are the files' tensors as model tensors (key "model/<name>", one piece
// each), engine kHfWeightsEngine, no scalars or blobs; and a reader that
// reads boxes of them with the safe reader (every rank opens and validates
// the files). Throws as hf::HfDirectory does, on every rank.
OpenCheckpoint open_hf_weights(const std::filesystem::path& path,
                               const Comm& comm);

// Prepares checkpoint `ckpt` for comparison with HF weights `hf`, as
// export-hf would have written it: keeps the model tensors only, renames
// them with `rename` (e.g. a stripped prefix), and where `hf` holds a tensor
// in another float dtype that the export can cast to, reads it cast to
// that dtype (rounded as the export rounds). Returns the names cast.
std::vector<std::string> align_with_hf(
    OpenCheckpoint& ckpt, const Manifest& hf,
    const std::function<std::string(const std::string&)>& rename);

// floe verify on HF weights: prints the report on rank 0 and returns the
// exit status (0 sound, 1 with one line per problem). Collective.
int run_verify_hf(const std::filesystem::path& path);

// floe diff's two sides, each a checkpoint or HF weights. When exactly one
// is HF weights (bare, or a checkpoint of the hf engine), the other is
// aligned with it (align_with_hf, with `strip_prefix` removed from its
// names) and `notes` says what was cast.
struct DiffSides {
  OpenCheckpoint a, b;
  bool hf = false;  // either side is HF weights (bare or the hf engine's)
  std::vector<std::string> notes;
};
DiffSides open_diff_sides(const std::filesystem::path& a,
                          const std::filesystem::path& b, const Comm& comm,
                          const std::string& strip_prefix);

}  // namespace floe::cli
