// A little-endian byte writer and a bounds-checked reader, for messages
// exchanged between ranks (layouts, records).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "floe/error.hpp"

namespace floe {

class WireWriter {
 public:
  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u64(std::uint64_t v) {
    char bytes[8];
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(v >> (8 * i));
    out_.append(bytes, 8);
  }
  void str(const std::string& s) {
    u64(s.size());
    out_ += s;
  }
  const std::string& bytes() const { return out_; }

 private:
  std::string out_;
};

class WireReader {
 public:
  explicit WireReader(const std::string& in) : in_(in) {}
  bool done() const { return at_ == in_.size(); }
  std::uint8_t u8() {
    need(1);
    return static_cast<std::uint8_t>(in_[at_++]);
  }
  std::uint64_t u64() {
    need(8);
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in_[at_ + i]))
           << (8 * i);
    }
    at_ += 8;
    return v;
  }
  std::string str() {
    const std::uint64_t n = u64();
    need(n);
    std::string s = in_.substr(at_, n);
    at_ += n;
    return s;
  }

 private:
  void need(std::uint64_t n) const {
    if (n > in_.size() - at_) {
      throw Error(ErrorCode::kInternal, "truncated message between ranks");
    }
  }
  const std::string& in_;
  std::size_t at_ = 0;
};

}  // namespace floe
