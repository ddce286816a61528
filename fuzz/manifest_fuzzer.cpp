// libFuzzer target: manifest.json text through Manifest::parse, the
// validation every load, verify and resume applies to untrusted manifests.
// An accepted manifest must survive a round trip (to_json, then from_json
// gives the same JSON): what Floe writes back, it reads back; and its text
// as Floe writes it (dump) must be to_json's. Whatever the fast reader
// (parse_as_written) accepts, the general parser must accept alike; and
// its parts (parse_part_as_written, as the ranks of a load scan them)
// together read exactly what it reads, and nothing it refuses.
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "commit/json_fields.hpp"
#include "commit/manifest_text.hpp"
#include "floe/error.hpp"
#include "floe/manifest.hpp"

namespace {

// The records of `parts` parts, in order, when every part reads as written
// and no key repeats.
std::optional<floe::Manifest> joined_parts(const std::string& text, int parts) {
  std::optional<floe::Manifest> out;
  std::vector<std::string_view> keys;
  for (int p = 0; p < parts; ++p) {
    std::optional<floe::ManifestPart> part = floe::parse_part_as_written(text, p, parts);
    if (!part) return std::nullopt;
    if (!out) {
      out = std::move(part->manifest);
    } else {
      for (auto& t : part->manifest.tensors) out->tensors.push_back(std::move(t));
    }
    keys.insert(keys.end(), part->keys.begin(), part->keys.end());
  }
  if (!floe::keys_distinct(keys)) return std::nullopt;
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::optional<floe::Manifest> whole = floe::parse_as_written(text);
  for (const int parts : {2, 3, 5, 16, 64}) {
    const std::optional<floe::Manifest> joined = joined_parts(text, parts);
    if (joined.has_value() != whole.has_value()) std::abort();
    if (joined && joined->to_json() != whole->to_json()) std::abort();
  }
  floe::Manifest manifest;
  try {
    manifest = floe::Manifest::parse(text, "fuzz/manifest.json");
  } catch (const floe::Error&) {
    return 0;  // the contract for hostile input; anything else is a bug
  }
  const nlohmann::json once = manifest.to_json();
  try {
    const floe::Manifest again = floe::Manifest::from_json(once);
    if (again.to_json() != once) std::abort();
  } catch (const floe::Error&) {
    std::abort();  // Floe refused a manifest it wrote itself
  }
  // Parsed strings are valid UTF-8: both printers print them, alike.
  if (manifest.dump() != once.dump()) std::abort();
  if (const auto& fast = whole) {
    try {
      const floe::Manifest general =
          floe::Manifest::from_json(floe::parse_untrusted_json(text, "fuzz"));
      if (general.to_json() != fast->to_json()) std::abort();
    } catch (const floe::Error&) {
      std::abort();  // the fast reader accepted what the parser refuses
    }
  }
  return 0;
}
