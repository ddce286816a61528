// A process killed while an asynchronous save writes in the background:
// `save` commits step 1, then starts an async save of step 2 whose I/O
// thread SIGKILLs rank 0 at the chosen file-system call, after save() has
// returned (a gate holds the I/O thread's first file-system call until
// then, and rank 0 leaves DIR.returned as proof). `check` (a new job)
// resumes and reports what it found. Driven by async_crash.sh.
#include <fstream>
#include <future>
#include <iostream>

#include "engine_fixture.hpp"
#include "io/faulty_file_system.hpp"

namespace {

using floe::FsOp;
namespace fs = std::filesystem;

FsOp op_named(const std::string& name) {
  for (FsOp op : {FsOp::kCreateDirectories, FsOp::kRemoveAll, FsOp::kRename, FsOp::kList,
                  FsOp::kReadFile, FsOp::kWriteFile, FsOp::kFsyncFile, FsOp::kFsyncDir,
                  FsOp::kDataWrite}) {
    if (floe::fs_op_name(op) == name) return op;
  }
  throw std::runtime_error("unknown op " + name);
}

// Passes every call to `base` once the gate is open.
class GatedFileSystem : public floe::FileSystem {
 public:
  GatedFileSystem(std::shared_ptr<floe::FileSystem> base, std::shared_future<void> gate)
      : base_(std::move(base)), gate_(std::move(gate)) {}
  bool exists(const fs::path& p) override { return pass()->exists(p); }
  bool is_directory(const fs::path& p) override { return pass()->is_directory(p); }
  void create_directories(const fs::path& p) override { pass()->create_directories(p); }
  void remove_all(const fs::path& p) override { pass()->remove_all(p); }
  void rename(const fs::path& a, const fs::path& b) override { pass()->rename(a, b); }
  std::vector<std::string> list(const fs::path& d) override { return pass()->list(d); }
  std::uint64_t file_size(const fs::path& p) override { return pass()->file_size(p); }
  std::string read_file(const fs::path& p, std::uint64_t max) override {
    return pass()->read_file(p, max);
  }
  void write_file(const fs::path& p, std::string_view b) override { pass()->write_file(p, b); }
  void fsync_file(const fs::path& p) override { pass()->fsync_file(p); }
  void fsync_dir(const fs::path& d) override { pass()->fsync_dir(d); }
  void before_data_write(const fs::path& p, std::uint64_t n) override {
    pass()->before_data_write(p, n);
  }

 private:
  floe::FileSystem* pass() {
    gate_.wait();
    return base_.get();
  }
  std::shared_ptr<floe::FileSystem> base_;
  std::shared_future<void> gate_;
};

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  if (argc < 4) {
    std::cerr << "usage: async_crash save|check DIR ENGINE [OP PATH_PART]\n";
    return 2;
  }
  const std::string mode = argv[1], dir = argv[2], engine_name = argv[3];
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  floe::SimpleTrainer trainer;
  floe::test::build_test_state(trainer.state(), rank, size, floe::test::Partition::kMixed);
  auto engine =
      floe::test::make_test_engine(trainer, engine_name, dir, {{"async", true}});
  int status = 0;
  if (mode == "save") {
    trainer.progress_now.global_step = 1;
    engine->save();
    engine->wait();
    auto faulty = std::make_shared<floe::FaultyFileSystem>();
    if (rank == 0 && argc >= 6) {
      faulty->add_rule({op_named(argv[4]), argv[5], 0, 0, 1, /*kill=*/true});
    }
    std::promise<void> open;
    engine->set_file_system(
        std::make_shared<GatedFileSystem>(faulty, open.get_future().share()));
    trainer.progress_now.global_step = 2;
    engine->save();
    if (rank == 0) std::ofstream(dir + ".returned") << "save() returned\n";
    open.set_value();
    engine->wait();
    status = 3;  // the kill never came
  } else {
    for (auto& shard : trainer.state().tensors()) std::memset(shard.data(), 0, shard.nbytes());
    const auto manifest = engine->resume();
    const bool values_ok = static_cast<bool>(floe::test::state_holds_expected(trainer.state()));
    if (rank == 0) {
      std::cout << "resumed_step=" << (manifest ? manifest->step : -1)
                << " values_ok=" << values_ok << "\n";
    }
    status = manifest && values_ok ? 0 : 1;
  }
  engine.reset();
  MPI_Finalize();
  return status;
}
