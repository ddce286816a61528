#include "commit/paths.hpp"

#include <cctype>

#include "floe/error.hpp"

namespace floe {

namespace {
constexpr std::string_view kTagPrefix = "global_step_";
}

std::string tag_for_step(std::int64_t step) {
  return std::string(kTagPrefix) + std::to_string(step);
}

std::optional<std::int64_t> step_of_tag(const std::string& name) {
  if (name.size() <= kTagPrefix.size() || name.size() > kTagPrefix.size() + 18 ||
      name.compare(0, kTagPrefix.size(), kTagPrefix) != 0) {
    return std::nullopt;
  }
  std::int64_t step = 0;
  for (std::size_t i = kTagPrefix.size(); i < name.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(name[i]))) return std::nullopt;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

namespace {

// `text` with control bytes as \xNN: an error message must show a hostile
// name whole (a NUL would end what() early) and not drive the terminal.
std::string printable(const std::string& text) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (const char c : text.substr(0, 512)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  if (text.size() > 512) out += "...";
  return out;
}

}  // namespace

void check_relative_path(const std::string& relative, const std::string& what) {
  auto bad = [&](const std::string& why) {
    throw Error(ErrorCode::kCorrupt,
                what + ": path \"" + printable(relative) + "\" " + why);
  };
  if (relative.empty()) bad("is empty");
  if (relative.find('\0') != std::string::npos) bad("contains NUL");
  if (relative.front() == '/') bad("is absolute");
  std::size_t start = 0;
  while (start <= relative.size()) {
    const std::size_t end = std::min(relative.find('/', start), relative.size());
    const std::string part = relative.substr(start, end - start);
    if (part.empty()) bad("has an empty component");
    if (part == "..") bad("leaves the checkpoint directory");
    if (part == ".") bad("has a '.' component");
    start = end + 1;
  }
}

std::filesystem::path resolve_inside(const std::filesystem::path& dir,
                                     const std::string& relative,
                                     const std::string& what) {
  check_relative_path(relative, what);
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path root = fs::weakly_canonical(dir, ec);
  const fs::path full = fs::weakly_canonical(dir / relative, ec);
  if (ec) {
    throw Error(ErrorCode::kIo, what + ": cannot resolve " +
                                    (dir / relative).string() + ": " +
                                    ec.message());
  }
  const auto rel = full.lexically_relative(root);
  if (rel.empty() || *rel.begin() == "..") {
    throw Error(ErrorCode::kCorrupt, what + ": path \"" + relative +
                                         "\" resolves outside " + dir.string() +
                                         " (through a symlink)");
  }
  return dir / relative;
}

}  // namespace floe
