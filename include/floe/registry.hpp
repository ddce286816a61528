// The engine registry: engines by name, each with its options and factory.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "floe/config.hpp"
#include "floe/engine.hpp"

namespace floe {

using EngineFactory = std::function<std::unique_ptr<CheckpointEngine>(
    TrainerView& trainer, const CheckpointConfig& config)>;

// Collective. Opens a committed checkpoint of this engine's format for
// reading; load(), verify, diff and export all read through it, so a
// checkpoint is readable whichever engine the trainer uses now.
using ReaderFactory =
    std::function<std::unique_ptr<CheckpointReader>(const ReadContext& ctx)>;

struct EngineInfo {
  std::string name;
  std::string description;  // one line
  bool resumable = true;
  std::vector<OptionSpec> options;  // engine-specific config keys
  EngineFactory factory;            // empty when left out of this build
  ReaderFactory reader;             // empty for formats Floe cannot read
  std::string unavailable_reason;   // how to get it, when left out
};

// Registers an engine. Throws Error(kInvalidArgument) when `info.name` is
// taken or empty. Thread-safe.
void register_engine(EngineInfo info);

// The engine registered as `name`. Throws Error(kNotFound) listing the known
// names for an unknown one.
const EngineInfo& engine_info(const std::string& name);

// Every registered engine, sorted by name (built-ins included).
std::vector<EngineInfo> list_engines();

// Collective. Opens checkpoint `ctx.dir` with the reader of the engine that
// wrote it (`ctx.manifest.engine`). Throws Error(kUnsupported) when that
// engine has no reader in this build.
std::unique_ptr<CheckpointReader> open_reader(const ReadContext& ctx);

// Makes the engine `config.type`. Throws Error(kNotFound) for an unknown
// name, Error(kUnsupported) with unavailable_reason for one left out of the
// build.
std::unique_ptr<CheckpointEngine> make_engine(TrainerView& trainer,
                                              const CheckpointConfig& config);

// Registers `Engine` (constructible from (TrainerView&, CheckpointConfig))
// with `info`, filling in the factory. For engines outside Floe, as a static:
//   static floe::EngineRegistration<MyEngine> reg({"my", "what it does"});
// Floe's own engines are registered on first use of the registry instead,
// so a static link never drops them.
template <typename Engine>
struct EngineRegistration {
  explicit EngineRegistration(EngineInfo info) {
    info.factory = [](TrainerView& trainer, const CheckpointConfig& config) {
      return std::unique_ptr<CheckpointEngine>(new Engine(trainer, config));
    };
    register_engine(std::move(info));
  }
};

}  // namespace floe
