// The keys every engine's config shares, as OptionSpecs, and the one routine
// that checks a value against its spec (JSON and flags both go through it).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "floe/config.hpp"

namespace floe {

// type, output_dir, enabled, save_every_n_steps, ... with their defaults.
const std::vector<OptionSpec>& common_options();

// Checks `value` against `spec` and returns it in canonical form (counts as
// unsigned integers). Throws Error(kInvalidConfig) naming `spec.key`.
nlohmann::json normalize_option(const OptionSpec& spec,
                                const nlohmann::json& value);

// Converts a flag's text to the JSON value normalize_option takes.
nlohmann::json option_from_text(const OptionSpec& spec, const std::string& text);

}  // namespace floe
