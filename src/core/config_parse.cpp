// Parsing and validation of CheckpointConfig from JSON and from flags.
#include <cctype>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "core/config_schema.hpp"
#include "floe/error.hpp"
#include "floe/registry.hpp"

namespace floe {
namespace {

[[noreturn]] void bad(const std::string& key, const std::string& why) {
  throw Error(ErrorCode::kInvalidConfig, "config key \"" + key + "\": " + why);
}

std::string show(const nlohmann::json& value) {
  std::string text = value.dump();
  return text.size() > 60 ? text.substr(0, 57) + "..." : text;
}

std::string lower(std::string text) {
  for (auto& c : text) c = static_cast<char>(std::tolower(c));
  return text;
}

const OptionSpec* find_spec(const std::vector<OptionSpec>& specs,
                            const std::string& key) {
  for (const auto& spec : specs) {
    if (spec.key == key) return &spec;
  }
  return nullptr;
}

std::string known_keys(const std::vector<OptionSpec>& a,
                       const std::vector<OptionSpec>& b) {
  std::string out;
  for (const auto* specs : {&a, &b}) {
    for (const auto& spec : *specs) out += (out.empty() ? "" : ", ") + spec.key;
  }
  return out;
}

// A count's default may be written as users write counts ("64MiB").
nlohmann::json default_of(const OptionSpec& spec) {
  const bool count =
      spec.kind == OptionKind::kCount || spec.kind == OptionKind::kBytes;
  if (count && spec.default_value.is_string()) {
    return parse_count(spec.default_value.get<std::string>(), spec.key,
                       spec.kind == OptionKind::kBytes);
  }
  return spec.default_value;
}

}  // namespace

std::uint64_t parse_count(const std::string& text, const std::string& key,
                          bool bytes) {
  auto fail = [&](const std::string& why) {
    const std::string message =
        "\"" + text + "\" " + why +
        (bytes ? " (expected e.g. 4096, \"500MB\", \"5GB\", \"64MiB\")"
               : " (expected e.g. 100, \"1k\", \"4Ki\")");
    // The CLI passes its flags ("--size"): a user who typed a flag is told
    // about that flag, not about a config key they never wrote.
    if (key.rfind("--", 0) == 0) {
      throw Error(ErrorCode::kInvalidConfig, key + ": " + message);
    }
    bad(key, message);
  };
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) ||
                             text[i] == '.')) {
    ++i;
  }
  const std::string number = text.substr(0, i);
  std::string suffix = lower(text.substr(i));
  if (number.empty() || number == "." ||
      number.find('.') != number.rfind('.')) {
    fail("is not a count");
  }
  if (bytes && !suffix.empty() && suffix.back() == 'b') suffix.pop_back();
  // Exact integer arithmetic, whatever long double is: 2^64-1 and "1.5Ki"
  // come out exact, and a thousand digits are "too large", not a crash.
  std::uint64_t scale = 1;  // at most 1024^5 = 2^50
  if (!suffix.empty()) {
    static const std::string kLetters = "kmgtp";
    const auto power = kLetters.find(suffix[0]);
    const bool binary = suffix.size() == 2 && suffix[1] == 'i';
    if (power == std::string::npos || suffix.size() > 2 ||
        (suffix.size() == 2 && !binary)) {
      fail("has an unknown unit");
    }
    for (std::size_t p = 0; p <= power; ++p) scale *= binary ? 1024 : 1000;
  }
  const auto dot = number.find('.');
  std::uint64_t whole = 0;
  for (char c : number.substr(0, dot)) {
    if (__builtin_mul_overflow(whole, 10u, &whole) ||
        __builtin_add_overflow(whole, static_cast<unsigned>(c - '0'), &whole)) {
      fail("is too large");
    }
  }
  std::uint64_t value = 0;
  if (__builtin_mul_overflow(whole, scale, &value)) fail("is too large");
  std::string fraction = dot == std::string::npos ? "" : number.substr(dot + 1);
  while (!fraction.empty() && fraction.back() == '0') fraction.pop_back();
  if (!fraction.empty()) {
    // numerator / 10^n * scale must be whole; 19 decimals fit in 64 bits,
    // and no sane count has more.
    if (fraction.size() > 19) fail("is not a whole number");
    std::uint64_t numerator = 0, denominator = 1;
    for (char c : fraction) {
      numerator = numerator * 10 + static_cast<unsigned>(c - '0');
      denominator *= 10;
    }
    const std::uint64_t common = std::gcd(scale, denominator);
    const std::uint64_t divisor = denominator / common;
    std::uint64_t part = 0;
    if (numerator % divisor != 0) fail("is not a whole number");
    if (__builtin_mul_overflow(numerator / divisor, scale / common, &part) ||
        __builtin_add_overflow(value, part, &value)) {
      fail("is too large");
    }
  }
  return value;
}

nlohmann::json normalize_option(const OptionSpec& spec,
                                const nlohmann::json& value) {
  const std::string& key = spec.key;
  nlohmann::json out;
  switch (spec.kind) {
    case OptionKind::kBool:
      if (!value.is_boolean()) bad(key, "expected true or false, got " + show(value));
      out = value;
      break;
    case OptionKind::kString:
      if (!value.is_string()) bad(key, "expected a string, got " + show(value));
      out = value;
      break;
    case OptionKind::kNumber:
      if (!value.is_number()) bad(key, "expected a number, got " + show(value));
      if (!std::isfinite(value.get<double>()) || value.get<double>() < 0) {
        bad(key, "must be a finite number >= 0, got " + show(value));
      }
      out = value.get<double>();
      break;
    case OptionKind::kCount:
    case OptionKind::kBytes: {
      const bool bytes = spec.kind == OptionKind::kBytes;
      if (value.is_number_unsigned()) {
        out = value.get<std::uint64_t>();
      } else if (value.is_number_integer()) {
        // Signed: what json{{"keep_last_n", 2}} and to_json() make.
        if (value.get<std::int64_t>() < 0) {
          bad(key, "must be >= 0, got " + show(value));
        }
        out = static_cast<std::uint64_t>(value.get<std::int64_t>());
      } else if (value.is_number_float()) {
        const double v = value.get<double>();
        if (v < 0) bad(key, "must be >= 0, got " + show(value));
        if (v != std::floor(v) || v > 1.8e19) {
          bad(key, "expected a whole number, got " + show(value));
        }
        out = static_cast<std::uint64_t>(v);
      } else if (value.is_string()) {
        const auto text = value.get<std::string>();
        if (!text.empty() && text[0] == '-') bad(key, "must be >= 0, got " + show(value));
        out = parse_count(text, key, bytes);
      } else {
        bad(key, std::string("expected a ") + (bytes ? "size" : "count") +
                     ", got " + show(value));
      }
      break;
    }
  }
  if (spec.check) {
    const std::string why = spec.check(out);
    if (!why.empty()) bad(key, why + ", got " + show(value));
  }
  return out;
}

nlohmann::json option_from_text(const OptionSpec& spec, const std::string& text) {
  switch (spec.kind) {
    case OptionKind::kBool: {
      const std::string t = lower(text);
      if (t == "true" || t == "1" || t == "yes" || t == "on") return true;
      if (t == "false" || t == "0" || t == "no" || t == "off") return false;
      bad(spec.key, "expected true or false, got \"" + text + "\"");
    }
    case OptionKind::kNumber:
      try {
        std::size_t used = 0;
        const double v = std::stod(text, &used);
        if (used != text.size()) throw std::invalid_argument(text);
        return v;
      } catch (const std::exception&) {
        bad(spec.key, "expected a number, got \"" + text + "\"");
      }
    case OptionKind::kCount:
    case OptionKind::kBytes:
    case OptionKind::kString:
      return text;  // counts keep their text: normalize_option parses units
  }
  return text;
}

CheckpointConfig parse_config(const nlohmann::json& json) {
  if (!json.is_object()) {
    throw Error(ErrorCode::kInvalidConfig,
                "a checkpoint config must be a JSON object, got " + show(json));
  }
  const auto& common = common_options();
  std::string type = "hdf5";
  if (auto it = json.find("type"); it != json.end()) {
    type = normalize_option(common[0], *it).get<std::string>();
  }
  const EngineInfo* engine = nullptr;
  try {
    engine = &engine_info(type);
  } catch (const Error& e) {
    throw Error(ErrorCode::kInvalidConfig,
                std::string("config key \"type\": ") + e.what());
  }

  nlohmann::json values = nlohmann::json::object();
  for (const auto* specs : {&common, &engine->options}) {
    for (const auto& spec : *specs) values[spec.key] = default_of(spec);
  }
  for (const auto& [key, value] : json.items()) {
    const OptionSpec* spec = find_spec(common, key);
    if (!spec) spec = find_spec(engine->options, key);
    if (!spec) {
      bad(key, "unknown key for engine \"" + type +
                   "\" (known: " + known_keys(common, engine->options) + ")");
    }
    values[key] = normalize_option(*spec, value);
  }

  CheckpointConfig config;
  config.type = type;
  config.output_dir = values["output_dir"].get<std::string>();
  if (config.output_dir.empty()) bad("output_dir", "must not be empty");
  config.enabled = values["enabled"].get<bool>();
  auto count = [&](const char* key) {
    const auto v = values[key].get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      bad(key, "is too large");
    }
    return static_cast<std::int64_t>(v);
  };
  config.save_every_n_steps = count("save_every_n_steps");
  config.save_every_n_epochs = count("save_every_n_epochs");
  config.save_end_of_training = values["save_end_of_training"].get<bool>();
  config.auto_resume = values["auto_resume"].get<bool>();
  config.keep_last_n = count("keep_last_n");
  config.verify_on_load = values["verify_on_load"].get<bool>();
  config.async = values["async"].get<bool>();
  config.staging_pool_limit = values["staging_pool_limit"].get<std::uint64_t>();
  config.trace_phases = values["trace_phases"].get<bool>();
  config.load_exchange = values["load_exchange"].get<bool>();
  config.direct_io = values["direct_io"].get<bool>();
  if (config.async && !engine->resumable) {
    bad("async", "engine \"" + type +
                     "\" exports in one synchronous pass; asynchronous saves are "
                     "for the resumable engines (hdf5, mpiio)");
  }
  if (config.auto_resume && !engine->resumable) {
    bad("auto_resume", "engine \"" + type +
                           "\" writes checkpoints that cannot be resumed from");
  }
  nlohmann::json engine_values = nlohmann::json::object();
  for (const auto& spec : engine->options) engine_values[spec.key] = values[spec.key];
  config.options = EngineOptions(std::move(engine_values));
  return config;
}

std::vector<CheckpointConfig> parse_configs(const nlohmann::json& json) {
  if (json.is_object()) return {parse_config(json)};
  if (!json.is_array()) {
    throw Error(ErrorCode::kInvalidConfig,
                "checkpoint configs must be an object or a list of objects");
  }
  std::vector<CheckpointConfig> out;
  long resumer = -1;
  for (std::size_t i = 0; i < json.size(); ++i) {
    try {
      out.push_back(parse_config(json[i]));
    } catch (const Error& e) {
      throw Error(e.code(), "checkpoint config [" + std::to_string(i) + "]: " + e.what());
    }
    if (!out.back().auto_resume) continue;
    if (resumer >= 0) {
      throw Error(ErrorCode::kInvalidConfig,
                  "config key \"auto_resume\": set in checkpoint configs [" +
                      std::to_string(resumer) + "] and [" + std::to_string(i) +
                      "]; at most one engine may resume");
    }
    resumer = static_cast<long>(i);
  }
  return out;
}

nlohmann::json config_json_from_flags(
    const std::vector<std::pair<std::string, std::string>>& flags) {
  std::string type = "hdf5";
  for (const auto& [key, value] : flags) {
    if (key == "type") type = value;
  }
  const auto& common = common_options();
  const std::vector<OptionSpec>* engine_options = nullptr;
  try {
    engine_options = &engine_info(type).options;
  } catch (const Error& e) {
    throw Error(ErrorCode::kInvalidConfig,
                std::string("config key \"type\": ") + e.what());
  }
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, value] : flags) {
    const OptionSpec* spec = find_spec(common, key);
    if (!spec) spec = find_spec(*engine_options, key);
    if (!spec) {
      bad(key, "unknown key for engine \"" + type + "\" (known: " +
                   known_keys(common, *engine_options) + ")");
    }
    // Checked here, so a bad flag is reported as the flag it is.
    out[key] = normalize_option(*spec, option_from_text(*spec, value));
  }
  return out;
}

}  // namespace floe
