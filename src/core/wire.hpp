// A little-endian byte writer and a bounds-checked reader, for messages
// exchanged between ranks (layouts, records).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "floe/error.hpp"

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
  void str(std::string_view s) {
    u64(s.size());
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
  std::string str() { return std::string(str_view()); }
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
  std::string_view in_;
  std::size_t at_ = 0;
};

}  // namespace floe
