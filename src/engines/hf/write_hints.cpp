#include "engines/hf/write_hints.hpp"

namespace floe::hf {

MpiInfo write_hints(std::uint64_t bytes, std::uint64_t runs) {
  constexpr std::uint64_t kLargeRun = 1ull << 20;
  MpiInfo info;
  if (runs > 0 && bytes / runs >= kLargeRun) {
    info.set("romio_cb_write", "disable");
    info.set("romio_ds_write", "disable");
  }
  return info;
}

}  // namespace floe::hf
