#include "io/gathered_read.hpp"

#include <sys/uio.h>

#include <algorithm>
#include <functional>

namespace floe {
namespace {

constexpr std::uint64_t kMaxGap = 16u << 10;
constexpr std::size_t kMaxParts = 1024;  // IOV_MAX on Linux

}  // namespace

void append_run(std::vector<FileRun>& runs, const ReadOnlyFile& file,
                std::uint64_t offset, char* memory, std::uint64_t length) {
  if (!runs.empty()) {
    FileRun& last = runs.back();
    if (last.file == &file && last.offset + last.length == offset &&
        last.memory + last.length == memory) {
      last.length += length;
      return;
    }
  }
  runs.push_back(FileRun{&file, offset, memory, length});
}

std::size_t read_gathered(std::vector<FileRun>& runs) {
  const auto in_file_order = [](const FileRun& a, const FileRun& b) {
    if (a.file != b.file) return std::less<const ReadOnlyFile*>()(a.file, b.file);
    return a.offset < b.offset;
  };
  // Tensors saved back to back are in file order already; a resharded load
  // interleaves the runs of several saved pieces.
  if (!std::is_sorted(runs.begin(), runs.end(), in_file_order)) {
    std::sort(runs.begin(), runs.end(), in_file_order);
  }
  std::vector<char> scratch;
  std::vector<iovec> parts;
  parts.reserve(std::min(runs.size() * 2, kMaxParts));
  const ReadOnlyFile* file = nullptr;
  std::uint64_t start = 0, end = 0;
  std::size_t stretches = 0;
  const auto flush = [&] {
    if (parts.empty()) return;
    file->read_scattered(start, parts.data(), static_cast<int>(parts.size()));
    ++stretches;
    parts.clear();
  };
  for (const FileRun& run : runs) {
    // Overlapping runs (bytes of the file asked for twice) start anew.
    const bool joins = file == run.file && run.offset >= end && run.offset - end <= kMaxGap &&
                       parts.size() + 2 <= kMaxParts;
    if (!joins) {
      flush();
      file = run.file;
      start = end = run.offset;
    }
    if (run.offset > end) {
      if (scratch.empty()) scratch.resize(kMaxGap);
      parts.push_back(iovec{scratch.data(), static_cast<std::size_t>(run.offset - end)});
    }
    parts.push_back(iovec{run.memory, static_cast<std::size_t>(run.length)});
    end = run.offset + run.length;
  }
  flush();
  return stretches;
}

}  // namespace floe
