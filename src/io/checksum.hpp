// XXH3-64 checksums of pieces of data, streaming or in one call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace floe {

std::uint64_t xxh3_64(const void* data, std::size_t size);

// Checksums data that arrives in parts; digest() equals xxh3_64 of the
// concatenation.
class Xxh3Stream {
 public:
  Xxh3Stream();
  ~Xxh3Stream();
  Xxh3Stream(Xxh3Stream&&) noexcept;
  Xxh3Stream& operator=(Xxh3Stream&&) noexcept;

  void update(const void* data, std::size_t size);
  std::uint64_t digest() const;

  // The running state as bytes, for another process of the same build to
  // continue with from_state_bytes(): a stream passed along the ranks that
  // each hold a part of the data digests as if one had seen it all.
  std::string state_bytes() const;
  // Throws Error(kInvalidArgument) for bytes that state_bytes() of this
  // build cannot have made (wrong size).
  static Xxh3Stream from_state_bytes(const std::string& bytes);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// "xxh3:0123456789abcdef" and back; parse throws Error(kCorrupt).
std::string format_xxh3(std::uint64_t value);
std::uint64_t parse_xxh3(const std::string& text);

}  // namespace floe
