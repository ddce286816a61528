// Helpers of the config suites (config_test.cpp, config_errors_test.cpp,
// config_flags_test.cpp): two engines registered for the tests, a base
// config, and a check that parse_config rejects a config naming the key.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "floe/config.hpp"
#include "floe/registry.hpp"
#include "test_util.hpp"

namespace floe::test {

// The check of options_engine's "align": a reason, or "" when it passes.
inline std::string power_of_two(const nlohmann::json& value) {
  const auto v = value.get<std::uint64_t>();
  return v != 0 && (v & (v - 1)) == 0 ? "" : "must be a power of two";
}

// An engine with one option of each kind (registered once per process, so
// --gtest_repeat works). parse_config needs no factory.
inline const std::string& options_engine() {
  static const std::string name = [] {
    EngineInfo info;
    info.name = "config_test_options";
    info.description = "config_test: one option of each kind";
    info.options = {
        {"align", OptionKind::kCount, 4096, "alignment", power_of_two},
        {"chunk", OptionKind::kBytes, "1MiB",
         "chunk size (default given as text)"},
        {"limit", OptionKind::kBytes, 0, "a size"},
        {"compress", OptionKind::kBool, false, "compress"},
        {"label", OptionKind::kString, "none", "a label"},
        {"ratio", OptionKind::kNumber, 0.5, "a ratio"},
    };
    info.unavailable_reason = "config_test engines are never made";
    register_engine(info);
    return info.name;
  }();
  return name;
}

// An engine with no options of its own, which cannot be resumed from.
inline const std::string& export_engine() {
  static const std::string name = [] {
    EngineInfo info;
    info.name = "config_test_export";
    info.description = "config_test: export only";
    info.resumable = false;
    info.unavailable_reason = "config_test engines are never made";
    register_engine(info);
    return info.name;
  }();
  return name;
}

// The smallest config of engine `type`: it and an output directory.
inline nlohmann::json base(const std::string& type) {
  return nlohmann::json{{"type", type}, {"output_dir", "/ckpt/run1"}};
}

// parse_config(j) fails with kInvalidConfig and names `key` in quotes.
inline ::testing::AssertionResult rejects(
    const nlohmann::json& j, const std::string& key,
    std::initializer_list<std::string> more = {}) {
  auto result = throws_error([&] { (void)parse_config(j); },
                             ErrorCode::kInvalidConfig, {"\"" + key + "\""});
  if (!result) return result << "\n  config: " << j.dump();
  for (const auto& part : more) {
    auto r = throws_error([&] { (void)parse_config(j); },
                          ErrorCode::kInvalidConfig, {part});
    if (!r) return r << "\n  config: " << j.dump();
  }
  return result;
}

}  // namespace floe::test
