// floe engines: lists the checkpoint engines the registry knows, whether
// each can resume training or only export, its engine-specific options, and
// for an engine left out of this build, how to get it (also
// `floe --list-engines`).
#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/cli_common.hpp"
#include "cli/commands.hpp"
#include "floe/registry.hpp"

namespace floe::cli {

const char kEnginesSummary[] =
    "List the checkpoint engines, their options, and those not built.";

namespace {

const char* kind_name(OptionKind kind) {
  switch (kind) {
    case OptionKind::kBool:
      return "bool";
    case OptionKind::kCount:
      return "count";
    case OptionKind::kBytes:
      return "bytes";
    case OptionKind::kString:
      return "string";
    case OptionKind::kNumber:
      return "number";
  }
  return "unknown";
}

std::string default_text(const nlohmann::json& value) {
  return value.is_null() ? "none" : value.dump();
}

nlohmann::json to_json(const EngineInfo& info) {
  nlohmann::json options = nlohmann::json::array();
  for (const OptionSpec& spec : info.options) {
    options.push_back({{"key", spec.key},
                       {"kind", kind_name(spec.kind)},
                       {"default", spec.default_value},
                       {"doc", spec.doc}});
  }
  nlohmann::json engine = {{"name", info.name},
                           {"description", info.description},
                           {"resumable", info.resumable},
                           {"available", static_cast<bool>(info.factory)},
                           {"options", options}};
  if (!info.factory) engine["unavailable_reason"] = info.unavailable_reason;
  return engine;
}

std::string pad(const std::string& text, std::size_t width) {
  return text + std::string(width > text.size() ? width - text.size() : 0, ' ');
}

// One line per engine, then its options as an aligned table:
//   <key>  <kind>  <default>  <doc>
void print_text(const std::vector<EngineInfo>& engines) {
  std::size_t name_width = 0;
  for (const EngineInfo& info : engines) {
    name_width = std::max(name_width, info.name.size());
  }
  for (const EngineInfo& info : engines) {
    out() << pad(info.name, name_width + 2)
          << pad(info.resumable ? "resumable" : "export-only", 13)
          << info.description << "\n";
    if (!info.factory) {
      out() << "    not in this build: " << info.unavailable_reason << "\n";
    }
    std::size_t key_width = 0, default_width = 0;
    for (const OptionSpec& spec : info.options) {
      key_width = std::max(key_width, spec.key.size());
      default_width =
          std::max(default_width, default_text(spec.default_value).size());
    }
    for (const OptionSpec& spec : info.options) {
      out() << "    " << pad(spec.key, key_width + 2)
            << pad(kind_name(spec.kind), 8)
            << pad(default_text(spec.default_value), default_width + 2)
            << spec.doc << "\n";
    }
  }
}

}  // namespace

int run_engines(const std::vector<std::string>& args) {
  CommandLine line;
  line.usage = "floe engines [--json]";
  line.summary = kEnginesSummary;
  line.options.add_options()("json", "Print the list as JSON.");
  const auto vm = parse_command_line(line, args);
  if (!vm) return 0;

  const std::vector<EngineInfo> engines = list_engines();
  if (vm->count("json")) {
    nlohmann::json list = nlohmann::json::array();
    for (const EngineInfo& info : engines) list.push_back(to_json(info));
    out() << list.dump(2) << "\n";
  } else {
    print_text(engines);
  }
  return 0;
}

}  // namespace floe::cli
