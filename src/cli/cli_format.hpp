// Text helpers the checkpoint subcommands share (list, inspect, verify,
// diff): sizes for people, counted nouns, tables, and a progress line for
// terminals. Shapes: core/shape_text.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "floe/region.hpp"

namespace floe::cli {

// "512 B", "1.5 KiB", "12.0 MiB", ... (binary units, one decimal).
std::string human_bytes(std::uint64_t bytes);

// "1 problem", "3 problems".
std::string counted(std::uint64_t n, const std::string& noun);

// `rows` as left-aligned columns two spaces apart, one line each (no
// newline), starting with `indent`; the last column is not padded.
std::vector<std::string> table_lines(
    const std::vector<std::vector<std::string>>& rows,
    const std::string& indent = "");

// Writes table_lines(rows, indent), one per line.
void print_table(std::ostream& os,
                 const std::vector<std::vector<std::string>>& rows,
                 const std::string& indent = "");

// A one-line progress report on rank 0's stderr, rewritten in place with
// '\r', shown only when that stderr is a terminal (so logs and pipes stay
// clean) and at most ten times a second. Not collective: every rank may
// call it; only rank 0 prints.
class ProgressLine {
 public:
  explicit ProgressLine(std::string label);
  ~ProgressLine();  // clears the line
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  // "<label>: <done>/<total> <detail>".
  void update(std::uint64_t done, std::uint64_t total,
              const std::string& detail = "");
  // Clears the line, so that what follows starts on a clean one.
  void clear();

 private:
  std::string label_;
  bool enabled_ = false;
  std::size_t shown_ = 0;  // characters on the line now
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace floe::cli
