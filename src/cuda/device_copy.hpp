// Copies between device (GPU) memory and pinned host memory, on a dedicated
// stream. The only interface the rest of Floe sees: the CUDA runtime stays
// inside cuda_device_copy.cpp, and a build without CUDA gets a factory that
// says why there is no copier.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace floe {

// Not thread-safe: one thread (the one calling save() and load()) uses it.
class DeviceCopier {
 public:
  virtual ~DeviceCopier() = default;

  // True when host code must not dereference `ptr`: device memory (or
  // managed memory, copied the same way). False for host memory.
  virtual bool is_device_pointer(const void* ptr) = 0;

  // Page-locked host memory, so device copies run at full bus speed and
  // asynchronously. Throws Error(kIo) naming the size and CUDA's message.
  virtual void* allocate_pinned(std::uint64_t bytes) = 0;
  virtual void free_pinned(void* ptr) noexcept = 0;

  // Queue a copy on the copier's stream. The stream is a blocking stream: it
  // starts after the work already queued on the legacy default stream (where
  // a trainer that does not pick streams computes), and that stream's later
  // work waits for it. Throws Error(kIo) naming CUDA's message.
  virtual void copy_to_host_async(void* host, const void* device,
                                  std::uint64_t bytes) = 0;
  virtual void copy_to_device_async(void* device, const void* host,
                                    std::uint64_t bytes) = 0;

  // Waits for every queued copy. Throws Error(kIo) naming CUDA's message.
  virtual void synchronize() = 0;
};

// True for "cuda" and "cuda:<N>" (TrainerView::device()).
bool is_cuda_device(const std::string& device);

// The copier for `device` ("cuda:<N>": that GPU; "cuda": the current one).
// Throws Error(kUnsupported) when this build has no CUDA support or the
// process sees no GPU, naming the reason.
std::unique_ptr<DeviceCopier> make_device_copier(const std::string& device);

// Whether this build has CUDA support compiled in.
bool cuda_compiled_in();

// How many GPUs the process sees (0 without CUDA or without a GPU), and in
// `why` the reason when there are none.
int cuda_device_count(std::string* why = nullptr);

}  // namespace floe
