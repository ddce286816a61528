// Hugging Face weight directories: model.safetensors alone, or shards named
// by model.safetensors.index.json, validated as a whole before any tensor
// data is read.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engines/hf/safetensors_reader.hpp"

namespace floe::hf {

inline constexpr const char* kSingleFileName = "model.safetensors";
inline constexpr const char* kIndexFileName = "model.safetensors.index.json";
// Index files beyond this size are refused unread (a 10,000-tensor index is
// about 1 MB).
inline constexpr std::uint64_t kMaxIndexBytes = 64u << 20;

// model.safetensors.index.json as written, checked for shape only.
struct HfIndex {
  std::map<std::string, std::string> weight_map;  // tensor -> file
  std::optional<std::uint64_t> total_size;        // metadata.total_size
};

// Parses index text: a JSON object (nested at most 64 deep, no key twice in
// any object) whose `weight_map` is an object of strings and whose optional
// `metadata` is an object with an optional integer `total_size` >= 0; other
// keys are ignored. Throws Error(kCorrupt) naming `what` and the field.
HfIndex parse_index(const std::string& text, const std::string& what);

// An opened and fully validated directory of weights.
class HfDirectory {
 public:
  struct Location {
    std::size_t file = 0;  // index into files()
    const SafetensorsTensor* tensor = nullptr;
  };

  // Opens `path`: a directory (model.safetensors if present, else
  // model.safetensors.index.json, the order transformers looks in), an index
  // file (*.json), or one .safetensors file. Every file's header is
  // validated; with an index, every file name must be a plain relative path
  // inside the directory (no "..", not absolute, and, unless
  // `follow_symlinks`, not a symlink leading out of it), every tensor it
  // maps must be in the file it names, every tensor of those files must be
  // mapped to it, and metadata.total_size, when present, must equal the
  // tensors' total bytes. Throws Error(kNotFound) when there are no weights
  // or the index names a file that does not exist (naming the index and the
  // weight_map entry), kCorrupt naming the file and the rule broken, kIo on
  // a read error.
  explicit HfDirectory(const std::filesystem::path& path,
                       bool follow_symlinks = false);

  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const {
    return files_;
  }
  // The index read, or empty for a single file.
  const std::filesystem::path& index_path() const { return index_path_; }
  // Every tensor by name.
  const std::map<std::string, Location>& tensors() const { return tensors_; }
  const Location* find(const std::string& name) const;
  // The sum of the tensors' byte sizes.
  std::uint64_t total_size() const { return total_size_; }

 private:
  void open_single(const std::filesystem::path& file);
  void open_index(const std::filesystem::path& index, bool follow_symlinks);

  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::filesystem::path index_path_;
  std::map<std::string, Location> tensors_;
  std::uint64_t total_size_ = 0;
};

}  // namespace floe::hf
