// CheckpointConfig parsing: defaults, counts with units, and an error that
// names the key for every kind of bad config, from JSON and from flags.
#include "floe/config.hpp"

#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "floe/registry.hpp"
#include "test_util.hpp"

namespace floe {
namespace {

using nlohmann::json;
using test::throws_error;

constexpr const char* kCommonKeys[] = {"type",
                                       "output_dir",
                                       "enabled",
                                       "save_every_n_steps",
                                       "save_every_n_epochs",
                                       "save_end_of_training",
                                       "auto_resume",
                                       "keep_last_n",
                                       "verify_on_load"};

std::string power_of_two(const json& value) {
  const auto v = value.get<std::uint64_t>();
  return v != 0 && (v & (v - 1)) == 0 ? "" : "must be a power of two";
}

// An engine with one option of each kind (registered once per process, so
// --gtest_repeat works). parse_config needs no factory.
const std::string& options_engine() {
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
const std::string& export_engine() {
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

json base(const std::string& type) {
  return json{{"type", type}, {"output_dir", "/ckpt/run1"}};
}

// parse_config(j) fails with kInvalidConfig and names `key` in quotes.
::testing::AssertionResult rejects(
    const json& j, const std::string& key,
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

// ---- Defaults and the happy path --------------------------------------------

TEST(Config, DefaultsOfEveryCommonKey) {
  const CheckpointConfig c = parse_config(json{{"output_dir", "/ckpt/run1"}});
  EXPECT_EQ(c.type, "hdf5");
  EXPECT_EQ(c.output_dir, std::filesystem::path("/ckpt/run1"));
  EXPECT_TRUE(c.enabled);
  EXPECT_EQ(c.save_every_n_steps, 0);
  EXPECT_EQ(c.save_every_n_epochs, 0);
  EXPECT_FALSE(c.save_end_of_training);
  EXPECT_FALSE(c.auto_resume);
  EXPECT_EQ(c.keep_last_n, 0);
  EXPECT_TRUE(c.verify_on_load);
}

TEST(Config, StructDefaultsMatchParsedDefaults) {
  const CheckpointConfig parsed = parse_config(json{{"output_dir", "/x"}});
  const CheckpointConfig plain;
  EXPECT_EQ(parsed.type, plain.type);
  EXPECT_EQ(parsed.enabled, plain.enabled);
  EXPECT_EQ(parsed.save_every_n_steps, plain.save_every_n_steps);
  EXPECT_EQ(parsed.save_every_n_epochs, plain.save_every_n_epochs);
  EXPECT_EQ(parsed.save_end_of_training, plain.save_end_of_training);
  EXPECT_EQ(parsed.auto_resume, plain.auto_resume);
  EXPECT_EQ(parsed.keep_last_n, plain.keep_last_n);
  EXPECT_EQ(parsed.verify_on_load, plain.verify_on_load);
}

TEST(Config, EveryCommonKeySet) {
  const CheckpointConfig c = parse_config(json::parse(R"({
      "type": ")" + options_engine() + R"(", "output_dir": "out",
      "enabled": false, "save_every_n_steps": 100, "save_every_n_epochs": 2,
      "save_end_of_training": true, "auto_resume": true, "keep_last_n": 3,
      "verify_on_load": false})"));
  EXPECT_EQ(c.type, options_engine());
  EXPECT_EQ(c.output_dir, std::filesystem::path("out"));
  EXPECT_FALSE(c.enabled);
  EXPECT_EQ(c.save_every_n_steps, 100);
  EXPECT_EQ(c.save_every_n_epochs, 2);
  EXPECT_TRUE(c.save_end_of_training);
  EXPECT_TRUE(c.auto_resume);
  EXPECT_EQ(c.keep_last_n, 3);
  EXPECT_FALSE(c.verify_on_load);
}

TEST(Config, CountsBuiltAsSignedJsonIntegersAreAccepted) {
  // A C++ caller writing json{{"save_every_n_steps", 10}} makes a signed
  // integer; a positive one is a fine count.
  json j = base(options_engine());
  j["save_every_n_steps"] = 10;
  j["keep_last_n"] = std::int64_t{2};
  j["align"] = 64;
  const CheckpointConfig c = parse_config(j);
  EXPECT_EQ(c.save_every_n_steps, 10);
  EXPECT_EQ(c.keep_last_n, 2);
  EXPECT_EQ(c.options.get_count("align"), 64u);
}

TEST(Config, CountsAcceptUnitsAndWholeFloats) {
  json j = base(options_engine());
  j["save_every_n_steps"] = "1k";
  j["keep_last_n"] = "4Ki";
  j["save_every_n_epochs"] = 3.0;
  j["limit"] = "5GB";
  const CheckpointConfig c = parse_config(j);
  EXPECT_EQ(c.save_every_n_steps, 1000);
  EXPECT_EQ(c.keep_last_n, 4096);
  EXPECT_EQ(c.save_every_n_epochs, 3);
  EXPECT_EQ(c.options.get_count("limit"), 5000000000u);
}

TEST(Config, ToJsonRoundTrips) {
  json j = base(options_engine());
  j["save_every_n_steps"] = 50;
  j["keep_last_n"] = 2;
  j["label"] = "fast";
  j["ratio"] = 0.25;
  const CheckpointConfig c = parse_config(j);
  const json out = c.to_json();
  EXPECT_EQ(out["type"], options_engine());
  EXPECT_EQ(out["output_dir"], "/ckpt/run1");
  EXPECT_EQ(out["label"], "fast");  // engine options sit beside the common keys
  const CheckpointConfig again = parse_config(out);
  EXPECT_EQ(again.to_json(), out);
  EXPECT_EQ(again.save_every_n_steps, 50);
  EXPECT_EQ(again.options.get_number("ratio"), 0.25);
}

// ---- parse_count
// ----------------------------------------------------------------

TEST(Config, ParseCountPlainAndUnits) {
  struct Case {
    const char* text;
    std::uint64_t want;
  };
  const Case counts[] = {
      {"0", 0},
      {"17", 17},
      {"1k", 1000},
      {"1K", 1000},
      {"4Ki", 4096},
      {"4ki", 4096},
      {"2M", 2000000},
      {"3Mi", 3ull << 20},
      {"1G", 1000000000},
      {"1Gi", 1ull << 30},
      {"2T", 2000000000000},
      {"1Ti", 1ull << 40},
      {"1.5k", 1500},
      {"0.5Ki", 512},
      {"1.25Ki", 1280},
      {"0.0009765625Ki", 1},
      {"0.1k", 100},
      {"1.1k", 1100},
      {"1.2G", 1200000000},
      {".5k", 500},
      {"1.000k", 1000},
      {"7.", 7},
      {"3.0", 3},
      {"16Pi", 16ull << 50},
      {"18446744073709551615", std::numeric_limits<std::uint64_t>::max()},
  };
  for (const auto& c : counts) {
    EXPECT_EQ(parse_count(c.text, "n"), c.want) << c.text;
    EXPECT_EQ(parse_count(c.text, "n", /*bytes=*/true), c.want) << c.text;
  }
  const Case sizes[] = {
      {"5GB", 5000000000},  {"500MB", 500000000}, {"64MiB", 64ull << 20},
      {"4096B", 4096},      {"1kB", 1000},        {"1KiB", 1024},
      {"2TiB", 2ull << 40}, {"10b", 10},
  };
  for (const auto& c : sizes) {
    EXPECT_EQ(parse_count(c.text, "n", /*bytes=*/true), c.want) << c.text;
  }
}

TEST(Config, ParseCountErrorsNameTheKey) {
  const std::vector<std::string> bad_counts = {
      "",
      "abc",
      "-1",
      "1x",
      "k",
      "1.5",
      "0.0005k",
      "1..2",
      "1.2.3",
      "1 k",
      "5GB",  // bytes only
      "1kb",
      "1iK",
      "1Kii",
      "18446744073709551616",
      "99999999999999T",
      "16384Pi",
      "1.1",
      "0.0001k",
      "1.00000000000000000001k",
      "1" + std::string(5000, '0'),  // beyond long double, not just uint64
  };
  for (const auto& text : bad_counts) {
    EXPECT_TRUE(throws_error([&] { (void)parse_count(text, "my_key"); },
                             ErrorCode::kInvalidConfig, {"\"my_key\""}))
        << "text: \"" << text.substr(0, 40) << "\"";
  }
  for (const std::string text : {"", "5XB", "5GiBB", "-5GB", "B", "1.5B"}) {
    EXPECT_TRUE(throws_error([&] { (void)parse_count(text, "size_key", true); },
                             ErrorCode::kInvalidConfig, {"\"size_key\""}))
        << "text: \"" << text << "\"";
  }
}

// ---- Errors that name the key
// --------------------------------------------------

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

// ---- Engine-specific options
// ------------------------------------------------------

TEST(EngineOptions, DefaultsFillEveryKey) {
  const CheckpointConfig c = parse_config(base(options_engine()));
  const json& values = c.options.json();
  EXPECT_EQ(values.size(), 6u);
  EXPECT_EQ(c.options.get_count("align"), 4096u);
  EXPECT_EQ(c.options.get_count("limit"), 0u);
  EXPECT_FALSE(c.options.get_bool("compress"));
  EXPECT_EQ(c.options.get_string("label"), "none");
  EXPECT_EQ(c.options.get_number("ratio"), 0.5);
  // Common keys are fields, not options.
  EXPECT_FALSE(values.contains("output_dir"));
  EXPECT_FALSE(values.contains("type"));
}

TEST(EngineOptions, DefaultGivenAsTextIsParsedLikeAValue) {
  // An engine may write a size's default as users write sizes: "1MiB".
  const CheckpointConfig c = parse_config(base(options_engine()));
  EXPECT_EQ(c.options.get_count("chunk"), 1u << 20);
}

TEST(EngineOptions, UserValuesAreValidatedAndNormalized) {
  json j = base(options_engine());
  j["align"] = "8Ki";  // the check sees the parsed value, 8192
  j["chunk"] = "64MiB";
  j["compress"] = true;
  j["label"] = "zstd";
  j["ratio"] = 2;
  const CheckpointConfig c = parse_config(j);
  EXPECT_EQ(c.options.get_count("align"), 8192u);
  EXPECT_EQ(c.options.get_count("chunk"), 64u << 20);
  EXPECT_TRUE(c.options.get_bool("compress"));
  EXPECT_EQ(c.options.get_string("label"), "zstd");
  EXPECT_EQ(c.options.get_number("ratio"), 2.0);
}

TEST(EngineOptions, CheckFunctionRejectsWithItsReason) {
  json j = base(options_engine());
  j["align"] = 3000;
  EXPECT_TRUE(rejects(j, "align", {"must be a power of two", "3000"}));
  j["align"] = "3k";
  EXPECT_TRUE(rejects(j, "align", {"must be a power of two", "3k"}));
  j["align"] = 0;
  EXPECT_TRUE(rejects(j, "align", {"must be a power of two"}));
}

TEST(EngineOptions, UnknownOptionLookupIsAnError) {
  const CheckpointConfig c = parse_config(base(options_engine()));
  EXPECT_TRUE(throws_error([&] { (void)c.options.get_count("alignment"); },
                           ErrorCode::kInvalidConfig, {"\"alignment\""}));
}

// ---- parse_configs
// ---------------------------------------------------------------

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

// ---- config_json_from_flags
// -------------------------------------------------------

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
