// Crash injection at each site of the commit protocol, for real: `save`
// commits step 1, then SIGKILLs rank 0 when the save of step 2 reaches the
// chosen file-system call; `check` (a new job) resumes and reports what it
// found. Driven by crash_at_site.sh.
#include <fstream>
#include <iostream>

#include "engine_fixture.hpp"
#include "io/faulty_file_system.hpp"

namespace {

using floe::FsOp;

FsOp op_named(const std::string& name) {
  for (FsOp op : {FsOp::kCreateDirectories, FsOp::kRemoveAll, FsOp::kRename, FsOp::kList,
                  FsOp::kReadFile, FsOp::kWriteFile, FsOp::kFsyncFile, FsOp::kFsyncDir,
                  FsOp::kDataWrite}) {
    if (floe::fs_op_name(op) == name) return op;
  }
  throw std::runtime_error("unknown op " + name);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  if (argc < 4) {
    std::cerr << "usage: crash_at_site save|check DIR ENGINE [OP PATH_PART]\n";
    return 2;
  }
  const std::string mode = argv[1], dir = argv[2], engine_name = argv[3];
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  floe::SimpleTrainer trainer;
  floe::test::build_test_state(trainer.state(), rank, size, floe::test::Partition::kMixed);
  auto engine = floe::test::make_test_engine(trainer, engine_name, dir);
  int status = 0;
  if (mode == "save") {
    trainer.progress_now.global_step = 1;
    engine->save();
    auto faulty = std::make_shared<floe::FaultyFileSystem>();
    if (rank == 0 && argc >= 6) {
      faulty->add_rule({op_named(argv[4]), argv[5], 0, 0, 1, /*kill=*/true});
    }
    engine->set_file_system(faulty);
    trainer.progress_now.global_step = 2;
    engine->save();
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
  MPI_Finalize();
  return status;
}
