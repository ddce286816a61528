// libFuzzer target: model.safetensors.index.json text through
// hf::parse_index. An accepted index must name a file for every tensor.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engines/hf/safetensors_index.hpp"
#include "floe/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const floe::hf::HfIndex index =
        floe::hf::parse_index(text, "fuzz/model.safetensors.index.json");
    for (const auto& entry : index.weight_map) {
      (void)entry;  // walking the map touches every parsed string (ASan)
    }
  } catch (const floe::Error&) {
    // The contract for hostile input; anything else is a bug.
  }
  return 0;
}
