// Device names as TrainerView::device() gives them, with or without CUDA.
#include <cctype>

#include "cuda/device_copy.hpp"

namespace floe {

bool is_cuda_device(const std::string& device) {
  if (device == "cuda") return true;
  if (device.rfind("cuda:", 0) != 0 || device.size() == 5) return false;
  for (std::size_t i = 5; i < device.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(device[i]))) return false;
  }
  return true;
}

}  // namespace floe
