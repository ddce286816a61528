// Device tensors: saved through pinned host buffers on the engine's own
// stream and loaded back to the GPU, synchronously and asynchronously. On a
// machine without a GPU these tests report themselves skipped; the error a
// trainer gets when its device is not there is tested everywhere.
#include <cstring>

#include "cuda/device_copy.hpp"
#include "engine_fixture.hpp"

#if FLOE_TEST_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace floe::test {
namespace {

namespace fs = std::filesystem;

// A trainer whose tensors live on `device`.
struct DeviceTrainer : SimpleTrainer {
  std::string device_name = "cuda:0";
  std::string device() const override { return device_name; }
};

// Skips the test (on every rank alike) unless CUDA sees a GPU.
#define FLOE_REQUIRE_GPU()                                                   \
  do {                                                                       \
    std::string why;                                                         \
    if (cuda_device_count(&why) == 0) GTEST_SKIP() << "no GPU: " << why;     \
  } while (0)

TEST(CudaStaging, DeviceThatIsNotThereIsAClearErrorAndWritesNothing) {
  std::string why;
  if (cuda_device_count(&why) > 0) GTEST_SKIP() << "a GPU is present: tested on hosts without one";
  TempDir tmp;
  DeviceTrainer trainer;
  build_test_state(trainer.state(), world_rank(), world_size(), Partition::kMixed);
  auto engine = make_test_engine(trainer, "mpiio", tmp / "ckpt");
  trainer.progress_now.global_step = 1;
  const Caught caught = catch_error([&] { engine->save(); });
  EXPECT_TRUE(is_error(caught, ErrorCode::kUnsupported,
                       {"cuda:0", cuda_compiled_in() ? "no GPU" : "no CUDA support"}))
      << caught.message;
  EXPECT_TRUE(same_on_all_ranks(caught.message));
  EXPECT_FALSE(fs::exists(tmp / "ckpt" / "latest"));
}

// A trainer whose device() differs between ranks (one fell back to the
// CPU): every rank takes the staged path, so the ranks naming a GPU agree
// on their error with the CPU rank instead of leaving it alone in the
// save's or the load's collectives.
TEST(CudaStaging, ADeviceOnSomeRanksOnlyIsAgreedOn) {
  std::string why;
  if (cuda_device_count(&why) > 0) GTEST_SKIP() << "a GPU is present: tested on hosts without one";
  if (world_size() < 2) GTEST_SKIP() << "needs a CPU rank and a GPU rank";
  TempDir tmp;
  DeviceTrainer trainer;
  trainer.device_name = "cpu";
  build_test_state(trainer.state(), world_rank(), world_size(), Partition::kMixed);
  auto engine = make_test_engine(trainer, "mpiio", tmp / "ckpt");
  trainer.progress_now.global_step = 1;
  engine->save();

  if (world_rank() > 0) trainer.device_name = "cuda:0";
  const std::string device_error = cuda_compiled_in() ? "no GPU" : "no CUDA support";
  trainer.progress_now.global_step = 2;
  const Caught saved = catch_error([&] { engine->save(); });
  EXPECT_TRUE(is_error(saved, ErrorCode::kUnsupported, {"rank 1", "cuda:0", device_error}))
      << saved.message;
  EXPECT_TRUE(same_on_all_ranks(saved.message));
  EXPECT_FALSE(fs::exists(tmp / "ckpt" / "global_step_2"));
  const Caught loaded = catch_error([&] { engine->load(); });
  EXPECT_TRUE(is_error(loaded, ErrorCode::kUnsupported, {"rank 1", "cuda:0", device_error}))
      << loaded.message;
  EXPECT_TRUE(same_on_all_ranks(loaded.message));
}

TEST(CudaStaging, DeviceNamesAreRecognized) {
  EXPECT_TRUE(is_cuda_device("cuda"));
  EXPECT_TRUE(is_cuda_device("cuda:0"));
  EXPECT_TRUE(is_cuda_device("cuda:12"));
  EXPECT_FALSE(is_cuda_device("cpu"));
  EXPECT_FALSE(is_cuda_device("cuda:"));
  EXPECT_FALSE(is_cuda_device("cuda:x"));
  EXPECT_FALSE(is_cuda_device("cudax"));
}

#if FLOE_TEST_HAVE_CUDA

void check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(rc));
}

// The test state with every tensor moved to the GPU: `device` holds the
// device buffers (freed by the destructor), the host copies keep the
// expected values.
struct OnDevice {
  explicit OnDevice(const std::string& engine, const fs::path& dir, bool async) {
    int count = 0;
    check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    trainer.device_name = "cuda:" + std::to_string(world_rank() % count);
    check(cudaSetDevice(world_rank() % count), "cudaSetDevice");
    build_test_state(host, world_rank(), world_size(), Partition::kMixed);
    for (const auto& shard : host.tensors()) {
      void* ptr = nullptr;
      check(cudaMalloc(&ptr, shard.nbytes() ? shard.nbytes() : 1), "cudaMalloc");
      check(cudaMemcpy(ptr, shard.data(), shard.nbytes(), cudaMemcpyHostToDevice), "cudaMemcpy");
      buffers.push_back(ptr);
      trainer.state().add(shard.spec(), shard.region(), ptr);
    }
    for (const auto& [k, v] : host.scalars()) trainer.state().set_scalar(k, v);
    for (const auto& [k, v] : host.blobs()) trainer.state().set_blob(k, v);
    trainer.state().metadata() = host.metadata();
    engine_ = make_test_engine(trainer, engine, dir, {{"async", async}});
  }
  ~OnDevice() {
    engine_.reset();
    for (void* p : buffers) cudaFree(p);
  }
  void clear_device() {
    for (std::size_t i = 0; i < buffers.size(); ++i) {
      check(cudaMemset(buffers[i], 0, host.tensors()[i].nbytes()), "cudaMemset");
    }
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  }
  // The device tensors copied to host memory.
  State to_host() {
    State out;
    std::size_t i = 0;
    for (const auto& shard : host.tensors()) {
      TensorShard& copy = out.add(shard.spec(), shard.region());
      check(cudaMemcpy(copy.data(), buffers[i++], shard.nbytes(), cudaMemcpyDeviceToHost),
            "cudaMemcpy");
    }
    return out;
  }
  DeviceTrainer trainer;
  State host;
  std::vector<void*> buffers;
  std::unique_ptr<CheckpointEngine> engine_;
};

class CudaEngines : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaEngines, SavesAndLoadsDeviceTensors) {
  FLOE_REQUIRE_GPU();
  for (bool async : {false, true}) {
    TempDir tmp;
    OnDevice rig(GetParam(), tmp / "ckpt", async);
    rig.trainer.progress_now.global_step = 1;
    rig.engine_->save();
    rig.clear_device();  // right after save(): must not reach the checkpoint
    rig.engine_->wait();
    const Manifest m = rig.engine_->load();
    EXPECT_EQ(m.step, 1);
    EXPECT_TRUE(state_holds_expected(rig.to_host())) << (async ? "async" : "sync");
    // A host-memory trainer reads the same checkpoint.
    SimpleTrainer plain;
    build_test_state(plain.state(), world_rank(), world_size(), Partition::kMixed);
    for (auto& s : plain.state().tensors()) std::memset(s.data(), 0, s.nbytes());
    make_test_engine(plain, GetParam(), tmp / "ckpt")->load();
    EXPECT_TRUE(state_holds_expected(plain.state()));
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, CudaEngines, ::testing::ValuesIn(resumable_engines()),
                         [](const auto& info) { return info.param; });

#endif  // FLOE_TEST_HAVE_CUDA

}  // namespace
}  // namespace floe::test
