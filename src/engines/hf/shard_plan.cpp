#include "engines/hf/shard_plan.hpp"

#include <algorithm>
#include <cstdio>
#include <map>

#include <nlohmann/json.hpp>

#include "engines/hf/float_cast.hpp"
#include "engines/hf/safetensors_index.hpp"
#include "floe/error.hpp"

namespace floe::hf {
namespace {

using Json = nlohmann::json;

[[noreturn]] void invalid(const std::string& why) {
  throw Error(ErrorCode::kInvalidArgument, "hf export: " + why);
}

std::string quoted(const std::string& text, const std::string& what) {
  try {
    return Json(text).dump();
  } catch (const Json::exception&) {
    invalid(what + " \"" + text + "\" is not valid UTF-8");
  }
}

DType exported_dtype(const TensorSpec& spec, const HfExportOptions& options) {
  if (!options.dtype || !dtype_is_float(spec.dtype)) return spec.dtype;
  try {
    check_cast(spec.dtype, *options.dtype, spec.name);
  } catch (const Error& e) {
    invalid(e.what());
  }
  return *options.dtype;
}

// Greedy split in state order, as huggingface_hub does it.
std::vector<std::vector<std::size_t>> split(
    const std::vector<PlannedTensor>& tensors, std::uint64_t limit) {
  std::vector<std::vector<std::size_t>> shards;
  std::vector<std::size_t> current;
  std::uint64_t current_size = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::uint64_t size = tensors[i].nbytes;
    if (size > limit) {
      shards.push_back({i});
      continue;
    }
    if (current_size + size > limit) {  // current_size <= limit: no overflow
      shards.push_back(std::move(current));
      current.clear();
      current_size = 0;
    }
    current.push_back(i);
    current_size += size;
  }
  if (!current.empty() || shards.empty()) shards.push_back(std::move(current));
  return shards;
}

// The shape as the header's JSON array. Not shape_text (core/shape_text.hpp),
// though the text is the same today: this is the safetensors file format,
// which must stay JSON whatever Floe's messages come to print.
std::string shape_json(const Shape& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i)
    out += (i ? "," : "") + std::to_string(shape[i]);
  return out + "]";
}

// Lays out one file's data and writes its header.
void lay_out(PlannedFile& file, std::size_t number,
             std::vector<PlannedTensor>& tensors,
             const std::string& metadata_json) {
  std::vector<std::size_t> order = file.tensors;
  std::stable_sort(
      order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return dtype_size(tensors[a].dtype) > dtype_size(tensors[b].dtype);
      });
  std::uint64_t at = 0;
  for (const std::size_t i : order) {
    tensors[i].file = number;
    tensors[i].begin = at;
    at += tensors[i].nbytes;  // the total fits: checked by the caller
  }
  std::string json = "{\"__metadata__\":" + metadata_json;
  for (const std::size_t i : file.tensors) {
    const PlannedTensor& t = tensors[i];
    json += "," + quoted(t.name, "tensor name") + ":{\"dtype\":\"" +
            std::string(dtype_name(t.dtype)) +
            "\",\"shape\":" + shape_json(t.shape) + ",\"data_offsets\":[" +
            std::to_string(t.begin) + "," + std::to_string(t.begin + t.nbytes) +
            "]}";
  }
  json += "}";
  json.append((8 - (8 + json.size()) % 8) % 8, ' ');
  std::string prefix(8, '\0');
  for (int k = 0; k < 8; ++k)
    prefix[k] = static_cast<char>((json.size() >> (8 * k)) & 0xff);
  file.header = prefix + json;
  file.size = file.header.size() + at;
  for (const std::size_t i : order)
    tensors[i].file_offset = file.header.size() + tensors[i].begin;
}

std::string index_json(const ExportPlan& plan) {
  Json index;
  index["metadata"]["total_size"] = plan.total_size;
  Json& map = index["weight_map"] = Json::object();
  for (const auto& t : plan.tensors) map[t.name] = plan.files[t.file].name;
  // As transformers writes it: json.dumps(index, indent=2, sort_keys=True) +
  // "\n".
  return index.dump(2, ' ', true) + "\n";
}

}  // namespace

std::string shard_file_name(std::size_t index, std::size_t count) {
  if (count == 1) return kSingleFileName;
  char name[64];
  std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors",
                index + 1, count);
  return name;
}

ExportPlan plan_export(const std::vector<TensorSpec>& specs,
                       const HfExportOptions& options) {
  if (options.max_shard_size == 0) invalid("max_shard_size must be > 0");
  if (options.metadata.count("format")) {
    invalid("metadata may not set \"format\" (always \"pt\")");
  }
  Json metadata = Json::object();
  for (const auto& [key, value] : options.metadata) metadata[key] = value;
  metadata["format"] = "pt";
  std::string metadata_json;
  try {
    metadata_json = metadata.dump();
  } catch (const Json::exception&) {
    invalid("the metadata is not valid UTF-8");
  }

  ExportPlan plan;
  std::map<std::string, std::string> sources;  // exported name -> state name
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& spec = specs[i];
    if (spec.group != TensorGroup::kModel) continue;
    PlannedTensor t;
    t.source = i;
    t.name = options.rename ? options.rename(spec.name) : spec.name;
    if (t.name == "__metadata__")
      invalid("tensor \"" + spec.name + "\" would export as \"__metadata__\"");
    const auto [it, added] = sources.emplace(t.name, spec.name);
    if (!added) {
      invalid("tensors \"" + it->second + "\" and \"" + spec.name +
              "\" both export as \"" + t.name + "\"");
    }
    t.source_dtype = spec.dtype;
    t.dtype = exported_dtype(spec, options);
    t.shape = spec.shape;
    t.nbytes = byte_size(spec.shape, dtype_size(t.dtype));
    if (__builtin_add_overflow(plan.total_size, t.nbytes, &plan.total_size)) {
      invalid("the model's total size overflows 64 bits");
    }
    plan.tensors.push_back(std::move(t));
  }
  const auto shards = split(plan.tensors, options.max_shard_size);
  for (std::size_t f = 0; f < shards.size(); ++f) {
    PlannedFile file;
    file.name = shard_file_name(f, shards.size());
    file.tensors = shards[f];
    lay_out(file, f, plan.tensors, metadata_json);
    plan.files.push_back(std::move(file));
  }
  if (plan.files.size() > 1) plan.index_json = index_json(plan);
  return plan;
}

}  // namespace floe::hf
