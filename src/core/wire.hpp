// A little-endian byte writer and a bounds-checked reader, for messages
// exchanged between ranks (layouts, records).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "floe/error.hpp"
#include "floe/region.hpp"

namespace floe {

class WireWriter {
 public:
  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u64(std::uint64_t v) {
    char bytes[8];
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    std::memcpy(bytes, &v, 8);  // one store, not eight (a layout has ~10 a piece)
#else
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(v >> (8 * i));
#endif
    out_.append(bytes, 8);
  }
  // LEB128: 7 bits a byte, low first; one byte below 128. For the many
  // small numbers of a message (ranks, dimensions, sizes).
  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>(v | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  void str(std::string_view s) {
    u64(s.size());
    out_ += s;
  }
  // A string whose length is a varint.
  void short_str(std::string_view s) {
    varint(s.size());
    out_ += s;
  }
  const std::string& bytes() const { return out_; }

 private:
  std::string out_;
};

class WireReader {
 public:
  explicit WireReader(std::string_view in) : in_(in) {}
  bool done() const { return at_ == in_.size(); }
  std::uint8_t u8() {
    need(1);
    return static_cast<std::uint8_t>(in_[at_++]);
  }
  std::uint64_t u64() {
    need(8);
    std::uint64_t v = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    std::memcpy(&v, in_.data() + at_, 8);
#else
    for (int i = 0; i < 8; ++i) {
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in_[at_ + i]))
           << (8 * i);
    }
#endif
    at_ += 8;
    return v;
  }
  std::uint64_t varint() {
    // Most are one byte: inline; longer ones and the end out of line.
    if (at_ < in_.size() && static_cast<unsigned char>(in_[at_]) < 0x80) {
      return static_cast<unsigned char>(in_[at_++]);
    }
    return long_varint();
  }
  std::string str() { return std::string(str_view()); }
  // A short_str, in place.
  std::string_view short_str_view() { return take(varint()); }
  // The next string, in place: valid while the reader's input is.
  std::string_view str_view() { return take(u64()); }
  // The next `n` bytes, in place.
  std::string_view take(std::uint64_t n) {
    need(n);
    const std::string_view s = in_.substr(at_, n);
    at_ += n;
    return s;
  }
  // Everything not read yet, in place.
  std::string_view rest() const { return in_.substr(at_); }

 private:
  void need(std::uint64_t n) const {
    if (n > in_.size() - at_) {
      throw Error(ErrorCode::kInternal, "truncated message between ranks");
    }
  }
  std::uint64_t long_varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      need(1);
      const auto b = static_cast<unsigned char>(in_[at_++]);
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
    throw Error(ErrorCode::kInternal, "bad number in a message between ranks");
  }

  std::string_view in_;
  std::size_t at_ = 0;
};

// A region: one byte (bit 0: a flat range, bit 1: replicated), then a
// flat range's bounds or a box's rank, offset and extent, as varints.
inline void write_region(WireWriter& w, const Region& region) {
  const bool flat = region.kind() == Region::Kind::kFlatRange;
  w.u8(static_cast<std::uint8_t>((flat ? 1 : 0) | (region.is_replicated() ? 2 : 0)));
  if (flat) {
    w.varint(region.as_flat().begin);
    w.varint(region.as_flat().end);
    return;
  }
  const Box& box = region.as_box();
  w.varint(box.offset.size());
  for (auto v : box.offset) w.varint(v);
  for (auto v : box.extent) w.varint(v);
}

inline Region read_region(WireReader& r) {
  const std::uint8_t kind = r.u8();
  Region region;
  if (kind & 1) {
    const auto begin = r.varint();
    region = Region::flat(FlatRange{begin, r.varint()});
  } else {
    // Gathered first, so each shape is set once at its size.
    std::uint64_t values[2 * Shape::kInline];
    const std::uint64_t n = r.varint();
    Box box;
    if (n <= Shape::kInline) {
      for (std::uint64_t i = 0; i < 2 * n; ++i) values[i] = r.varint();
      box.offset.assign(values, values + n);
      box.extent.assign(values + n, values + 2 * n);
    } else {
      box.offset.resize(n);
      box.extent.resize(n);
      for (auto& v : box.offset) v = r.varint();
      for (auto& v : box.extent) v = r.varint();
    }
    region = Region::box(std::move(box));
  }
  if (kind & 2) region = region.replicated();
  return region;
}

}  // namespace floe
