// The JSON schema of a safetensors header, checked while parsing (SAX), so
// hostile input never becomes a DOM: memory stays proportional to what the
// header legitimately describes. Sizes and offsets are checked by the
// caller (safetensors_header.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "floe/region.hpp"

namespace floe::hf {

// One tensor entry as written: the dtype still a name.
struct HeaderEntry {
  std::string name;
  std::string dtype;
  Shape shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

struct HeaderDocument {
  std::vector<HeaderEntry> entries;  // in header order
  std::vector<std::pair<std::string, std::string>> metadata;
};

// Parses `json` (already known to be UTF-8 starting with '{'): one object,
// then only JSON whitespace; no key twice in any object; `__metadata__`
// null or an object of strings; every other key an object with a string
// `dtype`, a `shape` of integers >= 0 and `data_offsets` of exactly two
// integers >= 0; other fields of an entry are skipped (nested at most 64
// deep), as the reference reader ignores them. Throws Error(kCorrupt)
// prefixed with `what` and naming the tensor or key at fault.
HeaderDocument parse_header_document(std::string_view json,
                                     const std::string& what);

}  // namespace floe::hf
