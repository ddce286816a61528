// Helpers of the storage_offset suites (hdf5_storage_offset_test.cpp,
// hdf5_offset_read_ahead_test.cpp, hdf5_offset_read_some_test.cpp): a
// checkpoint saved with and without the offsets, and a manifest edited so
// one offset leaves the data file.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "hdf5_test_support.hpp"
#include "hf_test_util.hpp"

namespace floe::test {

// `manifest` as Floe wrote it before it recorded storage offsets.
inline Manifest without_offsets(Manifest manifest) {
  for (auto& t : manifest.tensors) t.storage_offset.reset();
  return manifest;
}

// Once every rank is done reading it, rank 0 rewrites `dir`'s manifest as
// `manifest` (a valid self-checksum: dump() computes it); then every rank
// goes on. Collective.
inline void rewrite_manifest(const fs::path& dir, const Manifest& manifest) {
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) write_bytes(dir / "manifest.json", manifest.dump());
  MPI_Barrier(MPI_COMM_WORLD);
}

// Saves the test state on the first `k` ranks into `out` (step 10 * k).
// Collective over MPI_COMM_WORLD.
inline fs::path save_on(int k, const fs::path& out) {
  {
    SubComm comm(k);
    if (comm.member()) {
      SimpleTrainer trainer(comm.get());
      build_test_state(trainer.state(), comm.rank(), k, Partition::kMixed);
      trainer.progress_now.global_step = 10 * k;
      make_test_engine(trainer, "hdf5", out)->save();
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return out / ("global_step_" + std::to_string(10 * k));
}

// Calls check(dir, k, recorded), within 120 s, for the test state saved
// (save_on) on every rank count k of this job: with the storage offsets
// (recorded), and with its manifest rewritten as Floe wrote it before them.
inline void for_each_saved(
    const std::function<void(const fs::path&, int, bool)>& check) {
  TempDir tmp;
  for (int k = 1; k <= world_size(); ++k) {
    for (const bool recorded : {true, false}) {
      SCOPED_TRACE("saved on " + std::to_string(k) + " ranks, " +
                   (recorded ? "with" : "without") + " storage offsets");
      const fs::path out =
          tmp / ("k" + std::to_string(k) + (recorded ? "new" : "old"));
      run_within(std::chrono::seconds(120), [&] {
        const fs::path dir = save_on(k, out);
        const Manifest saved = Manifest::read(dir);
        for (const auto& t : saved.tensors)
          EXPECT_TRUE(t.storage_offset) << t.spec.key();
        if (!recorded) rewrite_manifest(dir, without_offsets(saved));
        EXPECT_EQ(Manifest::read(dir).tensors[0].storage_offset.has_value(),
                  recorded);
        check(dir, k, recorded);
      });
    }
  }
}

// Points model.bias's storage offset in `manifest` at the last byte of a
// data file of `size` bytes, so its 12 bytes leave the file; returns the
// record (null when the manifest has none). Reading it fails with
// bias_beyond_the_end(size).
inline TensorRecord* offset_bias_beyond_the_end(Manifest& manifest,
                                                std::uint64_t size) {
  for (auto& t : manifest.tensors) {
    if (t.spec.key() != "model/model.bias") continue;
    t.storage_offset = size - 1;
    return &t;
  }
  return nullptr;
}

inline std::string bias_beyond_the_end(std::uint64_t size) {
  return "tensor \"model/model.bias\": field storage_offset: its 12 bytes at "
         "offset " +
         std::to_string(size - 1);
}

// The test state saved once by the hdf5 engine (step 1) into a fresh
// directory. Collective.
struct SavedAtStep1 {
  TempDir tmp;
  EngineRig rig{tmp / "ckpt", "hdf5"};
  fs::path dir = tmp / "ckpt" / "global_step_1";
  SavedAtStep1() {
    rig.save_at(1);
    MPI_Barrier(MPI_COMM_WORLD);
  }
};

}  // namespace floe::test
