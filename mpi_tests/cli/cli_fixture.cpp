// cli_fixture: saves the engine suites' test state (build_test_state) as a
// checkpoint, for the `floe` command's tests. Run it alone or under mpirun:
// every rank of MPI_COMM_WORLD saves its part.
//
//   cli_fixture ENGINE OUTPUT_DIR STEP [--partition dim0|flat|mixed]
//               [--add KEY INDEX DELTA]... [--without-storage-offsets]
//
// --without-storage-offsets rewrites the manifest without the hdf5
// tensors' storage_offset, exactly as Floe wrote it before it recorded them.
// --add adds DELTA to element INDEX (global, row-major) of the F32 or F64
// tensor KEY ("model/model.embed.weight") on every rank holding it, so a
// diff against an unchanged save finds exactly that element.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <mpi.h>

#include "engine_fixture.hpp"

namespace {

using namespace floe;

struct Change {
  std::string key;
  std::uint64_t index = 0;
  double delta = 0;
};

void apply(State& state, const Change& change) {
  TensorShard* shard = state.find(change.key);
  if (!shard) throw Error(ErrorCode::kNotFound, "no tensor " + change.key);
  const DType dtype = shard->spec().dtype;
  if (dtype != DType::kF32 && dtype != DType::kF64) {
    throw Error(ErrorCode::kInvalidArgument, change.key + " is not F32 or F64");
  }
  test::for_each_element(shard->spec().shape, shard->region(),
                         [&](std::uint64_t global, std::uint64_t local) {
                           if (global != change.index) return;
                           if (dtype == DType::kF32) {
                             shard->data_as<float>()[local] +=
                                 static_cast<float>(change.delta);
                           } else {
                             shard->data_as<double>()[local] += change.delta;
                           }
                         });
}

int run(const std::vector<std::string>& args) {
  if (args.size() < 3) {
    std::cerr << "usage: cli_fixture ENGINE OUTPUT_DIR STEP [--partition "
                 "dim0|flat|mixed] [--add KEY INDEX DELTA]...\n";
    return 2;
  }
  test::Partition partition = test::Partition::kDim0;
  std::vector<Change> changes;
  bool without_offsets = false;
  for (std::size_t i = 3; i < args.size(); ++i) {
    if (args[i] == "--without-storage-offsets") {
      without_offsets = true;
      continue;
    }
    if (args[i] == "--partition" && i + 1 < args.size()) {
      const std::string& p = args[++i];
      partition = p == "flat"    ? test::Partition::kFlat
                  : p == "mixed" ? test::Partition::kMixed
                                 : test::Partition::kDim0;
    } else if (args[i] == "--add" && i + 3 < args.size()) {
      changes.push_back(
          {args[i + 1], std::stoull(args[i + 2]), std::stod(args[i + 3])});
      i += 3;
    } else {
      std::cerr << "cli_fixture: unexpected argument " << args[i] << "\n";
      return 2;
    }
  }
  SimpleTrainer trainer(MPI_COMM_WORLD);
  test::build_test_state(trainer.state_now, test::world_rank(),
                         test::world_size(), partition);
  for (const Change& change : changes) apply(trainer.state_now, change);
  trainer.progress_now.global_step = std::stoll(args[2]);
  trainer.progress_now.epoch = 1;
  auto engine = test::make_test_engine(trainer, args[0], args[1]);
  engine->save();
  if (without_offsets && test::world_rank() == 0) {
    const std::filesystem::path dir =
        std::filesystem::path(args[1]) / ("global_step_" + args[2]);
    Manifest manifest = Manifest::read(dir);
    for (auto& t : manifest.tensors) t.storage_offset.reset();
    std::ofstream(dir / "manifest.json", std::ios::trunc) << manifest.dump();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rc = 1;
  try {
    rc = run({argv + 1, argv + argc});
  } catch (const std::exception& e) {
    std::cerr << "cli_fixture: " << e.what() << "\n";
  }
  MPI_Finalize();
  return rc;
}
