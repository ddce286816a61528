// The scanner under manifest_scan.cpp: reads JSON text exactly as
// Manifest::dump() writes it (compact, plain ASCII strings, plain digits)
// and gives up, throwing NotAsWritten, at the first surprise.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#include <nlohmann/json.hpp>

#include "floe/shape.hpp"

namespace floe::scan {

// Thrown to give up; caught in parse_part_as_written.
struct NotAsWritten {};

// What each byte is inside a record's string: printable ASCII but the
// backslash (kPlain), the closing quote, or anything else (a control byte,
// the NUL after the text included, an escape, a non-ASCII byte).
enum ByteKind : unsigned char { kPlain, kQuote, kOther };
struct ByteKinds {
  ByteKind of[256];
  constexpr ByteKinds() : of() {
    for (int c = 0; c < 256; ++c) of[c] = c >= 0x20 && c < 0x80 && c != '\\' ? kPlain : kOther;
    of[static_cast<unsigned char>('"')] = kQuote;
  }
};
inline constexpr ByteKinds kByteKinds;

// A lowercase hex digit's value; -1 for any other byte.
struct HexDigits {
  signed char of[256];
  constexpr HexDigits() : of() {
    for (int c = 0; c < 256; ++c) of[c] = -1;
    for (int c = '0'; c <= '9'; ++c) of[c] = static_cast<signed char>(c - '0');
    for (int c = 'a'; c <= 'f'; ++c) of[c] = static_cast<signed char>(c - 'a' + 10);
  }
};
inline constexpr HexDigits kHexDigits;

class Scanner {
 public:
  // `text` is followed by a NUL byte (as a std::string's is), which
  // plain_string() stops at.
  explicit Scanner(std::string_view text, std::size_t at = 0) : text_(text), at_(at) {}

  bool at_end() const { return at_ == text_.size(); }
  std::size_t position() const { return at_; }
  bool next_is(char c) const { return at_ < text_.size() && text_[at_] == c; }

  // Consumes `literal` (a string literal: its length is known where this
  // is inlined, so the comparison is a few loads, not a memcmp call) or
  // gives up.
  template <std::size_t N>
  void expect(const char (&literal)[N]) {
    if (!accept(literal)) throw NotAsWritten{};
  }
  template <std::size_t N>
  bool accept(const char (&literal)[N]) {
    constexpr std::size_t n = N - 1;
    if (text_.size() - at_ < n || std::memcmp(text_.data() + at_, literal, n) != 0) return false;
    at_ += n;
    return true;
  }
  bool accept(std::string_view literal) {
    if (text_.compare(at_, literal.size(), literal) != 0) return false;
    at_ += literal.size();
    return true;
  }

  // A string of printable ASCII without escapes.
  std::string_view plain_string() {
    expect("\"");
    const std::size_t start = at_;
    // No bounds check: the NUL after the text is kOther.
    const char* p = text_.data() + at_;
    while (kByteKinds.of[static_cast<unsigned char>(*p)] == kPlain) ++p;
    if (kByteKinds.of[static_cast<unsigned char>(*p)] != kQuote) throw NotAsWritten{};
    at_ = static_cast<std::size_t>(p - text_.data()) + 1;
    return text_.substr(start, at_ - 1 - start);
  }

  // Plain decimal digits as JSON writes them (no leading zero), fitting 64
  // bits: what nlohmann reads as an unsigned integer.
  std::uint64_t u64() {
    const std::size_t start = at_;
    std::uint64_t value = 0;
    for (; at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9'; ++at_) {
      if (__builtin_mul_overflow(value, 10u, &value) ||
          __builtin_add_overflow(value, static_cast<unsigned>(text_[at_] - '0'), &value)) {
        throw NotAsWritten{};
      }
    }
    const std::size_t digits = at_ - start;
    if (digits == 0 || (digits > 1 && text_[start] == '0')) throw NotAsWritten{};
    return value;
  }

  // An integer of int64 range (from_json's i64: a negative one, or an
  // unsigned one up to INT64_MAX). "-0" is left to the general parser.
  std::int64_t i64() {
    const bool negative = accept("-");
    const std::uint64_t magnitude = u64();
    if (negative) {
      if (magnitude == 0 || magnitude > static_cast<std::uint64_t>(INT64_MAX) + 1) {
        throw NotAsWritten{};
      }
      return static_cast<std::int64_t>(0 - magnitude);
    }
    if (magnitude > static_cast<std::uint64_t>(INT64_MAX)) throw NotAsWritten{};
    return static_cast<std::int64_t>(magnitude);
  }

  // [d, d, ...] of u64 digits, as a Shape: gathered first, so the Shape is
  // allocated once at its size (a manifest of 20,000 tensors holds ~60,000
  // of these lists).
  Shape dims() {
    std::uint64_t values[64];
    std::size_t n = 0;
    expect("[");
    if (accept("]")) return Shape();
    do {
      if (n == 64) throw NotAsWritten{};
      values[n++] = u64();
    } while (accept(","));
    expect("]");
    return Shape(values, values + n);
  }

  // "xxh3:" and 16 lowercase hex digits, as format_xxh3 writes them
  // (anything else parse_xxh3 may accept goes to the general parser).
  std::uint64_t checksum() {
    const std::string_view text = plain_string();
    if (text.size() != 21 || text.compare(0, 5, "xxh3:") != 0) throw NotAsWritten{};
    std::uint64_t value = 0;
    int bad = 0;
    for (std::size_t i = 5; i < 21; ++i) {
      const int digit = kHexDigits.of[static_cast<unsigned char>(text[i])];
      bad |= digit;
      value = value << 4 | static_cast<std::uint64_t>(digit & 0xf);
    }
    if (bad < 0) throw NotAsWritten{};
    return value;
  }

  // One JSON value of any kind, delimited by its brackets and quotes and
  // parsed by nlohmann (which checks it fully: numbers, escapes, UTF-8).
  nlohmann::json any_value() {
    const std::size_t start = at_;
    int depth = 0;
    do {
      if (at_ >= text_.size()) throw NotAsWritten{};
      const char c = text_[at_++];
      if (c == '"') {
        while (at_ < text_.size() && text_[at_] != '"') at_ += text_[at_] == '\\' ? 2 : 1;
        if (at_++ >= text_.size()) throw NotAsWritten{};
      } else if (c == '{' || c == '[') {
        // As parse_untrusted_json: the tree is built only below this depth.
        if (++depth > 60) throw NotAsWritten{};
      } else if (c == '}' || c == ']') {
        --depth;
      } else if (depth == 0) {
        // A bare scalar: up to the delimiter that follows it.
        while (at_ < text_.size() && text_[at_] != ',' && text_[at_] != '}' &&
               text_[at_] != ']') {
          ++at_;
        }
      }
    } while (depth > 0);
    if (depth < 0) throw NotAsWritten{};
    nlohmann::json value =
        nlohmann::json::parse(text_.substr(start, at_ - start), nullptr, false);
    if (value.is_discarded()) throw NotAsWritten{};
    return value;
  }

 private:
  std::string_view text_;
  std::size_t at_ = 0;
};

}  // namespace floe::scan
