// Faults below MPI-IO and HDF5: the test executable that links
// os_faults.cpp defines write, pwrite, pwritev, read, pread, preadv, fsync,
// fdatasync, ftruncate and fallocate itself, so every call of them -- from
// Open MPI's MPI-IO components (OMPIO's fbtl, ROMIO), HDF5's MPI-IO driver
// and Floe's own pread/pwrite -- passes through here before reaching libc.
// Calls on files under a chosen root are recorded, or one of them fails
// with a chosen errno, on the rank that arms it. The file-system seam
// (io/file_system.hpp) cannot reach these calls: MPI-IO has no seam.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace floe::test::os_faults {

enum class Call {
  kWrite,     // write, pwrite, pwritev
  kRead,      // read, pread, preadv
  kSync,      // fsync, fdatasync
  kTruncate,  // ftruncate, fallocate
};

const char* call_name(Call call);

// One call on a file under the root: the family, the file (relative to the
// root, so it names the same file in another run under another root), and
// how many earlier calls of that family the same file had.
struct Site {
  Call call = Call::kWrite;
  std::string path;
  int skip = 0;
  // Who made the call (from its stack, when recorded): "hdf5 metadata"
  // (HDF5's own metadata I/O: its superblock, object headers, cache
  // flushes), "hdf5 data" (a dataset's data, inside H5Dwrite/H5Dread),
  // "romio collective write" (inside ROMIO's two-phase write of a call
  // Floe made: its aggregators read the holes between the ranks' runs
  // before writing) or "floe" (Floe itself, directly or through MPI-IO).
  std::string via;
};

std::string describe(const Site& site);

// Records, on this process, every call on a file under `root` until
// stop_recording(), which returns them in order.
void start_recording(const std::filesystem::path& root);
std::vector<Site> stop_recording();

// Makes the call at `site` (under `root`) fail with `err` on this process,
// once; the calls before and after it go through. disarm() ends it and
// returns how many calls were failed (0 or 1).
void arm(const std::filesystem::path& root, const Site& site, int err);
int disarm();

}  // namespace floe::test::os_faults
