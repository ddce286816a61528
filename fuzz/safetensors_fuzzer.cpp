// libFuzzer target: a whole safetensors file (8-byte length, JSON header,
// data) through hf::parse_safetensors, the check every safetensors file
// Floe opens goes through. Beyond "no crash", an accepted file must satisfy
// what readers rely on: every tensor's bytes lie inside the file, match its
// shape and dtype, and the tensors tile the data exactly.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "engines/hf/safetensors_header.hpp"
#include "floe/error.hpp"

namespace {

void check(bool ok) {
  if (!ok) std::abort();  // an accepted header broke a reader's assumption
}

void check_accepted(const floe::hf::SafetensorsHeader& h, std::size_t size) {
  check(h.file_size == size);
  check(h.data_start == 8 + h.header_bytes && h.data_start <= size);
  check(h.header_bytes <= floe::hf::kMaxHeaderBytes);
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  for (const auto& t : h.tensors) {
    check(t.begin <= t.end);
    check(t.file_offset == h.data_start + t.begin);
    check(t.nbytes() <= size && t.file_offset <= size - t.nbytes());
    check(t.nbytes() == floe::byte_size(t.shape, floe::dtype_size(t.dtype)));
    check(h.find(t.name) == &t);
    ranges.emplace_back(t.begin, t.end);
  }
  std::sort(ranges.begin(), ranges.end());
  std::uint64_t at = 0;
  for (const auto& [begin, end] : ranges) {
    check(begin == at);
    at = end;
  }
  check(at == size - h.data_start);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    check_accepted(floe::hf::parse_safetensors(bytes, "fuzz.safetensors"), size);
  } catch (const floe::Error&) {
    // Refusing hostile input with a floe::Error is the contract; anything
    // else (another exception, a crash, a sanitizer report) is a bug.
  }
  return 0;
}
