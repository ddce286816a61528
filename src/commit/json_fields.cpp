#include "commit/json_fields.hpp"

#include "floe/error.hpp"

namespace floe {

JsonFields::JsonFields(const nlohmann::json& object, std::string path)
    : object_(object), path_(std::move(path)) {
  if (!object_.is_object()) {
    throw Error(ErrorCode::kCorrupt,
                (path_.empty() ? std::string("the document") : path_) +
                    ": expected an object");
  }
}

std::string JsonFields::path(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

void JsonFields::fail(const std::string& key, const std::string& why) const {
  throw Error(ErrorCode::kCorrupt, "field " + path(key) + ": " + why);
}

bool JsonFields::has(const std::string& key) const {
  return object_.contains(key);
}

const nlohmann::json& JsonFields::value(const std::string& key) const {
  auto it = object_.find(key);
  if (it == object_.end()) fail(key, "missing");
  return *it;
}

std::string JsonFields::string(const std::string& key) const {
  const auto& v = value(key);
  if (!v.is_string()) fail(key, "expected a string");
  return v.get<std::string>();
}

std::uint64_t JsonFields::u64(const std::string& key) const {
  const auto& v = value(key);
  // Parsed text holds a count as unsigned; a document built in memory (as
  // Manifest::to_json builds one from int fields) may hold it as signed.
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) {
    return static_cast<std::uint64_t>(v.get<std::int64_t>());
  }
  fail(key, "expected an integer >= 0");
}

std::int64_t JsonFields::i64(const std::string& key) const {
  const auto& v = value(key);
  if (!v.is_number_integer()) fail(key, "expected an integer");
  if (v.is_number_unsigned() &&
      v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) {
    fail(key, "is too large");
  }
  return v.get<std::int64_t>();
}

const nlohmann::json& JsonFields::array(const std::string& key) const {
  const auto& v = value(key);
  if (!v.is_array()) fail(key, "expected an array");
  return v;
}

const nlohmann::json& JsonFields::object(const std::string& key) const {
  const auto& v = value(key);
  if (!v.is_object()) fail(key, "expected an object");
  return v;
}

nlohmann::json parse_untrusted_json(std::string_view text,
                                    const std::string& what, int max_depth) {
  // Reject deep nesting before nlohmann builds (and later destroys) it.
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        throw Error(ErrorCode::kCorrupt,
                    what + ": JSON nested deeper than " +
                        std::to_string(max_depth) + " levels");
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::kCorrupt, what + ": invalid JSON: " + e.what());
  }
}

}  // namespace floe
