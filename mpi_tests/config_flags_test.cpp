// Configs from a list (parse_configs: order, one auto_resume, errors naming
// the index) and from command-line flags (config_json_from_flags: values
// converted by their kind, errors naming the flag).
#include <filesystem>
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
using test::throws_error;

// ---- parse_configs ----------------------------------------------------------

TEST(ParseConfigs, ObjectIsAListOfOne) {
  const auto configs = parse_configs(base(options_engine()));
  ASSERT_EQ(configs.size(), 1u);
  EXPECT_EQ(configs[0].type, options_engine());
}

TEST(ParseConfigs, ListKeepsOrder) {
  json a = base(options_engine());
  a["auto_resume"] = true;
  json b = base(export_engine());
  b["output_dir"] = "/export";
  const auto configs = parse_configs(json::array({a, b}));
  ASSERT_EQ(configs.size(), 2u);
  EXPECT_TRUE(configs[0].auto_resume);
  EXPECT_EQ(configs[1].type, export_engine());
  EXPECT_EQ(configs[1].output_dir, std::filesystem::path("/export"));
  EXPECT_TRUE(parse_configs(json::array()).empty());
}

TEST(ParseConfigs, TwoAutoResumeConfigsNameBothIndices) {
  json a = base(options_engine());
  a["auto_resume"] = true;
  json b = base(options_engine());
  json c = base(options_engine());
  c["auto_resume"] = true;
  EXPECT_TRUE(throws_error(
      [&] {
        (void)parse_configs(json::array({a, b, c}));
      },
      ErrorCode::kInvalidConfig, {"\"auto_resume\"", "[0]", "[2]"}));
}

TEST(ParseConfigs, ErrorNamesTheIndexAndKeepsTheCode) {
  json a = base(options_engine());
  json b = base(options_engine());
  b["keep_last_n"] = "many";
  EXPECT_TRUE(throws_error(
      [&] {
        (void)parse_configs(json::array({a, b}));
      },
      ErrorCode::kInvalidConfig, {"[1]", "\"keep_last_n\""}));
  EXPECT_TRUE(throws_error([&] { (void)parse_configs(json("hdf5")); },
                           ErrorCode::kInvalidConfig));
}

// ---- config_json_from_flags -------------------------------------------------

TEST(ConfigFlags, ConvertsEachValueByItsKind) {
  const json j = config_json_from_flags({{"type", options_engine()},
                                         {"output_dir", "/ckpt"},
                                         {"enabled", "no"},
                                         {"auto_resume", "YES"},
                                         {"save_end_of_training", "1"},
                                         {"verify_on_load", "false"},
                                         {"save_every_n_steps", "1k"},
                                         {"chunk", "64MiB"},
                                         {"ratio", "0.25"},
                                         {"label", "007"}});
  EXPECT_EQ(j["type"], options_engine());
  EXPECT_EQ(j["output_dir"], "/ckpt");
  EXPECT_EQ(j["enabled"], false);
  EXPECT_EQ(j["auto_resume"], true);
  EXPECT_EQ(j["save_end_of_training"], true);
  EXPECT_EQ(j["verify_on_load"], false);
  EXPECT_EQ(j["ratio"], 0.25);
  EXPECT_EQ(j["label"], "007");  // a string stays a string
  // The JSON parses to the config the flags describe.
  const CheckpointConfig c = parse_config(j);
  EXPECT_FALSE(c.enabled);
  EXPECT_TRUE(c.auto_resume);
  EXPECT_EQ(c.save_every_n_steps, 1000);
  EXPECT_EQ(c.options.get_count("chunk"), 64u << 20);
  EXPECT_EQ(c.options.get_number("ratio"), 0.25);
}

TEST(ConfigFlags, BoolSpellings) {
  for (const char* yes : {"true", "True", "1", "yes", "on"}) {
    EXPECT_EQ(config_json_from_flags(
                  {{"type", options_engine()}, {"compress", yes}})["compress"],
              true)
        << yes;
  }
  for (const char* no : {"false", "FALSE", "0", "no", "off"}) {
    EXPECT_EQ(config_json_from_flags(
                  {{"type", options_engine()}, {"compress", no}})["compress"],
              false)
        << no;
  }
}

TEST(ConfigFlags, ErrorsNameTheFlag) {
  const std::string engine = options_engine();
  EXPECT_TRUE(throws_error(
      [&] {
        (void)config_json_from_flags({{"type", engine}, {"bogus", "1"}});
      },
      ErrorCode::kInvalidConfig,
      {"\"bogus\"", "known:", "keep_last_n", "align"}));
  EXPECT_TRUE(throws_error(
      [&] {
        (void)config_json_from_flags({{"type", engine}, {"enabled", "maybe"}});
      },
      ErrorCode::kInvalidConfig, {"\"enabled\"", "maybe"}));
  EXPECT_TRUE(throws_error(
      [&] {
        (void)config_json_from_flags({{"type", engine}, {"ratio", "fast"}});
      },
      ErrorCode::kInvalidConfig, {"\"ratio\"", "fast"}));
  EXPECT_TRUE(throws_error(
      [&] {
        (void)config_json_from_flags({{"type", engine}, {"ratio", "1.5x"}});
      },
      ErrorCode::kInvalidConfig, {"\"ratio\""}));
  EXPECT_TRUE(throws_error(
      [&] {
        (void)config_json_from_flags({{"type", "hdf6"}});
      },
      ErrorCode::kInvalidConfig, {"\"type\"", "\"hdf6\"", "hdf5"}));
}

TEST(ConfigFlags, BadCountsAreRejectedAtTheFlag) {
  // The contract: a bad value is an error of config_json_from_flags itself,
  // naming the flag, not something left for parse_config to find.
  const std::string engine = options_engine();
  EXPECT_TRUE(throws_error(
      [&] {
        (void)config_json_from_flags(
            {{"type", engine}, {"save_every_n_steps", "ten"}});
      },
      ErrorCode::kInvalidConfig, {"\"save_every_n_steps\""}));
  EXPECT_TRUE(throws_error(
      [&] {
        (void)config_json_from_flags({{"type", engine}, {"keep_last_n", "-1"}});
      },
      ErrorCode::kInvalidConfig, {"\"keep_last_n\""}));
  EXPECT_TRUE(throws_error(
      [&] {
        (void)config_json_from_flags({{"type", engine}, {"align", "3000"}});
      },
      ErrorCode::kInvalidConfig, {"\"align\"", "power of two"}));
}

TEST(ConfigFlags, DefaultTypeIsHdf5) {
  // Without a type flag the common keys still convert (hdf5's own options
  // depend on the build, so only common keys are used here).
  const json j =
      config_json_from_flags({{"output_dir", "/o"}, {"enabled", "off"}});
  EXPECT_EQ(j["enabled"], false);
  EXPECT_FALSE(j.contains("type"));
  EXPECT_EQ(parse_config(j).type, "hdf5");
}

}  // namespace
}  // namespace floe
