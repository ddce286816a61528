// The export plan: which file each model tensor goes to, where its bytes
// lie, and every file's header and the index, computed identically on every
// rank from the global tensor list alone (no communication).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "floe/hf.hpp"
#include "floe/state.hpp"

namespace floe::hf {

struct PlannedTensor {
  std::size_t source = 0;  // index into the spec list given to plan_export
  std::string name;        // exported name
  DType source_dtype = DType::kF32;
  DType dtype = DType::kF32;  // exported
  Shape shape;
  std::uint64_t nbytes = 0;       // exported bytes
  std::size_t file = 0;           // index into ExportPlan::files
  std::uint64_t begin = 0;        // data_offsets begin (relative to the data)
  std::uint64_t file_offset = 0;  // absolute offset of its first byte
};

struct PlannedFile {
  std::string name;
  // The 8-byte little-endian length and the JSON header, padded with spaces
  // so its size is a multiple of 8: the file's first bytes.
  std::string header;
  std::vector<std::size_t> tensors;  // into ExportPlan::tensors, in state order
  std::uint64_t size = 0;            // of the whole file
};

struct ExportPlan {
  std::vector<PlannedTensor> tensors;  // the model tensors, in state order
  std::vector<PlannedFile> files;
  std::string index_json;  // empty when there is one file
  std::uint64_t total_size = 0;
};

// Plans the export of the model tensors among `specs` (optimizer tensors are
// skipped). Files: greedy in state order as huggingface_hub's
// split_state_dict_into_shards (what transformers' save_pretrained uses):
// a tensor that would take the current file past max_shard_size starts a
// new one, and a tensor larger than max_shard_size is put in a file of its
// own right away (so it comes before the file being filled). Inside a file,
// data is ordered by decreasing element size (state order among equals),
// so every tensor is aligned to its element size, as the reference writer's
// dtype sort achieves; the header lists tensors in state order. Throws
// Error(kInvalidArgument) for max_shard_size 0, an impossible cast, an
// exported name that repeats, is "__metadata__" or is not UTF-8, and
// metadata that sets "format".
ExportPlan plan_export(const std::vector<TensorSpec>& specs,
                       const HfExportOptions& options);

// "model.safetensors" for one file, else "model-00001-of-00003.safetensors".
std::string shard_file_name(std::size_t index, std::size_t count);

}  // namespace floe::hf
