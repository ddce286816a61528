// The device copier of a build without CUDA: there is none, and the error
// says how to get one.
#include "cuda/device_copy.hpp"
#include "floe/error.hpp"

namespace floe {

bool cuda_compiled_in() { return false; }

int cuda_device_count(std::string* why) {
  if (why) *why = "this Floe build has no CUDA support (FLOE_WITH_CUDA was OFF or no CUDA Toolkit was found)";
  return 0;
}

std::unique_ptr<DeviceCopier> make_device_copier(const std::string& device) {
  throw Error(ErrorCode::kUnsupported,
              "the trainer's tensors live on " + device +
                  ", but this Floe build has no CUDA support: rebuild with "
                  "the CUDA Toolkit installed (-DFLOE_WITH_CUDA=ON)");
}

}  // namespace floe
