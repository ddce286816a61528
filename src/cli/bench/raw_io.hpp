// The baseline every benchmark figure is a ratio to: plain POSIX sequential
// writes (with fsync) and reads of the same bytes, one file per rank.
#pragma once

#include <filesystem>
#include <vector>

#include "floe/state.hpp"

namespace floe::bench {

// Writes every shard's bytes of `state`, in order, to `path` with write()
// in large chunks, then fsyncs and closes. Throws floe::Error(kIo).
void raw_write(const std::filesystem::path& path, const State& state);

// Reads `path` back into the shards of `state`, in the same order.
void raw_read(const std::filesystem::path& path, State& state);

// The files of the checkpoint `engine_dir`/latest names (the engines' own
// layout: `engine_dir`/<tag>/...), sorted by path. Throws floe::Error(kIo)
// when `latest` cannot be read, kNotFound when the checkpoint has no files.
std::vector<std::filesystem::path> latest_checkpoint_files(
    const std::filesystem::path& engine_dir);

// A raw read of a checkpoint's own files: this rank's contiguous share
// (rank/size of the files' bytes taken one after the other) read with
// read() in large chunks, as raw_read, into the shards of `state` (from the
// first again when the share is larger). Returns the bytes of all `files`
// together. Throws floe::Error(kIo).
std::uint64_t raw_read_share(const std::vector<std::filesystem::path>& files, int rank,
                             int size, State& state);

// Asks the kernel to drop the cached pages of every file under `dir`, so
// the next read comes from the device (posix_fadvise DONTNEED; the files
// are clean after fsync). Best effort.
void drop_cache(const std::filesystem::path& dir);

}  // namespace floe::bench
