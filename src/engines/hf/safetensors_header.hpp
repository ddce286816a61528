// The safetensors header: parsing and validating it exactly as the
// reference (Rust) reader does, from bytes that may be hostile. Pure
// functions of their input, so a fuzzer can drive them directly.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "floe/dtype.hpp"
#include "floe/region.hpp"

namespace floe::hf {

// The reference reader's bound on the header length N (HeaderTooLarge).
inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

// Throws Error(kCorrupt, "<what>: <why>"): how the safetensors readers
// (header, index) name a file whose contents are wrong.
[[noreturn]] void corrupt(const std::string& what, const std::string& why);

struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  std::uint64_t begin = 0;  // data_offsets, relative to the data buffer
  std::uint64_t end = 0;
  std::uint64_t file_offset = 0;  // absolute: 8 + N + begin

  std::uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::uint64_t header_bytes = 0;  // N
  std::uint64_t data_start = 0;    // 8 + N
  std::uint64_t file_size = 0;
  std::vector<SafetensorsTensor> tensors;  // in header order
  // __metadata__, in header order (empty when absent or null).
  std::vector<std::pair<std::string, std::string>> metadata;

  // The tensor named `name`, or nullptr.
  const SafetensorsTensor* find(const std::string& name) const;
};

// Reads N from the file's first 8 bytes and checks it against the file's
// size: the file must hold the 8-byte prefix, N <= kMaxHeaderBytes and
// 8 + N <= file_size. `what` names the file in errors. Throws
// Error(kCorrupt) naming the rule broken.
std::uint64_t parse_header_length(const unsigned char (&prefix)[8],
                                  std::uint64_t file_size,
                                  const std::string& what);

// Validates header text `json` (the N bytes after the prefix) of a file of
// `file_size` bytes: UTF-8; a JSON object that starts with '{' (trailing
// whitespace allowed); no key twice in any object; every entry but
// __metadata__ with a known `dtype`, a `shape` of integers >= 0 and
// `data_offsets` [begin, end] (other fields are ignored, as the reference
// does); end - begin == the shape's byte size (overflow-checked); the
// offsets, sorted, tile [0, file_size - 8 - N) with no overlap, hole or
// trailing byte; __metadata__ an object of strings (or null). Throws
// Error(kCorrupt) naming `what` and the rule (kUnsupported for a dtype the
// reference knows but Floe does not, such as C64).
SafetensorsHeader parse_header(std::string_view json, std::uint64_t file_size,
                               const std::string& what);

// Both steps over a whole file held in memory (what a fuzzer feeds).
SafetensorsHeader parse_safetensors(std::string_view file_bytes,
                                    const std::string& what);

}  // namespace floe::hf
