#include "commit/coordinator.hpp"

#include <algorithm>

#include "commit/background_deleter.hpp"
#include "commit/json_fields.hpp"
#include "commit/manifest_text.hpp"
#include "commit/paths.hpp"
#include "core/node_shared.hpp"
#include "core/phase_log.hpp"
#include "floe/error.hpp"
#include "floe/log.hpp"

namespace floe {

namespace fs = std::filesystem;

Coordinator::Coordinator(FileSystem& fs, const Comm& comm, fs::path output_dir)
    : fs_(fs), comm_(comm), output_dir_(std::move(output_dir)) {}

template <typename Fn>
void Coordinator::on_root(Fn&& fn) {
  on_rank0(comm_, std::forward<Fn>(fn));
}

void Coordinator::recover() {
  on_root([&] {
    if (fs_.exists(output_dir_) && !fs_.is_directory(output_dir_)) {
      throw Error(ErrorCode::kInvalidArgument,
                  "output_dir " + output_dir_.string() + " is not a directory");
    }
    fs_.create_directories(output_dir_);
    bool changed = false;
    for (const auto& name : fs_.list(output_dir_)) {
      const fs::path path = output_dir_ / name;
      if (name.rfind(kStagingPrefix, 0) == 0 || name.rfind(kDeletingPrefix, 0) == 0) {
        // A deleter of this process is on it: a second remove_all of the
        // same tree would race it (and fail where it got there first).
        if (being_deleted(path)) continue;
        fs_.remove_all(path);
        changed = true;
      } else if (name.rfind(kReplacedPrefix, 0) == 0) {
        const fs::path original =
            output_dir_ / name.substr(std::string(kReplacedPrefix).size());
        if (fs_.exists(original)) {
          fs_.remove_all(path);
        } else {
          fs_.rename(path, original);
        }
        changed = true;
      }
    }
    if (changed) fs_.fsync_dir(output_dir_);
  });
}

fs::path Coordinator::begin(const std::string& tag) {
  const fs::path staging = output_dir_ / (kStagingPrefix + tag);
  on_root([&] {
    fs_.create_directories(output_dir_);
    if (fs_.exists(staging)) fs_.remove_all(staging);
    fs_.create_directories(staging);
  });
  return staging;
}

void Coordinator::abort(const fs::path& staging) noexcept {
  if (comm_.rank() != 0) return;
  try {
    fs_.remove_all(staging);
  } catch (...) {
    // The next recover() removes it.
  }
}

std::vector<fs::path> Coordinator::commit(const fs::path& staging,
                                          Manifest& manifest,
                                          const std::vector<std::string>& files,
                                          std::int64_t keep_last_n,
                                          const std::string& protect) {
  std::vector<fs::path> doomed;
  on_root([&] {
    manifest.files.clear();
    for (const auto& file : files) {
      const fs::path path = staging / file;
      fs_.fsync_file(path);
      manifest.files.push_back(FileRecord{file, fs_.file_size(path)});
    }
    mark_phase("commit: fsync data");
    const std::string text = manifest.dump();
    mark_phase("commit: manifest text");
    fs_.replace_file_atomically(staging / kManifestName, text);
    mark_phase("commit: manifest write");
    const fs::path final_dir = output_dir_ / manifest.tag;
    const fs::path replaced = output_dir_ / (kReplacedPrefix + manifest.tag);
    const bool replacing = fs_.exists(final_dir);
    if (replacing) fs_.rename(final_dir, replaced);
    fs_.rename(staging, final_dir);
    fs_.fsync_dir(output_dir_);
    fs_.replace_file_atomically(output_dir_ / kLatestName, manifest.tag + "\n");
    mark_phase("commit: renames, latest");
    // Committed: `latest` names the new checkpoint. What follows only frees
    // space, so its failure is a warning, never the save's error (a save
    // that threw here would report as failed a checkpoint `latest` names).
    try {
      if (replacing) doomed.push_back(set_for_deletion(replaced, manifest.tag));
      retain(keep_last_n, manifest.tag, protect, doomed);
    } catch (const std::exception& e) {
      log_message(LogLevel::kWarning,
                  "checkpoint " + manifest.tag +
                      " is committed, but retention failed: " + e.what() +
                      "; every checkpoint it did not rename to " +
                      kDeletingPrefix + "* is kept");
    }
  });
  return doomed;
}

fs::path Coordinator::set_for_deletion(const fs::path& dir,
                                       const std::string& tag) {
  // A free name: an earlier .deleting-<tag> may still be on disk (its
  // removal failed, or a tag saved twice is being replaced again).
  fs::path doomed = output_dir_ / (kDeletingPrefix + tag);
  for (int n = 1; fs_.exists(doomed); ++n) {
    doomed = output_dir_ / (kDeletingPrefix + tag + "." + std::to_string(n));
  }
  fs_.rename(dir, doomed);
  return doomed;
}

void Coordinator::retain(std::int64_t keep_last_n, const std::string& keep_a,
                         const std::string& keep_b,
                         std::vector<fs::path>& doomed) {
  if (keep_last_n <= 0) return;
  auto entries = list_on_root();
  if (static_cast<std::int64_t>(entries.size()) <= keep_last_n) return;
  const std::size_t drop = entries.size() - static_cast<std::size_t>(keep_last_n);
  for (std::size_t i = 0; i < drop; ++i) {
    const auto& entry = entries[i];
    if (entry.tag == keep_a || entry.tag == keep_b) continue;
    // Renaming makes the removal atomic for readers: a crash leaves a
    // .deleting-* directory that recover() finishes off. The caller removes
    // it, off the save's critical path.
    doomed.push_back(set_for_deletion(entry.dir, entry.tag));
  }
  fs_.fsync_dir(output_dir_);
}

std::optional<std::string> Coordinator::latest() {
  std::string answer;
  on_root([&] {
    const fs::path path = output_dir_ / kLatestName;
    if (!fs_.exists(path)) return;
    std::string text = fs_.read_file(path, 4096);
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    if (!step_of_tag(text)) {
      throw Error(ErrorCode::kCorrupt,
                  path.string() + ": expected a tag like global_step_<N>, got \"" +
                      text.substr(0, 80) + "\"");
    }
    answer = text;
  });
  answer = comm_.broadcast_bytes(answer, 0);
  if (answer.empty()) return std::nullopt;
  return answer;
}

std::vector<CheckpointEntry> Coordinator::list_on_root() {
  std::vector<CheckpointEntry> out;
  if (!fs_.exists(output_dir_)) return out;
  for (const auto& name : fs_.list(output_dir_)) {
    const auto step = step_of_tag(name);
    if (!step) continue;
    const fs::path dir = output_dir_ / name;
    if (!fs_.exists(dir / kManifestName)) continue;
    out.push_back(CheckpointEntry{name, *step, dir});
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.step < b.step; });
  return out;
}

std::vector<CheckpointEntry> Coordinator::list() {
  std::vector<CheckpointEntry> entries;
  on_root([&] { entries = list_on_root(); });
  std::string tags;
  for (const auto& e : entries) tags += e.tag + "\n";
  tags = comm_.broadcast_bytes(tags, 0);
  entries.clear();
  std::size_t start = 0;
  while (start < tags.size()) {
    const std::size_t end = tags.find('\n', start);
    const std::string tag = tags.substr(start, end - start);
    entries.push_back(CheckpointEntry{tag, *step_of_tag(tag), output_dir_ / tag});
    start = end + 1;
  }
  return entries;
}

Manifest Coordinator::read_manifest(const fs::path& dir) {
  // Rank 0 reads the file; every rank parses the bytes it read at the same
  // time (a manifest of many tensors takes a while to parse: the ranks do
  // not wait for rank 0's parse before starting theirs), and a bad manifest
  // fails with its reason on every rank. The bytes are held once per node
  // (core/node_shared.hpp), not copied to every rank.
  std::string text;
  on_root([&] { text = fs_.read_file(dir / kManifestName, kMaxManifestBytes); });
  mark_phase("manifest read");
  const NodeSharedBytes shared(comm_, text);
  text = std::string();  // rank 0's copy: the node's window holds the bytes now
  mark_phase("manifest share");
  return collectively(comm_, [&] {
    return parse_manifest_text(shared.view(), dir / kManifestName);
  });
}

fs::path Coordinator::set_aside(const std::string& tag,
                                const std::optional<std::string>& fallback) {
  std::string moved;
  on_root([&] {
    fs::path target = output_dir_ / (tag + kSetAsideSuffix);
    for (int n = 1; fs_.exists(target); ++n) {
      target = output_dir_ / (tag + kSetAsideSuffix + "." + std::to_string(n));
    }
    const fs::path latest_path = output_dir_ / kLatestName;
    std::string latest_text;
    if (fs_.exists(latest_path)) latest_text = fs_.read_file(latest_path, 4096);
    if (latest_text.rfind(tag + "\n", 0) == 0 || latest_text == tag) {
      if (fallback) {
        fs_.replace_file_atomically(latest_path, *fallback + "\n");
      } else {
        fs_.remove_all(latest_path);
      }
    }
    fs_.rename(output_dir_ / tag, target);
    fs_.fsync_dir(output_dir_);
    moved = target.string();
  });
  return comm_.broadcast_bytes(moved, 0);
}

}  // namespace floe
