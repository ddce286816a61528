// The engine registry: registering, making engines by name, and the errors
// for taken, unknown and left-out names.
#include "floe/registry.hpp"

#include <algorithm>
#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace floe {
namespace {

using test::throws_error;

// A fresh engine name per call, so tests stay independent under
// --gtest_repeat (the registry never forgets a name).
std::string unique_name(const std::string& stem) {
  static std::atomic<int> counter{0};
  return "registry_test_" + stem + "_" + std::to_string(counter++);
}

class EchoEngine : public CheckpointEngine {
 public:
  EchoEngine(TrainerView& trainer, CheckpointConfig config)
      : CheckpointEngine(trainer, config), registered_as_(config.type) {}
  std::string_view name() const override { return registered_as_; }

 protected:
  WriteResult write_state(const SaveContext&) override {
    throw Error(ErrorCode::kInternal, "EchoEngine does not write");
  }

 private:
  std::string registered_as_;
};

CheckpointConfig config_for(const std::string& type) {
  CheckpointConfig config;
  config.type = type;
  config.output_dir = "/ckpt/registry_test";
  config.save_every_n_steps = 17;
  return config;
}

TEST(Registry, RegisteredEngineIsMadeByName) {
  const std::string name = unique_name("echo");
  EngineInfo info;
  info.name = name;
  info.description = "echoes its config";
  EngineRegistration<EchoEngine> registration(info);

  EXPECT_EQ(engine_info(name).name, name);
  EXPECT_EQ(engine_info(name).description, "echoes its config");
  EXPECT_TRUE(static_cast<bool>(engine_info(name).factory));

  SimpleTrainer trainer;
  const auto engine = make_engine(trainer, config_for(name));
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->name(), name);
  EXPECT_NE(dynamic_cast<EchoEngine*>(engine.get()), nullptr);
  // The factory passed the trainer and the config through.
  EXPECT_EQ(&engine->trainer(), static_cast<TrainerView*>(&trainer));
  EXPECT_EQ(engine->config().save_every_n_steps, 17);
  EXPECT_EQ(engine->config().output_dir,
            std::filesystem::path("/ckpt/registry_test"));
}

TEST(Registry, PlainFactoryIsCalledWithTheConfig) {
  const std::string name = unique_name("plain");
  static std::atomic<int> calls{0};  // outlives the test, as the registry does
  const int before = calls;
  EngineInfo info;
  info.name = name;
  info.factory = [](TrainerView& trainer, const CheckpointConfig& config) {
    ++calls;
    return std::unique_ptr<CheckpointEngine>(new EchoEngine(trainer, config));
  };
  register_engine(info);
  SimpleTrainer trainer;
  const auto a = make_engine(trainer, config_for(name));
  const auto b = make_engine(trainer, config_for(name));
  EXPECT_EQ(calls - before, 2);
  EXPECT_NE(a.get(), b.get());
}

TEST(Registry, TakenNameIsAnErrorNamingIt) {
  const std::string name = unique_name("taken");
  EngineInfo first;
  first.name = name;
  first.description = "first";
  register_engine(first);
  EngineInfo second = first;
  second.description = "second";
  EXPECT_TRUE(throws_error([&] { register_engine(second); },
                           ErrorCode::kInvalidArgument,
                           {"\"" + name + "\"", "already registered"}));
  EXPECT_EQ(engine_info(name).description, "first");  // the first one stays

  // Built-in names are taken too.
  EngineInfo hdf5;
  hdf5.name = "hdf5";
  EXPECT_TRUE(throws_error([&] { register_engine(hdf5); },
                           ErrorCode::kInvalidArgument, {"\"hdf5\""}));
}

TEST(Registry, EmptyNameIsAnError) {
  EXPECT_TRUE(throws_error([] { register_engine(EngineInfo{}); },
                           ErrorCode::kInvalidArgument, {"name"}));
}

TEST(Registry, UnknownNameListsKnownNames) {
  const std::string mine = unique_name("known");
  EngineInfo info;
  info.name = mine;
  register_engine(info);
  for (const std::string unknown : {"hdf7", "", "HDF5"}) {
    EXPECT_TRUE(
        throws_error([&] { (void)engine_info(unknown); }, ErrorCode::kNotFound,
                     {"\"" + unknown + "\"", "hdf5", "mpiio", "hf", mine}));
    SimpleTrainer trainer;
    EXPECT_TRUE(throws_error(
        [&] { (void)make_engine(trainer, config_for(unknown)); },
        ErrorCode::kNotFound, {"\"" + unknown + "\"", "hdf5", mine}));
  }
}

TEST(Registry, EngineWithoutFactoryExplainsHowToGetIt) {
  const std::string name = unique_name("absent");
  EngineInfo info;
  info.name = name;
  info.description = "needs a plugin";
  info.unavailable_reason = "rebuild with -DFLOE_ENGINE_ABSENT=ON";
  register_engine(info);
  EXPECT_EQ(engine_info(name).unavailable_reason, info.unavailable_reason);
  SimpleTrainer trainer;
  EXPECT_TRUE(throws_error(
      [&] { (void)make_engine(trainer, config_for(name)); },
      ErrorCode::kUnsupported,
      {"\"" + name + "\"", "rebuild with -DFLOE_ENGINE_ABSENT=ON"}));
}

TEST(Registry, ListEnginesIsSortedAndComplete) {
  const std::string b = unique_name("zz_list");
  const std::string a = unique_name("aa_list");
  for (const auto& name : {b, a}) {
    EngineInfo info;
    info.name = name;
    info.description = "listed";
    register_engine(info);
  }
  const auto engines = list_engines();
  std::vector<std::string> names;
  for (const auto& e : engines) names.push_back(e.name);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(),
            names.size());
  for (const auto& want :
       {std::string("hdf5"), std::string("mpiio"), std::string("hf"), a, b}) {
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  }
  // Entries carry their info.
  const auto it =
      std::find_if(engines.begin(), engines.end(),
                   [&](const EngineInfo& e) { return e.name == a; });
  ASSERT_NE(it, engines.end());
  EXPECT_EQ(it->description, "listed");
}

TEST(Registry, BuiltinsDescribeThemselves) {
  for (const char* name : {"hdf5", "mpiio", "hf"}) {
    const EngineInfo& info = engine_info(name);
    EXPECT_FALSE(info.description.empty()) << name;
    // Either it can be made, or it says how to get it.
    EXPECT_TRUE(static_cast<bool>(info.factory) ||
                !info.unavailable_reason.empty())
        << name;
  }
  EXPECT_TRUE(engine_info("hdf5").resumable);
  EXPECT_TRUE(engine_info("mpiio").resumable);
  EXPECT_FALSE(engine_info("hf").resumable);  // export only
}

TEST(Registry, ConcurrentRegistrationsAllLand) {
  constexpr int kThreads = 8;
  std::vector<std::string> names;
  for (int i = 0; i < kThreads; ++i) names.push_back(unique_name("thread"));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      try {
        EngineInfo info;
        info.name = names[i];
        register_engine(info);
        (void)list_engines();
      } catch (...) {
        ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  for (const auto& name : names) EXPECT_EQ(engine_info(name).name, name);
}

}  // namespace
}  // namespace floe
