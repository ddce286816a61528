// The rank-0 coordinator of the commit protocol (DESIGN.md, "Commit
// protocol"): staging, the manifest, the rename to the tag, `latest`, and
// retention. Rank 0 touches the file system and every rank learns the
// outcome, so a failure raises the same Error on every rank.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/comm.hpp"
#include "floe/file_system.hpp"
#include "floe/manifest.hpp"

namespace floe {

// One committed checkpoint found in output_dir.
struct CheckpointEntry {
  std::string tag;
  std::int64_t step = 0;
  std::filesystem::path dir;
};

// Every method is collective over `comm` and throws the same Error on every
// rank; only rank 0 touches the file system.
class Coordinator {
 public:
  Coordinator(FileSystem& fs, const Comm& comm, std::filesystem::path output_dir);

  // Creates output_dir if needed and removes leftovers of interrupted saves
  // (.staging-*, .deleting-*, but not a .deleting-* that a
  // BackgroundDeleter of this process is removing); puts back a checkpoint
  // that a crash left renamed aside while being replaced (.replaced-<tag>
  // with no <tag>).
  void recover();

  // Creates a fresh `.staging-<tag>` and returns its path.
  std::filesystem::path begin(const std::string& tag);

  // Rank 0 removes `staging` after a failed save. Never throws: the save's
  // own error is the one to report.
  void abort(const std::filesystem::path& staging) noexcept;

  // Completes a save whose data files are written and durable: records the
  // files' sizes in `manifest`, writes manifest.json (temp, fsync, rename),
  // renames staging to manifest.tag (setting aside an older checkpoint of
  // that tag first), fsyncs output_dir, replaces `latest`, then applies
  // retention: keeps the newest `keep_last_n` checkpoints (0: all), never
  // the new one or `protect`, by renaming the others (and the replaced
  // one) to .deleting-<tag>[.<n>]. Returns those directories on rank 0
  // (empty on the others): the caller removes them (the engine, on its
  // BackgroundDeleter), so a save need not wait for their blocks to be
  // freed. Once `latest` is replaced a failure is a warning (log_message),
  // not an Error: the checkpoint is committed.
  [[nodiscard]] std::vector<std::filesystem::path> commit(
      const std::filesystem::path& staging, Manifest& manifest,
      const std::vector<std::string>& files, std::int64_t keep_last_n,
      const std::string& protect);

  // The tag `latest` names, or nullopt when there is no `latest`.
  std::optional<std::string> latest();

  // Committed checkpoints (directories global_step_<N> holding a manifest),
  // oldest first.
  std::vector<CheckpointEntry> list();

  // Reads `dir`'s manifest on rank 0, hands its text to every rank, and
  // every rank parses it (the same Error on every rank when it is bad).
  Manifest read_manifest(const std::filesystem::path& dir);

  // Renames a checkpoint that failed verification to `<tag>.corrupt` (or
  // `.corrupt.<n>`), so it is kept but no longer listed; if `latest` names
  // it, points `latest` at `fallback` (or removes it). Returns the new name.
  std::filesystem::path set_aside(const std::string& tag,
                                  const std::optional<std::string>& fallback);

  const std::filesystem::path& output_dir() const { return output_dir_; }

 private:
  // Runs `fn` on rank 0 only; every rank returns or throws its outcome.
  template <typename Fn>
  void on_root(Fn&& fn);
  std::vector<CheckpointEntry> list_on_root();
  // Renames the checkpoints retention drops, appending them to `doomed`.
  void retain(std::int64_t keep_last_n, const std::string& keep_a,
              const std::string& keep_b,
              std::vector<std::filesystem::path>& doomed);
  // Renames `dir` to a free .deleting-<tag>[.<n>] and returns the new path.
  std::filesystem::path set_for_deletion(const std::filesystem::path& dir,
                                         const std::string& tag);

  FileSystem& fs_;
  const Comm& comm_;
  std::filesystem::path output_dir_;
};

}  // namespace floe
