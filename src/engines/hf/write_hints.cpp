#include "engines/hf/write_hints.hpp"

namespace floe::hf {

bool large_runs(std::uint64_t bytes, std::uint64_t runs) {
  constexpr std::uint64_t kLargeRun = 1ull << 20;
  return runs > 0 && bytes / runs >= kLargeRun;
}

MpiInfo write_hints(std::uint64_t bytes, std::uint64_t runs) {
  MpiInfo info;
  if (large_runs(bytes, runs)) {
    info.set("romio_cb_write", "disable");
    info.set("romio_ds_write", "disable");
  }
  return info;
}

}  // namespace floe::hf
