// Hugging Face safetensors: exporting a state's model tensors as consolidated
// safetensors files (what transformers' save_pretrained writes), and
// warm-starting a state's model tensors from such a directory.
// docs/safetensors.md describes both.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <mpi.h>

#include "floe/dtype.hpp"
#include "floe/state.hpp"

namespace floe {

// Maps a tensor name to another: the state's name to the exported one on
// export, the state's name to the file's on load. Must be deterministic and
// give the same answer on every rank.
using NameMap = std::function<std::string(const std::string&)>;

struct HfExportOptions {
  // The most tensor bytes one file holds, in decimal units as transformers
  // counts them ("5GB" = 5,000,000,000). Tensors are packed greedily in state
  // order; a tensor larger than this gets a file of its own. Must be > 0.
  // Default: 5,000,000,000.
  std::uint64_t max_shard_size = 5'000'000'000ULL;

  // Casts every floating-point model tensor to this dtype (F16, BF16, F32 or
  // F64; rounding to nearest even); integer and BOOL tensors keep theirs, as
  // torch's Module.to(dtype) does. A float tensor that cannot be cast (F8)
  // is an error. Default: none (every tensor keeps its dtype).
  std::optional<DType> dtype;

  // The exported name of each model tensor (e.g. strip "module."). Names
  // must stay unique and may not be "__metadata__". Default: unchanged.
  NameMap rename;

  // Extra string entries of every file's __metadata__, beside
  // "format": "pt" (which they may not replace). Default: none.
  std::map<std::string, std::string> metadata;

  // Files rank 0 copies into the export directory under their own names
  // (config.json, tokenizer.json, ...); relative paths are relative to rank
  // 0's working directory. Default: none.
  std::vector<std::filesystem::path> copy_files;

  // A rank's staging memory for writing, where casts happen. export_hf and
  // the hf engine write long unconverted runs straight from the state and
  // the rest through four buffers of a quarter of it (at most 4 MiB each),
  // or, when the runs are small, in collective rounds of at most this many
  // bytes; export_checkpoint_hf reads slices of a quarter of it, the next
  // while the previous ones are written. Between 1 MiB and 1 GiB in
  // practice; any value >= 64 works. Default: 32 MiB, which keeps a rank's
  // peak memory within its own part + 64 MiB (BENCHMARKS.md, "HF export").
  std::uint64_t round_bytes = 32ULL << 20;

  // Replaces an export already in the directory (its model*.safetensors
  // files and index are removed once the options have been checked, just
  // before writing; other files stay) instead of refusing it. Default: false.
  bool overwrite = false;
};

// What an export wrote.
struct HfExportSummary {
  std::vector<std::string> files;  // relative names, data files then index
  std::uint64_t total_size =
      0;  // bytes of tensor data (the index's total_size)
  std::uint64_t tensors = 0;
};

// Collective over `comm`. Writes the model tensors of every rank's `state`
// (optimizer tensors, scalars and blobs are not exported) into `dir` as
// model.safetensors, or model-0000k-of-0000n.safetensors plus
// model.safetensors.index.json, with __metadata__ {"format": "pt"}. Every
// rank writes its own regions straight into the consolidated files with
// MPI-IO (a replicated region once); no rank gathers a tensor. Creates
// `dir` if needed and refuses one that already holds an export. Throws the
// same Error on every rank: kMismatch when the ranks' regions overlap or
// leave a tensor uncovered, kInvalidArgument for bad options (an impossible
// cast, clashing names), kNotFound for a missing copy_files entry, kIo when
// writing fails. A failed export may leave partial files in `dir`.
HfExportSummary export_hf(const State& state, const std::filesystem::path& dir,
                          MPI_Comm comm, const HfExportOptions& options = {});

// Collective over `comm`. Converts the model tensors of the committed
// checkpoint `checkpoint` (a directory with manifest.json, saved by any
// resumable engine at any world size) into `dir`, with the same bytes
// export_hf would write from the saved state with the same options. Any
// number of ranks works. Streams: each round, every rank reads one slice of
// at most a quarter of options.round_bytes of a file's data from the
// checkpoint (plus as much again in the stored dtype when casting) while its
// previous slices are written; no rank holds more than four slices. Throws the same
// Error on every rank: what open_checkpoint throws for a missing or
// unreadable checkpoint (kNotFound when there is no manifest), the errors of
// export_hf for bad options or an existing export, kIo when writing fails.
// Nothing is created before the checkpoint and options are checked; a
// failure while writing may leave partial files in `dir`.
HfExportSummary export_checkpoint_hf(const std::filesystem::path& checkpoint,
                                     const std::filesystem::path& dir,
                                     MPI_Comm comm,
                                     const HfExportOptions& options = {});

struct HfLoadOptions {
  // The name a state tensor has in the files (e.g. add back a prefix the
  // export stripped). Default: unchanged.
  NameMap rename;

  // Tensors in the files that no rank's state has are skipped instead of
  // being an error. Default: false.
  bool allow_extra_tensors = false;

  // Converts between float dtypes (F64, F32, F16, BF16) when the file's dtype
  // differs from the state's, e.g. BF16 weights into F32 master weights;
  // without it a dtype difference is an error. Default: false.
  bool cast = false;

  // Lets the index name files that are symlinks leading out of the
  // directory, as in a huggingface_hub cache snapshot (whose files link to
  // ../../blobs). Names with "..", or absolute names, are refused anyway.
  // Default: false.
  bool follow_symlinks = false;
};

struct HfLoadSummary {
  std::uint64_t tensors = 0;         // model tensors filled (on any rank)
  std::uint64_t bytes_read = 0;      // tensor bytes this rank read
  std::vector<std::string> ignored;  // file tensors no state has (allowed)
};

// Collective over `comm`. Fills the model tensors of every rank's `state`
// from Hugging Face weights at `path`: a directory holding model.safetensors
// or model.safetensors.index.json and its shards, an index file, or one
// .safetensors file. Rank 0 validates the index and every header first (the
// reference reader's rules, plus no duplicate names); then each rank reads
// only the bytes of its own regions, so any partition loads any export.
// Optimizer tensors, scalars and blobs in `state` are left alone. Throws the
// same Error on every rank: kNotFound when `path` holds no weights, kMismatch
// naming the tensor when a model tensor is missing from the files or differs
// in dtype or shape (or the files have a tensor no state has, unless
// allowed), kCorrupt naming the file and the rule it breaks, kIo on read
// errors. On error the state's tensors may be partly filled.
HfLoadSummary load_weights(const std::filesystem::path& path, State& state,
                           MPI_Comm comm, const HfLoadOptions& options = {});

}  // namespace floe
