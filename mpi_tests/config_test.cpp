// CheckpointConfig parsing: defaults, every common key set, counts with
// units, and engine options (their defaults, checks and lookups). Errors
// that name the key: config_errors_test.cpp; lists of configs and flags:
// config_flags_test.cpp.
#include "floe/config.hpp"

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "config_test_support.hpp"

namespace floe {
namespace {

using nlohmann::json;
using test::base;
using test::options_engine;
using test::rejects;
using test::throws_error;

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

// ---- parse_count ------------------------------------------------------------

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

// A config key is named as a config key; a command-line flag (the CLI's
// "--size", "--buffer") as the flag the user typed.
TEST(ParseCount, NamesAFlagAsAFlagAndAKeyAsAKey) {
  const test::Caught flag =
      test::catch_error([] { (void)parse_count("12XB", "--size", true); });
  EXPECT_TRUE(test::is_error(flag, ErrorCode::kInvalidConfig));
  EXPECT_EQ(flag.message.rfind("--size: \"12XB\" ", 0), 0u) << flag.message;
  EXPECT_EQ(flag.message.find("config key"), std::string::npos) << flag.message;
  const test::Caught key =
      test::catch_error([] { (void)parse_count("12XB", "max_bytes", true); });
  EXPECT_TRUE(test::is_error(key, ErrorCode::kInvalidConfig));
  EXPECT_EQ(key.message.rfind("config key \"max_bytes\": \"12XB\" ", 0), 0u)
      << key.message;
}

// ---- Engine-specific options ------------------------------------------------

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

}  // namespace
}  // namespace floe
