// Typed, checked access to fields of untrusted JSON: every error is
// Error(kCorrupt) naming the field's path ("tensors[3].shape[1]").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace floe {

class JsonFields {
 public:
  JsonFields(const nlohmann::json& object, std::string path);

  const nlohmann::json& value(const std::string& key) const;  // required
  bool has(const std::string& key) const;
  std::string string(const std::string& key) const;
  std::uint64_t u64(const std::string& key) const;
  std::int64_t i64(const std::string& key) const;
  const nlohmann::json& array(const std::string& key) const;
  const nlohmann::json& object(const std::string& key) const;
  std::string path(const std::string& key) const;

  [[noreturn]] void fail(const std::string& key, const std::string& why) const;

 private:
  const nlohmann::json& object_;
  std::string path_;
};

// Parses untrusted JSON text, refusing nesting deeper than `max_depth`.
// Throws Error(kCorrupt) naming `what`.
nlohmann::json parse_untrusted_json(std::string_view text,
                                    const std::string& what,
                                    int max_depth = 64);

}  // namespace floe
