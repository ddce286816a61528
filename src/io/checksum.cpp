#include "io/checksum.hpp"

// For XXH3_state_t's size: Xxh3Stream's state travels between processes.
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
// On x86-64 the library picks the widest vector unit at run time (AVX2
// where present: 9.5 GB/s here against 6.6 for the plain SSE2 entry points,
// BENCHMARKS.md); the digests are the same.
#if defined(__x86_64__) && __has_include(<xxh_x86dispatch.h>)
#include <xxh_x86dispatch.h>
#endif

#include <cstdio>
#include <cstring>

#include "floe/error.hpp"

namespace floe {

std::uint64_t xxh3_64(const void* data, std::size_t size) {
  return XXH3_64bits(data, size);
}

struct Xxh3Stream::State {
  XXH3_state_t* state = XXH3_createState();
  ~State() { XXH3_freeState(state); }
};

Xxh3Stream::Xxh3Stream() : state_(std::make_unique<State>()) {
  if (state_->state == nullptr) throw std::bad_alloc();
  XXH3_64bits_reset(state_->state);
}
Xxh3Stream::~Xxh3Stream() = default;
Xxh3Stream::Xxh3Stream(Xxh3Stream&&) noexcept = default;
Xxh3Stream& Xxh3Stream::operator=(Xxh3Stream&&) noexcept = default;

void Xxh3Stream::update(const void* data, std::size_t size) {
  XXH3_64bits_update(state_->state, data, size);
}

std::uint64_t Xxh3Stream::digest() const {
  return XXH3_64bits_digest(state_->state);
}

// A state is values but for extSecret, which XXH3_64bits_reset points at
// the library's default secret: an address in this process. It travels as
// it is and is pointed at the receiver's own default secret on arrival.
std::string Xxh3Stream::state_bytes() const {
  const Xxh3Stream fresh;
  if (state_->state->extSecret != fresh.state_->state->extSecret) {
    throw Error(ErrorCode::kInternal,
                "Xxh3Stream::state_bytes: a state with a custom secret");
  }
  return std::string(reinterpret_cast<const char*>(state_->state),
                     sizeof(XXH3_state_t));
}

Xxh3Stream Xxh3Stream::from_state_bytes(const std::string& bytes) {
  if (bytes.size() != sizeof(XXH3_state_t)) {
    throw Error(ErrorCode::kInvalidArgument,
                "Xxh3Stream::from_state_bytes: " +
                    std::to_string(bytes.size()) + " bytes, not the " +
                    std::to_string(sizeof(XXH3_state_t)) + " of a state");
  }
  Xxh3Stream stream;
  const unsigned char* const secret = stream.state_->state->extSecret;
  std::memcpy(static_cast<void*>(stream.state_->state), bytes.data(),
              bytes.size());
  stream.state_->state->extSecret = secret;
  return stream;
}

std::string format_xxh3(std::uint64_t value) {
  char text[32];
  std::snprintf(text, sizeof text, "xxh3:%016llx",
                static_cast<unsigned long long>(value));
  return text;
}

std::uint64_t parse_xxh3(const std::string& text) {
  const std::string prefix = "xxh3:";
  if (text.size() != prefix.size() + 16 || text.compare(0, prefix.size(), prefix)) {
    throw Error(ErrorCode::kCorrupt, "bad checksum \"" + text +
                                         "\" (expected xxh3: and 16 hex digits)");
  }
  std::uint64_t value = 0;
  for (std::size_t i = prefix.size(); i < text.size(); ++i) {
    const char c = text[i];
    int digit;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    else throw Error(ErrorCode::kCorrupt, "bad checksum \"" + text + "\"");
    value = value << 4 | static_cast<std::uint64_t>(digit);
  }
  return value;
}

}  // namespace floe
