#include "floe/registry.hpp"

#include <algorithm>
#include <map>
#include <mutex>

#include "engines/builtin_engines.hpp"
#include "floe/error.hpp"

namespace floe {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, EngineInfo> engines;
};

void add_locked(Registry& registry, EngineInfo info) {
  if (info.name.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "an engine needs a name");
  }
  if (registry.engines.count(info.name)) {
    throw Error(ErrorCode::kInvalidArgument,
                "engine name \"" + info.name + "\" is already registered");
  }
  const std::string name = info.name;
  registry.engines.emplace(name, std::move(info));
}

// Built-ins are added on first use, so a static link never loses them.
Registry& registry() {
  static Registry instance;
  static std::once_flag builtins;
  std::call_once(builtins, [] {
    for (auto& info : builtin_engines()) add_locked(instance, std::move(info));
  });
  return instance;
}

std::string known_names(const Registry& r) {
  std::string out;
  for (const auto& [name, info] : r.engines) out += (out.empty() ? "" : ", ") + name;
  return out;
}

}  // namespace

void register_engine(EngineInfo info) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  add_locked(r, std::move(info));
}

const EngineInfo& engine_info(const std::string& name) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.engines.find(name);
  if (it == r.engines.end()) {
    throw Error(ErrorCode::kNotFound, "unknown engine \"" + name +
                                          "\" (known: " + known_names(r) + ")");
  }
  return it->second;  // entries are never removed: the reference stays valid
}

std::vector<EngineInfo> list_engines() {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<EngineInfo> out;
  for (const auto& [name, info] : r.engines) out.push_back(info);
  return out;
}

std::unique_ptr<CheckpointEngine> make_engine(TrainerView& trainer,
                                              const CheckpointConfig& config) {
  const EngineInfo& info = engine_info(config.type);
  if (!info.factory) {
    throw Error(ErrorCode::kUnsupported,
                "engine \"" + info.name + "\" is not in this build: " +
                    info.unavailable_reason);
  }
  return info.factory(trainer, config);
}

}  // namespace floe

namespace floe {

std::unique_ptr<CheckpointReader> open_reader(const ReadContext& ctx) {
  const EngineInfo& info = engine_info(ctx.manifest.engine);
  if (!info.reader) {
    throw Error(ErrorCode::kUnsupported,
                "checkpoint " + ctx.dir.string() + " was written by engine \"" +
                    info.name + "\", which this build cannot read" +
                    (info.unavailable_reason.empty()
                         ? std::string()
                         : ": " + info.unavailable_reason));
  }
  return info.reader(ctx);
}

}  // namespace floe
