// The CUDA device copier: pinned host memory from cudaHostAlloc, copies with
// cudaMemcpyAsync on one stream of its own. The only file that includes the
// CUDA runtime.
#include <cuda_runtime_api.h>

#include <string>

#include "cuda/device_copy.hpp"
#include "floe/error.hpp"

namespace floe {
namespace {

void check_cuda(cudaError_t rc, const std::string& what) {
  if (rc != cudaSuccess) {
    throw Error(ErrorCode::kIo, what + ": " + cudaGetErrorString(rc));
  }
}

// The GPU a device name selects: N for "cuda:N", the current one for "cuda".
int device_index(const std::string& device) {
  if (device == "cuda") {
    int current = 0;
    check_cuda(cudaGetDevice(&current), "cudaGetDevice");
    return current;
  }
  // "cuda:N" with N digits only (is_cuda_device); more than 9 cannot be a
  // GPU here, and std::stoi would throw out_of_range instead of naming it.
  const std::string digits = device.substr(5);
  return digits.size() > 9 ? -1 : std::stoi(digits);
}

// Owns a stream; destroying it never throws.
class Stream {
 public:
  Stream() { check_cuda(cudaStreamCreate(&stream_), "cudaStreamCreate"); }
  ~Stream() { cudaStreamDestroy(stream_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

class CudaDeviceCopier : public DeviceCopier {
 public:
  // The stream is made on `device`; the calling thread's current device
  // (the trainer's) is left as it was: before, naming "cuda:1" from a
  // thread on GPU 0 moved the trainer's later allocations to GPU 1. Memory
  // copies may be issued to a stream of another device than the current
  // one (CUDA C++ Programming Guide, "Stream and Event Behavior"), and
  // pinned memory is allocated portable.
  explicit CudaDeviceCopier(int device) : device_(device) {
    int current = 0;
    check_cuda(cudaGetDevice(&current), "cudaGetDevice");
    check_cuda(cudaSetDevice(device_), "cudaSetDevice(" + std::to_string(device_) + ")");
    try {
      stream_ = std::make_unique<Stream>();
    } catch (...) {
      cudaSetDevice(current);
      throw;
    }
    check_cuda(cudaSetDevice(current), "cudaSetDevice(" + std::to_string(current) + ")");
  }

  bool is_device_pointer(const void* ptr) override {
    cudaPointerAttributes attributes{};
    const cudaError_t rc = cudaPointerGetAttributes(&attributes, ptr);
    if (rc == cudaErrorInvalidValue) {
      cudaGetLastError();  // older runtimes flag plain host pointers; clear it
      return false;
    }
    // Anything else (a sticky error from an earlier fault) says nothing
    // about the pointer: taken for host memory, a device pointer would be
    // memcpy'd and the rank would crash. Thrown inside the staging's
    // agreement, so every rank fails alike.
    check_cuda(rc, "cudaPointerGetAttributes");
    return attributes.type == cudaMemoryTypeDevice ||
           attributes.type == cudaMemoryTypeManaged;
  }

  void* allocate_pinned(std::uint64_t bytes) override {
    void* ptr = nullptr;
    check_cuda(cudaHostAlloc(&ptr, bytes ? bytes : 1, cudaHostAllocPortable),
               "cannot allocate " + std::to_string(bytes) +
                   " bytes of pinned host memory for the staging pool (cudaHostAlloc)");
    return ptr;
  }

  void free_pinned(void* ptr) noexcept override {
    if (ptr) cudaFreeHost(ptr);
  }

  void copy_to_host_async(void* host, const void* device,
                          std::uint64_t bytes) override {
    check_cuda(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDefault, stream_->get()),
               "cudaMemcpyAsync (device to host, " + std::to_string(bytes) + " bytes)");
  }

  void copy_to_device_async(void* device, const void* host,
                            std::uint64_t bytes) override {
    check_cuda(cudaMemcpyAsync(device, host, bytes, cudaMemcpyDefault, stream_->get()),
               "cudaMemcpyAsync (host to device, " + std::to_string(bytes) + " bytes)");
  }

  void synchronize() override {
    check_cuda(cudaStreamSynchronize(stream_->get()), "cudaStreamSynchronize");
  }

 private:
  int device_;
  std::unique_ptr<Stream> stream_;
};

}  // namespace

bool cuda_compiled_in() { return true; }

int cuda_device_count(std::string* why) {
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) {
    cudaGetLastError();
    if (why) *why = std::string("CUDA sees no GPU: ") + cudaGetErrorString(rc);
    return 0;
  }
  if (count == 0 && why) *why = "CUDA sees no GPU";
  return count;
}

std::unique_ptr<DeviceCopier> make_device_copier(const std::string& device) {
  std::string why;
  const int count = cuda_device_count(&why);
  if (count == 0) {
    throw Error(ErrorCode::kUnsupported,
                "the trainer's tensors live on " + device + ", but " + why);
  }
  const int index = device_index(device);
  if (index < 0 || index >= count) {
    throw Error(ErrorCode::kInvalidArgument,
                "device " + device + " does not exist: CUDA sees " +
                    std::to_string(count) + " GPU(s)");
  }
  return std::make_unique<CudaDeviceCopier>(index);
}

}  // namespace floe
