// Helpers for the hf suites: raw files on disk, hand-made safetensors files,
// and a model state with every kind of partition.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>

#include "test_util.hpp"

namespace floe::test {

inline std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const std::filesystem::path& path,
                        const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The 8-byte little-endian length prefix for `n`.
inline std::string length_prefix(std::uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out;
}

// A safetensors file of `header` (its length written as the prefix unless
// `length` says otherwise) followed by `data`.
inline void write_safetensors(
    const std::filesystem::path& path, const std::string& header,
    const std::string& data,
    std::optional<std::uint64_t> length = std::nullopt) {
  write_bytes(path,
              length_prefix(length ? *length : header.size()) + header + data);
}

// `n` bytes counting up from `start` (so reads can be checked).
inline std::string counting_bytes(std::size_t n, unsigned start = 0) {
  std::string out(n, '\0');
  for (std::size_t i = 0; i < n; ++i)
    out[i] = static_cast<char>((start + i) & 0xff);
  return out;
}

}  // namespace floe::test
