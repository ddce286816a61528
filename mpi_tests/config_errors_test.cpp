// parse_config's errors: for every kind of bad config, kInvalidConfig naming
// the key (and, for an unknown key or engine, what is known).
#include <limits>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "config_test_support.hpp"

namespace floe {
namespace {

using nlohmann::json;
using test::base;
using test::export_engine;
using test::options_engine;
using test::rejects;
using test::throws_error;

// The keys of every config, whatever its engine: an unknown key's error
// lists them all.
constexpr const char* kCommonKeys[] = {"type",
                                       "output_dir",
                                       "enabled",
                                       "save_every_n_steps",
                                       "save_every_n_epochs",
                                       "save_end_of_training",
                                       "auto_resume",
                                       "keep_last_n",
                                       "verify_on_load"};

TEST(ConfigErrors, UnknownKeyListsTheKnownKeys) {
  json j = base(options_engine());
  j["save_every_n_step"] = 10;  // a typo
  EXPECT_TRUE(rejects(j, "save_every_n_step", {"known:"}));
  const auto caught = test::catch_error([&] { (void)parse_config(j); });
  for (const char* key : kCommonKeys) {
    EXPECT_NE(caught.message.find(key), std::string::npos)
        << key << ": " << caught.message;
  }
  for (const char* key :
       {"align", "chunk", "limit", "compress", "label", "ratio"}) {
    EXPECT_NE(caught.message.find(key), std::string::npos)
        << key << ": " << caught.message;
  }
}

TEST(ConfigErrors, AnotherEnginesOptionIsUnknown) {
  json j = base(export_engine());
  j["align"] = 4096;
  EXPECT_TRUE(rejects(j, "align", {export_engine()}));
}

TEST(ConfigErrors, WrongTypeForEachKind) {
  struct Case {
    const char* key;
    json value;
  };
  const Case cases[] = {
      {"enabled", "yes"},              // bool given a string
      {"enabled", 1},                  // bool given a number
      {"auto_resume", nullptr},        // bool given null
      {"save_every_n_steps", true},    // count given a bool
      {"keep_last_n", json::array()},  // count given an array
      {"save_every_n_epochs", json::object()},
      {"output_dir", 5},     // string given a number
      {"type", false},       // string given a bool
      {"limit", true},       // bytes given a bool
      {"ratio", "fast"},     // number given a string
      {"ratio", true},       // number given a bool
      {"label", 3.5},        // engine string given a number
      {"compress", "true"},  // engine bool given a string
  };
  for (const auto& c : cases) {
    json j = base(options_engine());
    j[c.key] = c.value;
    EXPECT_TRUE(rejects(j, c.key, {"expected"}))
        << c.key << " = " << c.value.dump();
  }
}

TEST(ConfigErrors, NegativeAndImpossibleNumbers) {
  struct Case {
    const char* key;
    json value;
    const char* says;
  };
  const Case cases[] = {
      {"save_every_n_steps", -1, ">= 0"},
      {"keep_last_n", json::parse("-3"), ">= 0"},
      {"save_every_n_epochs", "-5", ">= 0"},
      {"keep_last_n", -1.0, ">= 0"},
      {"limit", "-1GB", ">= 0"},
      {"ratio", -0.5, ">= 0"},
      {"save_every_n_steps", 2.5, "whole number"},
      {"save_every_n_steps", "2.5", "whole number"},
      {"save_every_n_steps", "ten", "not a count"},
      {"keep_last_n", std::numeric_limits<std::uint64_t>::max(), "too large"},
  };
  for (const auto& c : cases) {
    json j = base(options_engine());
    j[c.key] = c.value;
    EXPECT_TRUE(rejects(j, c.key, {c.says}))
        << c.key << " = " << c.value.dump();
  }
}

TEST(ConfigErrors, EmptyOrMissingOutputDir) {
  EXPECT_TRUE(rejects(json{{"type", options_engine()}}, "output_dir"));
  EXPECT_TRUE(rejects(json{{"type", options_engine()}, {"output_dir", ""}},
                      "output_dir"));
  EXPECT_TRUE(rejects(json::object(), "output_dir"));
}

TEST(ConfigErrors, UnknownEngineTypeListsKnownEngines) {
  options_engine();
  export_engine();
  json j = base("hdf6");
  EXPECT_TRUE(rejects(
      j, "type",
      {"\"hdf6\"", "hdf5", "mpiio", "hf", options_engine(), export_engine()}));
}

TEST(ConfigErrors, NotAnObject) {
  for (const json& j : {json::array(), json("hdf5"), json(3), json(nullptr)}) {
    EXPECT_TRUE(throws_error([&] { (void)parse_config(j); },
                             ErrorCode::kInvalidConfig, {"object"}))
        << j.dump();
  }
}

TEST(ConfigErrors, AutoResumeNeedsAResumableEngine) {
  json j = base(export_engine());
  j["auto_resume"] = true;
  EXPECT_TRUE(rejects(j, "auto_resume", {export_engine()}));
  j["auto_resume"] = false;
  EXPECT_FALSE(parse_config(j).auto_resume);
}

}  // namespace
}  // namespace floe
