// libFuzzer target: manifest.json text through Manifest::parse, the
// validation every load, verify and resume applies to untrusted manifests.
// An accepted manifest must survive a round trip (to_json, then from_json
// gives the same JSON): what Floe writes back, it reads back; and its text
// as Floe writes it (dump) must be to_json's. Whatever the fast reader
// (parse_as_written) accepts, the general parser must accept alike.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "commit/json_fields.hpp"
#include "commit/manifest_text.hpp"
#include "floe/error.hpp"
#include "floe/manifest.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
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
  if (const auto fast = floe::parse_as_written(text)) {
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
