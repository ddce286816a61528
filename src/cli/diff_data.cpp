#include "cli/diff_data.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <utility>

#include <nlohmann/json.hpp>

#include "cli/chunk_plan.hpp"
#include "cli/cli_format.hpp"
#include "core/page_memory.hpp"

namespace floe::cli {
namespace {

using nlohmann::json;

// "<x>"; with the bits in hex when `x` and `other` read the same (0 and -0
// in F16, NaNs with different payloads).
std::string value_text(DType dtype, const unsigned char* x,
                       const unsigned char* other) {
  std::string text = element_text(dtype, x);
  if (text != element_text(dtype, other)) return text;
  std::string hex = " (0x";
  static const char kDigits[] = "0123456789abcdef";
  for (std::size_t i = dtype_size(dtype); i-- > 0;) {  // little-endian
    hex += kDigits[x[i] >> 4];
    hex += kDigits[x[i] & 15];
  }
  return text + hex + ")";
}

// Every rank's (order, line) pairs, merged by order on every rank.
std::vector<std::pair<json, std::string>> gather_lines(const json& mine,
                                                       const Comm& comm) {
  std::vector<std::pair<json, std::string>> all;
  for (const auto& part : comm.allgather_bytes(mine.dump())) {
    for (const auto& item : json::parse(part))
      all.emplace_back(item[0], item[1]);
  }
  std::sort(all.begin(), all.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  return all;
}

}  // namespace

ValueReport compare_tensor_values(CheckpointReader& a, CheckpointReader& b,
                                  const std::vector<TensorPair>& pairs,
                                  const DiffOptions& options,
                                  const Comm& comm) {
  std::vector<std::uint64_t> counts(pairs.size(), 0);
  std::vector<double> max_abs(pairs.size(), 0);
  json found = json::array();  // [[pair, global index], line]
  std::uint64_t total_bytes = 0, done_bytes = 0;
  for (const auto& pair : pairs) total_bytes += pair.a->spec.nbytes();
  ProgressLine progress("diff");
  PageBytes buffer_a, buffer_b;  // filled by reads: on a page, not zeroed
  // Chunks are dealt to the ranks in turn across tensors, so that small
  // tensors (one chunk each) do not all land on rank 0.
  const auto ranks = static_cast<std::size_t>(comm.size());
  const auto rank = static_cast<std::size_t>(comm.rank());
  std::size_t dealt = 0;

  for (std::size_t p = 0; p < pairs.size(); ++p) {
    const TensorRecord& ta = *pairs[p].a;
    const TensorRecord& tb = *pairs[p].b;
    const Shape& shape = ta.spec.shape;
    const DType dtype = ta.spec.dtype;
    const std::size_t element = dtype_size(dtype);
    const std::vector<Box> boxes =
        chunk_boxes(shape, element, options.chunk_bytes);
    for (std::size_t round = 0; round < boxes.size(); round += ranks) {
      // Chunk j goes to rank (dealt + j) % ranks.
      std::vector<Box> mine;
      const std::size_t k = round + (rank + ranks - dealt % ranks) % ranks;
      if (k < boxes.size()) mine.push_back(boxes[k]);
      const std::uint64_t n = mine.empty() ? 0 : mine[0].elements();
      // Without room for the chunk, this rank still joins the (collective)
      // reads, reading nothing, and the failure is agreed on after the first.
      std::exception_ptr no_room;
      try {
        buffer_a.resize(n * element);
        buffer_b.resize(n * element);
      } catch (...) {
        no_room = std::current_exception();
        mine.clear();
      }
      collectively(comm, [&] {
        a.read(ta, mine, buffer_a.data());
        if (no_room) std::rethrow_exception(no_room);
      });
      collectively(comm, [&] { b.read(tb, mine, buffer_b.data()); });
      if (n > 0) {
        ValueDiffs diffs;
        const std::size_t left =
            options.max_report - std::min(options.max_report, found.size());
        compare_values(dtype, buffer_a.data(), buffer_b.data(), n,
                       options.tolerance, left, diffs);
        counts[p] += diffs.count;
        max_abs[p] = std::max(max_abs[p], diffs.max_abs);
        for (const std::uint64_t i : diffs.first) {
          const std::uint64_t flat = global_index(shape, mine[0], i);
          const unsigned char* xa = buffer_a.data() + i * element;
          const unsigned char* xb = buffer_b.data() + i * element;
          found.push_back({{p, flat},
                           ta.spec.key() + index_text(shape, flat) +
                               ": a=" + value_text(dtype, xa, xb) +
                               " b=" + value_text(dtype, xb, xa)});
        }
      }
      for (std::size_t j = round; j < std::min(round + ranks, boxes.size());
           ++j) {
        done_bytes += boxes[j].elements() * element;
      }
      progress.update(p + 1, pairs.size(),
                      "tensors, " + human_bytes(done_bytes) + " of " +
                          human_bytes(total_bytes) + " (" + ta.spec.key() +
                          ")");
    }
    dealt += boxes.size();
  }
  progress.clear();

  ValueReport report;
  report.differing.assign(pairs.size(), 0);
  report.max_abs.assign(pairs.size(), 0);
  json mine = {{"counts", counts}, {"max", json::array()}};
  for (const double m : max_abs) {  // JSON has no infinity
    mine["max"].push_back(std::isinf(m) ? json("inf") : json(m));
  }
  for (const auto& part : comm.allgather_bytes(mine.dump())) {
    const json theirs = json::parse(part);
    for (std::size_t p = 0; p < pairs.size(); ++p) {
      report.differing[p] += theirs["counts"][p].get<std::uint64_t>();
      const json& m = theirs["max"][p];
      report.max_abs[p] =
          std::max(report.max_abs[p],
                   m.is_string() ? std::numeric_limits<double>::infinity()
                                 : m.get<double>());
    }
  }
  for (auto& [order, line] : gather_lines(found, comm)) {
    if (report.first.size() == options.max_report) break;
    report.first.push_back(std::move(line));
  }
  return report;
}

BlobReport compare_blobs(CheckpointReader& a, const Manifest& ma,
                         CheckpointReader& b, const Manifest& mb,
                         const Comm& comm) {
  using Key = std::pair<int, std::string>;
  std::map<Key, std::pair<const BlobRecord*, const BlobRecord*>> blobs;
  for (const auto& blob : ma.blobs) blobs[{blob.rank, blob.name}].first = &blob;
  for (const auto& blob : mb.blobs)
    blobs[{blob.rank, blob.name}].second = &blob;

  BlobReport report;
  json lines = json::array();  // [order, line]
  // No collective calls inside: a rank's read error reaches every rank.
  collectively(comm, [&] {
    std::size_t i = 0;
    for (const auto& [key, pair] : blobs) {
      const std::string name =
          "blob \"" + key.second + "\" of rank " + std::to_string(key.first);
      const bool mine = i++ % static_cast<std::size_t>(comm.size()) ==
                        static_cast<std::size_t>(comm.rank());
      if (!pair.first || !pair.second) {
        if (comm.rank() == 0) {
          lines.push_back({i, name + ": only in " + (pair.first ? "a" : "b")});
        }
        continue;
      }
      ++report.compared;
      if (!mine) continue;
      const auto bytes_a = a.read_blob(*pair.first);
      const auto bytes_b = b.read_blob(*pair.second);
      if (bytes_a.size() != bytes_b.size()) {
        lines.push_back({i, name + ": " + std::to_string(bytes_a.size()) +
                                " bytes in a, " +
                                std::to_string(bytes_b.size()) + " in b"});
      } else if (bytes_a != bytes_b) {
        const auto at =
            std::mismatch(bytes_a.begin(), bytes_a.end(), bytes_b.begin());
        lines.push_back({i, name + ": differs from byte " +
                                std::to_string(at.first - bytes_a.begin())});
      }
    }
  });
  for (auto& [i, line] : gather_lines(lines, comm)) {
    report.lines.push_back(std::move(line));
  }
  return report;
}

}  // namespace floe::cli
