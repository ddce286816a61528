#include "cli/cli_format.hpp"

#include <algorithm>
#include <cstdio>
#include <iostream>

#include <unistd.h>

#include "cli/cli_common.hpp"

namespace floe::cli {

std::string human_bytes(std::uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024 && unit + 1 < sizeof(kUnits) / sizeof(kUnits[0])) {
    value /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f %s", value, kUnits[unit]);
  return text;
}

std::string counted(std::uint64_t n, const std::string& noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

std::vector<std::string> table_lines(
    const std::vector<std::vector<std::string>>& rows,
    const std::string& indent) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (std::size_t c = 0; c < row.size(); ++c) {
      width[c] = std::max(width[c], row[c].size());
    }
  }
  std::vector<std::string> lines;
  for (const auto& row : rows) {
    std::string line = indent;
    for (std::size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size())
        line += std::string(width[c] - row[c].size() + 2, ' ');
    }
    lines.push_back(std::move(line));
  }
  return lines;
}

void print_table(std::ostream& os,
                 const std::vector<std::vector<std::string>>& rows,
                 const std::string& indent) {
  for (const auto& line : table_lines(rows, indent)) os << line << "\n";
}

ProgressLine::ProgressLine(std::string label)
    : label_(std::move(label)),
      enabled_(world_rank() == 0 && ::isatty(STDERR_FILENO) == 1) {}

ProgressLine::~ProgressLine() { clear(); }

void ProgressLine::update(std::uint64_t done, std::uint64_t total,
                          const std::string& detail) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (done < total && shown_ > 0 &&
      now - last_ < std::chrono::milliseconds(100)) {
    return;
  }
  last_ = now;
  std::string line = label_ + ": " + std::to_string(done) + "/" +
                     std::to_string(total) + (detail.empty() ? "" : " ") +
                     detail;
  if (line.size() > 100) line = line.substr(0, 97) + "...";
  const std::size_t width = line.size();
  if (width < shown_) line += std::string(shown_ - width, ' ');
  std::cerr << '\r' << line << std::flush;
  shown_ = width;
}

void ProgressLine::clear() {
  if (!enabled_ || shown_ == 0) return;
  std::cerr << '\r' << std::string(shown_, ' ') << '\r' << std::flush;
  shown_ = 0;
}

}  // namespace floe::cli
