#include "engines/hf/safetensors_index.hpp"

#include <set>

#include <nlohmann/json.hpp>

#include "commit/paths.hpp"
#include "engines/hf/safetensors_header.hpp"
#include "floe/error.hpp"

namespace floe::hf {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string read_small_file(const fs::path& path, std::uint64_t limit) {
  const ReadOnlyFile file(path);
  if (file.size() > limit) {
    corrupt(path.string(), "is " + std::to_string(file.size()) +
                               " bytes, more than the " +
                               std::to_string(limit) + " an index may have");
  }
  std::string text(file.size(), '\0');
  file.read_exact(0, file.size(), text.data());
  return text;
}

// nlohmann keeps the last of duplicate keys silently; the callback sees
// every key and refuses a repeat, and bounds the nesting.
Json parse_strict(const std::string& text, const std::string& what) {
  // nlohmann's lexer takes a NUL byte for the end of input; JSON allows none.
  if (const auto nul = text.find('\0'); nul != std::string::npos) {
    corrupt(what, "invalid JSON: a NUL byte at byte " + std::to_string(nul));
  }
  std::vector<std::set<std::string>> open;  // keys of each object being parsed
  auto check = [&](int, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        if (open.size() >= 64)
          corrupt(what, "JSON nested deeper than 64 levels");
        open.emplace_back();
        break;
      case Json::parse_event_t::object_end:
      case Json::parse_event_t::array_end:
        open.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!open.back().insert(parsed.get<std::string>()).second) {
          corrupt(what, "key \"" + parsed.get<std::string>() +
                            "\" appears twice in an object");
        }
        break;
      case Json::parse_event_t::value:
        break;
    }
    return true;
  };
  try {
    return Json::parse(text, check);
  } catch (const Json::exception& e) {
    corrupt(what, std::string("invalid JSON: ") + e.what());
  }
}

}  // namespace

HfIndex parse_index(const std::string& text, const std::string& what) {
  const Json doc = parse_strict(text, what);
  if (!doc.is_object()) corrupt(what, "expected a JSON object");
  HfIndex index;
  const auto map = doc.find("weight_map");
  if (map == doc.end()) corrupt(what, "missing \"weight_map\"");
  if (!map->is_object()) corrupt(what, "\"weight_map\" is not an object");
  for (const auto& [name, file] : map->items()) {
    if (!file.is_string())
      corrupt(what, "weight_map[\"" + name + "\"] is not a string");
    index.weight_map.emplace(name, file.get<std::string>());
  }
  if (const auto meta = doc.find("metadata"); meta != doc.end()) {
    if (!meta->is_object()) corrupt(what, "\"metadata\" is not an object");
    if (const auto total = meta->find("total_size"); total != meta->end()) {
      if (!total->is_number_unsigned()) {
        corrupt(what, "metadata.total_size is not an integer >= 0");
      }
      index.total_size = total->get<std::uint64_t>();
    }
  }
  return index;
}

HfDirectory::HfDirectory(const fs::path& path, bool follow_symlinks) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(path / kSingleFileName, ec)) {
      open_single(path / kSingleFileName);
    } else if (fs::exists(path / kIndexFileName, ec)) {
      open_index(path / kIndexFileName, follow_symlinks);
    } else {
      throw Error(ErrorCode::kNotFound,
                  "no Hugging Face weights in " + path.string() + ": neither " +
                      kSingleFileName + " nor " + kIndexFileName);
    }
  } else if (path.extension() == ".json") {
    open_index(path, follow_symlinks);
  } else {
    open_single(path);
  }
}

const HfDirectory::Location* HfDirectory::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

void HfDirectory::open_single(const fs::path& file) {
  files_.push_back(std::make_unique<SafetensorsFile>(file));
  for (const auto& t : files_.back()->header().tensors) {
    tensors_[t.name] = Location{0, &t};
    total_size_ += t.nbytes();  // cannot overflow: the tensors tile the file
  }
}

void HfDirectory::open_index(const fs::path& index_file, bool follow_symlinks) {
  index_path_ = index_file;
  const std::string what = index_file.string();
  const HfIndex index =
      parse_index(read_small_file(index_file, kMaxIndexBytes), what);
  const fs::path dir = index_file.parent_path().empty()
                           ? fs::path(".")
                           : index_file.parent_path();
  std::map<std::string, std::size_t> file_numbers;
  std::vector<std::string> file_names;
  for (const auto& [name, file] : index.weight_map) {
    if (file_numbers.count(file)) continue;
    const std::string field = what + ": weight_map[\"" + name + "\"]";
    fs::path full;
    if (follow_symlinks) {
      check_relative_path(file, field);
      full = dir / file;
    } else {
      full = resolve_inside(dir, file, field);
    }
    file_numbers.emplace(file, files_.size());
    file_names.push_back(file);
    try {
      files_.push_back(std::make_unique<SafetensorsFile>(full));
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kNotFound) throw;
      // A shard name with a typo, or a shard that was never copied: the
      // index is what points at nothing, so name it and the entry.
      std::size_t others = 0;
      for (const auto& [other, other_file] : index.weight_map) {
        others += other != name && other_file == file;
      }
      throw Error(ErrorCode::kNotFound,
                  field + " names \"" + file + "\"" +
                      (others == 1  ? " (as does 1 more tensor)"
                       : others > 1 ? " (as do " + std::to_string(others) +
                                          " more tensors)"
                                    : "") +
                      ", which does not exist in " + dir.string());
    }
  }
  for (std::size_t number = 0; number < files_.size(); ++number) {
    for (const auto& t : files_[number]->header().tensors) {
      const auto [it, added] = tensors_.emplace(t.name, Location{number, &t});
      if (!added) {
        corrupt(what, "tensor \"" + t.name + "\" is in both " +
                          file_names[it->second.file] + " and " +
                          file_names[number]);
      }
      const auto mapped = index.weight_map.find(t.name);
      if (mapped == index.weight_map.end() ||
          mapped->second != file_names[number]) {
        corrupt(what, file_names[number] + " holds tensor \"" + t.name +
                          "\", which the index " +
                          (mapped == index.weight_map.end()
                               ? "does not list"
                               : "maps to " + mapped->second));
      }
      if (__builtin_add_overflow(total_size_, t.nbytes(), &total_size_)) {
        corrupt(what, "the tensors' total size overflows 64 bits");
      }
    }
  }
  for (const auto& [name, file] : index.weight_map) {
    if (!tensors_.count(name)) {
      corrupt(what, "tensor \"" + name + "\" is mapped to " + file +
                        ", which does not hold it");
    }
  }
  if (index.total_size && *index.total_size != total_size_) {
    corrupt(what, "metadata.total_size is " +
                      std::to_string(*index.total_size) +
                      " but the tensors it maps hold " +
                      std::to_string(total_size_) + " bytes");
  }
}

}  // namespace floe::hf
