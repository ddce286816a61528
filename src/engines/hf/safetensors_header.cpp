#include "engines/hf/safetensors_header.hpp"

#include <algorithm>
#include <cstring>
#include <tuple>

#include "core/shape_text.hpp"
#include "engines/hf/header_schema.hpp"
#include "floe/error.hpp"

namespace floe::hf {

void corrupt(const std::string& what, const std::string& why) {
  throw Error(ErrorCode::kCorrupt, what + ": " + why);
}

namespace {

// Dtypes the reference reader knows and Floe does not.
constexpr const char* kForeignDtypes[] = {
    "F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "C64"};

std::string offsets_text(std::uint64_t begin, std::uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

// The byte offset of the first invalid UTF-8 sequence, or npos.
std::size_t invalid_utf8_at(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    std::uint32_t min = 0, cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
      min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
      min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
      min = 0x10000;
    } else
      return i;
    if (i + len > s.size()) return i;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += len;
  }
  return std::string_view::npos;
}

DType entry_dtype(const HeaderEntry& e, const std::string& what) {
  const std::string where = "tensor \"" + e.name + "\": ";
  for (const char* foreign : kForeignDtypes) {
    if (e.dtype == foreign) {
      throw Error(ErrorCode::kUnsupported, what + ": " + where + "dtype " +
                                               e.dtype +
                                               " is not supported by Floe");
    }
  }
  try {
    return parse_dtype(e.dtype);
  } catch (const Error&) {
    corrupt(what, where + "unknown dtype \"" + e.dtype + "\"");
  }
}

// Checks sizes and that the sorted offsets tile the data buffer.
void check_layout(SafetensorsHeader& h, const std::string& what) {
  for (auto& t : h.tensors) {
    const std::string where = "tensor \"" + t.name + "\": ";
    if (t.end < t.begin) {
      corrupt(what, where + "data_offsets " + offsets_text(t.begin, t.end) +
                        " end before they begin");
    }
    std::uint64_t need = 0;
    try {
      need = byte_size(t.shape, dtype_size(t.dtype));
    } catch (const Error&) {
      corrupt(what, where + "the byte size of " + shape_text(t.dtype, t.shape) +
                        " overflows 64 bits");
    }
    if (t.end - t.begin != need) {
      corrupt(what, where + "data_offsets " + offsets_text(t.begin, t.end) +
                        " hold " + std::to_string(t.end - t.begin) +
                        " bytes but " + shape_text(t.dtype, t.shape) +
                        " needs " + std::to_string(need));
    }
  }
  std::vector<const SafetensorsTensor*> sorted;
  for (const auto& t : h.tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) {
    return std::tie(a->begin, a->end, a->name) <
           std::tie(b->begin, b->end, b->name);
  });
  std::uint64_t at = 0;
  const SafetensorsTensor* previous = nullptr;
  for (const auto* t : sorted) {
    if (t->begin < at) {
      corrupt(what, "tensor \"" + t->name + "\": data_offsets " +
                        offsets_text(t->begin, t->end) + " overlap tensor \"" +
                        previous->name + "\" " +
                        offsets_text(previous->begin, previous->end));
    }
    if (t->begin > at) {
      corrupt(what, "data bytes [" + std::to_string(at) + ", " +
                        std::to_string(t->begin) +
                        ") belong to no tensor (a hole before tensor \"" +
                        t->name + "\")");
    }
    at = t->end;
    previous = t;
  }
  const std::uint64_t data_bytes = h.file_size - h.data_start;
  if (at < data_bytes) {
    corrupt(what,
            std::to_string(data_bytes - at) +
                " trailing bytes after the last tensor's data (the file is " +
                std::to_string(h.file_size) +
                " bytes, the header accounts for " +
                std::to_string(h.data_start + at) + ")");
  }
  if (at > data_bytes) {
    corrupt(what, "the tensors need " + std::to_string(at) +
                      " bytes of data but the file holds " +
                      std::to_string(data_bytes) +
                      " after its header (truncated?)");
  }
  // Every begin now lies inside the file: no overflow.
  for (auto& t : h.tensors) t.file_offset = h.data_start + t.begin;
}

}  // namespace

const SafetensorsTensor* SafetensorsHeader::find(
    const std::string& name) const {
  for (const auto& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::uint64_t parse_header_length(const unsigned char (&prefix)[8],
                                  std::uint64_t file_size,
                                  const std::string& what) {
  if (file_size < 8) {
    corrupt(what, "the file is " + std::to_string(file_size) +
                      " bytes, too small for the 8-byte header length");
  }
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[i];
  if (n > kMaxHeaderBytes) {
    corrupt(what, "header length " + std::to_string(n) +
                      " exceeds the limit of " +
                      std::to_string(kMaxHeaderBytes) + " bytes");
  }
  if (n > file_size - 8) {
    corrupt(what, "header length " + std::to_string(n) +
                      " runs past the end of the file (" +
                      std::to_string(file_size) + " bytes)");
  }
  return n;
}

SafetensorsHeader parse_header(std::string_view json, std::uint64_t file_size,
                               const std::string& what) {
  SafetensorsHeader h;
  h.header_bytes = json.size();
  h.data_start = 8 + json.size();
  h.file_size = file_size;
  if (json.size() > kMaxHeaderBytes || h.data_start > file_size) {
    corrupt(what, "header length " + std::to_string(json.size()) +
                      " does not fit the file");
  }
  if (const auto bad = invalid_utf8_at(json); bad != std::string_view::npos) {
    corrupt(what, "the header is not valid UTF-8 (at header byte " +
                      std::to_string(bad) + ")");
  }
  if (json.empty() || json.front() != '{') {
    corrupt(what, "the header does not start with '{'");
  }
  // nlohmann's lexer takes a NUL byte for the end of input and would accept
  // "{...}\0<anything>"; JSON allows no NUL anywhere.
  if (const auto nul = json.find('\0'); nul != std::string_view::npos) {
    corrupt(what,
            "invalid JSON: a NUL byte at header byte " + std::to_string(nul));
  }
  HeaderDocument doc = parse_header_document(json, what);
  h.metadata = std::move(doc.metadata);
  h.tensors.reserve(doc.entries.size());
  for (auto& e : doc.entries) {
    SafetensorsTensor t;
    t.dtype = entry_dtype(e, what);
    t.name = std::move(e.name);
    t.shape = std::move(e.shape);
    t.begin = e.begin;
    t.end = e.end;
    h.tensors.push_back(std::move(t));
  }
  check_layout(h, what);
  return h;
}

SafetensorsHeader parse_safetensors(std::string_view file_bytes,
                                    const std::string& what) {
  unsigned char prefix[8] = {};
  if (!file_bytes.empty()) {
    std::memcpy(prefix, file_bytes.data(),
                std::min<std::size_t>(8, file_bytes.size()));
  }
  const std::uint64_t n = parse_header_length(prefix, file_bytes.size(), what);
  return parse_header(file_bytes.substr(8, n), file_bytes.size(), what);
}

}  // namespace floe::hf
