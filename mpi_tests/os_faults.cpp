// The interposed calls of os_faults.hpp. Each looks up the next definition
// of its name (libc's, or a sanitizer's interceptor) once, and, only while
// recording or armed, names the file behind the descriptor from
// /proc/self/fd. The executable must export them (ENABLE_EXPORTS), so that
// the MPI-IO components Open MPI loads with dlopen bind to them too.
#include "os_faults.hpp"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <dlfcn.h>
#include <execinfo.h>
#include <sys/uio.h>
#include <unistd.h>

namespace floe::test::os_faults {
namespace {

enum class Mode { kOff, kRecording, kArmed };

struct Plan {
  std::mutex mutex;
  Mode mode = Mode::kOff;
  std::string root;  // with a trailing '/'
  std::vector<Site> recorded;
  std::map<std::pair<Call, std::string>, int> seen;  // calls so far, per file
  Site target;
  int err = 0;
  int injected = 0;
};

Plan& plan() {
  static Plan p;
  return p;
}

// Whether anything is recording or armed: the one check a call makes when
// nothing is (every MPI and libc write of the process passes here).
std::atomic<bool> g_active{false};

// Who made the current call, from its stack (see Site::via).
std::string caller(Call call) {
  void* frames[64];
  const int n = ::backtrace(frames, 64);
  bool hdf5 = false, transfer = false, rmw = false;
  for (int i = 0; i < n; ++i) {
    Dl_info info;
    if (::dladdr(frames[i], &info) == 0 || !info.dli_fname) continue;
    if (call == Call::kRead &&
        std::strstr(info.dli_fname, "romio") != nullptr && info.dli_sname &&
        std::strstr(info.dli_sname, "WriteStridedColl") != nullptr) {
      rmw = true;
    }
    if (std::strstr(info.dli_fname, "libhdf5") == nullptr) continue;
    hdf5 = true;
    const char* name = info.dli_sname ? info.dli_sname : "";
    // The metadata cache, the superblock: metadata even inside H5Dwrite.
    if (std::strncmp(name, "H5C_", 4) == 0 ||
        std::strncmp(name, "H5AC", 4) == 0 ||
        std::strncmp(name, "H5F__super", 10) == 0) {
      return "hdf5 metadata";
    }
    if (std::strcmp(name, "H5Dwrite") == 0 || std::strcmp(name, "H5Dread") == 0)
      transfer = true;
  }
  if (!hdf5) return rmw ? "romio collective write" : "floe";
  return transfer ? "hdf5 data" : "hdf5 metadata";
}

// The path of `fd` relative to the plan's root, or "" when it is elsewhere.
std::string relative_path(int fd, const std::string& root) {
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char target[4096];
  const ssize_t n = ::readlink(link, target, sizeof target - 1);
  if (n <= 0) return {};
  const std::string path(target, static_cast<std::size_t>(n));
  if (path.size() <= root.size() || path.compare(0, root.size(), root) != 0)
    return {};
  return path.substr(root.size());
}

// Whether this call (of `call` on `fd`) is the one to fail; records it
// when recording. Sets errno when it is.
bool should_fail(Call call, int fd) {
  if (!g_active.load(std::memory_order_acquire)) return false;
  Plan& p = plan();
  std::lock_guard<std::mutex> lock(p.mutex);
  if (p.mode == Mode::kOff) return false;
  std::string rel = relative_path(fd, p.root);
  if (rel.empty()) return false;
  const int earlier = p.seen[{call, rel}]++;
  if (p.mode == Mode::kRecording) {
    p.recorded.push_back(Site{call, std::move(rel), earlier, caller(call)});
    return false;
  }
  if (call != p.target.call || rel != p.target.path || earlier != p.target.skip)
    return false;
  ++p.injected;
  errno = p.err;
  return true;
}

template <typename Fn>
Fn next(const char* name) {
  return reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
}

void start(Mode mode, const std::filesystem::path& root) {
  Plan& p = plan();
  std::lock_guard<std::mutex> lock(p.mutex);
  p.mode = mode;
  p.root = root.string() + "/";
  p.recorded.clear();
  p.seen.clear();
  p.injected = 0;
  g_active.store(true, std::memory_order_release);
}

}  // namespace

const char* call_name(Call call) {
  switch (call) {
    case Call::kWrite:
      return "write";
    case Call::kRead:
      return "read";
    case Call::kSync:
      return "fsync";
    case Call::kTruncate:
      return "truncate";
  }
  return "?";
}

std::string describe(const Site& site) {
  return std::string(call_name(site.call)) + " " + site.path + " #" +
         std::to_string(site.skip);
}

void start_recording(const std::filesystem::path& root) {
  start(Mode::kRecording, root);
}

std::vector<Site> stop_recording() {
  Plan& p = plan();
  std::lock_guard<std::mutex> lock(p.mutex);
  p.mode = Mode::kOff;
  g_active.store(false, std::memory_order_release);
  return std::move(p.recorded);
}

void arm(const std::filesystem::path& root, const Site& site, int err) {
  start(Mode::kArmed, root);
  Plan& p = plan();
  std::lock_guard<std::mutex> lock(p.mutex);
  p.target = site;
  p.err = err;
}

int disarm() {
  Plan& p = plan();
  std::lock_guard<std::mutex> lock(p.mutex);
  p.mode = Mode::kOff;
  g_active.store(false, std::memory_order_release);
  return std::exchange(p.injected, 0);
}

}  // namespace floe::test::os_faults

// ---- The interposed definitions -------------------------------------------
// Each takes its file descriptor as `fd`.

using floe::test::os_faults::Call;
using floe::test::os_faults::should_fail;

#define FLOE_FORWARD(ret, name, call, params, args)                \
  extern "C" ret name params {                                     \
    using Fn = ret(*) params;                                      \
    static const Fn real = floe::test::os_faults::next<Fn>(#name); \
    if (should_fail(call, fd)) return -1;                          \
    return real args;                                              \
  }

FLOE_FORWARD(ssize_t, write, Call::kWrite, (int fd, const void* b, size_t n),
             (fd, b, n))
FLOE_FORWARD(ssize_t, pwrite, Call::kWrite,
             (int fd, const void* b, size_t n, off_t o), (fd, b, n, o))
FLOE_FORWARD(ssize_t, pwrite64, Call::kWrite,
             (int fd, const void* b, size_t n, off64_t o), (fd, b, n, o))
FLOE_FORWARD(ssize_t, pwritev, Call::kWrite,
             (int fd, const struct iovec* v, int c, off_t o), (fd, v, c, o))
FLOE_FORWARD(ssize_t, read, Call::kRead, (int fd, void* b, size_t n),
             (fd, b, n))
FLOE_FORWARD(ssize_t, pread, Call::kRead, (int fd, void* b, size_t n, off_t o),
             (fd, b, n, o))
FLOE_FORWARD(ssize_t, pread64, Call::kRead,
             (int fd, void* b, size_t n, off64_t o), (fd, b, n, o))
FLOE_FORWARD(ssize_t, preadv, Call::kRead,
             (int fd, const struct iovec* v, int c, off_t o), (fd, v, c, o))
FLOE_FORWARD(int, fsync, Call::kSync, (int fd), (fd))
FLOE_FORWARD(int, fdatasync, Call::kSync, (int fd), (fd))
FLOE_FORWARD(int, ftruncate, Call::kTruncate, (int fd, off_t n), (fd, n))
FLOE_FORWARD(int, fallocate, Call::kTruncate, (int fd, int m, off_t o, off_t n),
             (fd, m, o, n))
