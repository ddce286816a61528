// A read that fails on one rank in the middle of collective reads. With a
// reader whose reads are collective (hdf5 without storage offsets, as older
// Floe wrote it), load() and verify make each tensor's reads on every rank
// together (the load's read, then the checks' reads of at most 2 MiB each):
// a rank whose read fails must still join the others' remaining reads
// with nothing to read, and every rank must then throw that rank's error.
// Each of the failing rank's reads is failed in turn; none may hang.
#include <chrono>
#include <fstream>
#include <functional>
#include <memory>

#include "core/comm.hpp"
#include "engine_fixture.hpp"
#include "floe/checkpoint.hpp"
#include "floe/manifest.hpp"
#include "floe/registry.hpp"
#include "io/checksum.hpp"

// A named namespace: the sanitizer stages build the tests as unity batches,
// where this file's helpers would meet load_check_test.cpp's.
namespace floe::test::collective_read_fault {
namespace {

namespace fs = std::filesystem;

// Which read fails: the `at`-th read() (from 0) on rank `rank`; `seen`
// counts this rank's reads. rank -1: none fails.
struct Fault {
  int rank = -1;
  int at = -1;
  int seen = 0;
  std::string tensors;  // the tensor of each read this rank made, in order
};
Fault fault;

// The hdf5 reader, with one read failing as `fault` says.
class FailingReader : public CheckpointReader {
 public:
  explicit FailingReader(std::unique_ptr<CheckpointReader> inner) : inner_(std::move(inner)) {}
  void read(const TensorRecord& tensor, const std::vector<Box>& boxes, void* out) override {
    fault.tensors += tensor.spec.key() + ";";
    if (fault.seen++ == fault.at && world_rank() == fault.rank) {
      throw Error(ErrorCode::kIo, "injected failure of read " + std::to_string(fault.at));
    }
    inner_->read(tensor, boxes, out);
  }
  std::vector<std::uint8_t> read_blob(const BlobRecord& blob) override {
    return inner_->read_blob(blob);
  }
  bool reads_independently() const override { return inner_->reads_independently(); }

 private:
  std::unique_ptr<CheckpointReader> inner_;
};

constexpr const char* kEngine = "hdf5-failing-read";

void register_failing_engine() {
  static const bool registered = [] {
    EngineInfo info;
    info.name = kEngine;
    info.description = "test: the hdf5 reader with an injected read failure";
    info.reader = [](const ReadContext& ctx) -> std::unique_ptr<CheckpointReader> {
      return std::make_unique<FailingReader>(engine_info("hdf5").reader(ctx));
    };
    register_engine(std::move(info));
    return true;
  }();
  (void)registered;
}

// Rows of 1024 F32 per rank: 640 rows are 2.5 MiB (a piece checked in two
// reads), 1 row 4 KiB.
constexpr std::uint64_t kCols = 1024;

// Each rank's dim-0 shard; with `shrink`, without its last row: no rank's
// region is then a saved piece, so the load checks every piece by reading
// it again, as a resharded load does.
void build_state(State& state, bool fill, bool shrink = false) {
  for (const auto& [name, rows] : {std::pair<const char*, std::uint64_t>{"big", 640},
                                   {"small", 2},
                                   {"middle", 300}}) {
    const Shape shape{rows * static_cast<std::uint64_t>(world_size()), kCols};
    Region region = dim0_shard(shape, world_rank(), world_size());
    if (shrink) {
      Box box = region.as_box();
      box.extent[0] -= 1;
      region = Region::box(box);
    }
    auto& shard = state.add_model(name, DType::kF32, shape, region);
    if (fill) fill_expected(shard);
  }
}

TEST(CollectiveReadFault, AReadFailingOnOneRankFailsLoadAndVerifyOnEveryRank) {
  register_failing_engine();
  TempDir dir;
  run_within(std::chrono::seconds(600), [&] {
    SimpleTrainer trainer;
    build_state(trainer.state(), true);
    make_test_engine(trainer, "hdf5", dir.path())->save();
    const fs::path checkpoint = dir / "global_step_0";
    // Read as an older Floe's checkpoint (collective reads, and an empty
    // piece listed, as earlier builds did) by the failing reader.
    // Manifest::dump() writes the self-checksum again.
    on_rank0_then_barrier([&] {
      Manifest manifest = Manifest::read(checkpoint);
      for (auto& t : manifest.tensors) t.storage_offset.reset();
      for (auto& t : manifest.tensors) {
        if (t.spec.name != "small") continue;
        PieceRecord empty = t.pieces.front();
        empty.region = Region::box(Box{{0, 0}, {0, kCols}});
        empty.nbytes = 0;
        empty.xxh3 = xxh3_64(nullptr, 0);
        // First: a rank's plan then starts with it (no read open yet).
        t.pieces.insert(t.pieces.begin(), empty);
      }
      manifest.engine = kEngine;
      std::ofstream(checkpoint / "manifest.json", std::ios::binary | std::ios::trunc)
          << manifest.dump();
    });
    const std::string listing_before = listing(dir.path());
    const int last = world_size() - 1;
    const auto load = [&] {
      SimpleTrainer fresh;
      build_state(fresh.state(), false, /*shrink=*/true);
      make_test_engine(fresh, "hdf5", dir.path())->load();
      EXPECT_TRUE(state_holds_expected(fresh.state()));
    };
    const auto verify = [&] {
      const VerifyReport report = verify_checkpoint(checkpoint, MPI_COMM_WORLD);
      EXPECT_TRUE(report.ok()) << report.problems.front();
    };
    for (const auto& [what, run] :
         {std::pair<const char*, std::function<void()>>{"load", load}, {"verify", verify}}) {
      SCOPED_TRACE(what);
      // Without a failure: how many reads the last rank makes.
      fault = Fault{};
      fault.rank = last;
      run();
      // Collective reads: every rank makes as many. The sweep below must
      // run alike everywhere, so it takes the last rank's count.
      const std::string counted = std::to_string(fault.seen);
      EXPECT_TRUE(same_on_all_ranks(counted)) << counted;
      const int reads =
          static_cast<int>(Comm(MPI_COMM_WORLD).allreduce_max(static_cast<std::uint64_t>(fault.seen)));
      EXPECT_GE(reads, 4) << "3 tensors, one checked in two reads";
      const std::string sequence = fault.tensors;
      for (int at = 0; at < reads; ++at) {
        SCOPED_TRACE("read " + std::to_string(at));
        fault = Fault{last, at, 0, ""};
        const Caught caught = catch_error(run);
        // The failing rank joined the reads it had left: every rank made
        // the same reads of the same tensors as without the failure (MPI
        // cannot tell one tensor's collective read from another's).
        EXPECT_EQ(fault.tensors, sequence);
        EXPECT_TRUE(is_error(caught, ErrorCode::kIo,
                             {"injected failure of read " + std::to_string(at)}));
        if (world_size() > 1) {
          EXPECT_NE(caught.message.find("rank " + std::to_string(last)), std::string::npos)
              << caught.message;
        }
        EXPECT_TRUE(same_on_all_ranks(caught.message));
      }
      // An I/O error is not damage: nothing was set aside or renamed.
      EXPECT_EQ(listing(dir.path()), listing_before);
    }
    fault = Fault{};
  });
}

}  // namespace
}  // namespace floe::test::collective_read_fault
