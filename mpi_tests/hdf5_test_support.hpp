// Helpers of the hdf5 engine's suites: calling the engine's write step
// directly, a state with every kind of region (and a checkpoint of it), and
// the expected bytes of any boxes of a test tensor.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <hdf5.h>

#include "core/comm.hpp"
#include "engine_fixture.hpp"
#include "engines/hdf5/hdf5_engine.hpp"
#include "engines/hdf5/hdf5_reader.hpp"
#include "engines/hdf5/hdf5_template.hpp"
#include "io/checksum.hpp"

namespace floe::test {

namespace fs = std::filesystem;

inline std::uint64_t u(int value) { return static_cast<std::uint64_t>(value); }

// write_state, callable from a test.
class DirectHdf5 : public Hdf5Engine {
 public:
  using Hdf5Engine::Hdf5Engine;
  using Hdf5Engine::write_state;
};

inline CheckpointConfig hdf5_config(const fs::path& dir,
                                    nlohmann::json extra = {}) {
  nlohmann::json json = {{"type", "hdf5"}, {"output_dir", dir.string()}};
  if (extra.is_object()) json.update(extra);
  return parse_config(json);
}

// A directory the engine can write into as if it were the staging one.
inline fs::path make_dir(const fs::path& dir) {
  if (world_rank() == 0) fs::create_directories(dir);
  MPI_Barrier(MPI_COMM_WORLD);
  return dir;
}

// Calls write_state directly on `trainer`'s state and returns the result.
inline WriteResult write_direct(SimpleTrainer& trainer, const fs::path& dir,
                                nlohmann::json extra = {},
                                h5::TransferStats* stats = nullptr) {
  DirectHdf5 engine(trainer, hdf5_config(dir, extra));
  const GlobalLayout layout = exchange_layout(trainer.state(), trainer.comm());
  auto files = posix_file_system();
  int rank = 0, size = 1;
  MPI_Comm_rank(trainer.comm(), &rank);
  MPI_Comm_size(trainer.comm(), &size);
  SaveContext ctx{dir,  layout, trainer.state(), trainer.comm(),
                  rank, size,   *files};
  WriteResult result = engine.write_state(ctx);
  if (stats) *stats = engine.last_save_stats();
  // Only rank 0's result holds the tensor records (the manifest's); the
  // suites read with them on every rank: rank 0's, through a manifest's
  // text.
  std::string text;
  if (rank == 0) {
    Manifest m;
    m.floe_version = "test";
    m.engine = "hdf5";
    m.tag = "global_step_0";
    m.world_size = size;
    m.created_utc = "2026-01-01T00:00:00Z";
    m.tensors = result.tensors;
    for (const auto& file : result.files) {
      m.files.push_back(FileRecord{file, fs::file_size(dir / file)});
    }
    text = m.dump();
  }
  text = Comm(trainer.comm()).broadcast_bytes(text, 0);
  if (rank != 0) result.tensors = Manifest::parse(text, dir / "manifest.json").tensors;
  return result;
}

inline Manifest manifest_of(const WriteResult& result) {
  Manifest manifest;
  manifest.engine = "hdf5";
  manifest.tensors = result.tensors;
  manifest.blobs = result.blobs;
  return manifest;
}

inline const TensorRecord& record_of(const Manifest& manifest,
                                     const std::string& key) {
  const TensorRecord* record = manifest.find(key);
  if (!record) throw std::runtime_error("no record of " + key);
  return *record;
}

// The expected bytes of `boxes` of tensor `spec`, box after box.
inline std::vector<unsigned char> expected_bytes(
    const TensorSpec& spec, const std::vector<Box>& boxes) {
  const std::size_t size = dtype_size(spec.dtype);
  std::vector<unsigned char> out;
  for (const Box& box : boxes) {
    const std::size_t at = out.size();
    out.resize(at + box.elements() * size);
    for_each_element(spec.shape, Region::box(box),
                     [&](std::uint64_t global, std::uint64_t local) {
                       expected_element(spec.dtype, spec.key(), global,
                                        out.data() + at + local * size);
                     });
  }
  return out;
}

// Reads `boxes` of `key` through `reader` and compares with the expected
// values. Collective.
inline ::testing::AssertionResult reads_expected(
    CheckpointReader& reader, const Manifest& manifest, const std::string& key,
    const std::vector<Box>& boxes) {
  const TensorRecord& record = record_of(manifest, key);
  const auto want = expected_bytes(record.spec, boxes);
  std::vector<unsigned char> got(want.size(), 0xAB);
  reader.read(record, boxes, got.data());
  if (got == want) return ::testing::AssertionSuccess();
  std::size_t first = 0;
  while (got[first] == want[first]) ++first;
  return ::testing::AssertionFailure()
         << key << ": read differs at byte " << first << " of " << want.size();
}

// What check_h5py.py must find for every tensor of `manifest`, by dataset
// path: its dtype, global shape and expected bytes as hex.
inline nlohmann::json h5py_expected_tensors(const Manifest& manifest) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& tensor : manifest.tensors) {
    const auto bytes = expected_bytes(tensor.spec, {full_box(tensor.spec.shape)});
    std::string hex;
    for (unsigned char b : bytes) {
      static const char* kDigits = "0123456789abcdef";
      hex += kDigits[b >> 4];
      hex += kDigits[b & 15];
    }
    out[tensor.dataset] = {{"dtype", dtype_name(tensor.spec.dtype)},
                           {"shape", tensor.spec.shape},
                           {"hex", hex}};
  }
  return out;
}

// Whether /usr/bin/python3 has h5py and numpy (the h5py checks skip
// without them).
inline bool have_h5py() {
  return std::system("/usr/bin/python3 -c 'import h5py, numpy' >/dev/null 2>&1") == 0;
}

// Runs python/check_h5py.py on `file`: h5py must find what `expected`
// describes (written to `scratch`/expected.json). The script's path is
// absolute, from CMake: __FILE__ is relative under ccache's base_dir.
inline ::testing::AssertionResult h5py_reads(const fs::path& file,
                                             const nlohmann::json& expected,
                                             const fs::path& scratch) {
  const fs::path json = scratch / "expected.json";
  std::ofstream(json) << expected.dump();
  const fs::path script = fs::path(FLOE_TEST_SOURCE_DIR) / "python" / "check_h5py.py";
  const std::string command =
      "/usr/bin/python3 " + script.string() + " " + file.string() + " " + json.string();
  if (std::system(command.c_str()) == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "failed: " << command;
}

// The test state plus what the template path carries: "model.big", large
// enough for its own collective H5Dwrite, and `small` tensors
// "model.small.<i>" for the batched write; every shard filled with `byte`
// (0: the expected values).
inline void build_template_state(State& state, int rank, int size, Partition partition,
                                 int small, unsigned char byte = 0) {
  build_test_state(state, rank, size, partition);
  const Shape big{320, 1024};  // 1.25 MiB of F32: >= small_tensor_bytes
  state.add_model("model.big", DType::kF32, big,
                  partition == Partition::kFlat ? zero_flat_shard(big, rank, size)
                                                : dim0_shard(big, rank, size));
  for (int i = 0; i < small; ++i) {
    const Shape shape{3, 5};
    state.add_model("model.small." + std::to_string(i), DType::kF32, shape,
                    dim0_shard(shape, rank, size));
  }
  for (auto& shard : state.tensors()) {
    if (byte == 0) {
      fill_expected(shard);
    } else {
      std::memset(shard.data(), byte, shard.nbytes());
    }
  }
}

// The structure image a template keeps of `file` (hdf5_template.hpp),
// worked out byte by byte from the file alone: the bytes where `storage`
// is false, cut at 4 KiB boundaries of the file and where storage begins
// or ends; pieces all zero are left out, the rest joined where they touch.
// `outside` (when given) is set to how many bytes lie outside the storage.
inline std::vector<h5::FileTemplate::Run> reference_image(
    const std::string& file, const std::vector<bool>& storage,
    std::uint64_t* outside = nullptr) {
  std::vector<h5::FileTemplate::Run> runs;
  if (outside) *outside = 0;
  for (std::uint64_t at = 0; at < file.size();) {
    if (storage.at(at)) {
      ++at;
      continue;
    }
    std::uint64_t end = at + 1;
    while (end < file.size() && !storage.at(end) && end % 4096 != 0) ++end;
    if (outside) *outside += end - at;
    const char* piece = file.data() + at;
    if (std::any_of(piece, piece + (end - at), [](char c) { return c != 0; })) {
      if (!runs.empty() &&
          runs.back().offset + runs.back().bytes.size() == at) {
        runs.back().bytes.insert(runs.back().bytes.end(), piece,
                                 piece + (end - at));
      } else {
        runs.push_back({at, std::vector<char>(piece, piece + (end - at))});
      }
    }
    at = end;
  }
  return runs;
}

// The hash a manifest records of `runs` (template_xxh3), computed here:
// each run's offset and length (little-endian u64) and bytes, then the
// file's size.
inline std::uint64_t reference_image_xxh3(
    const std::vector<h5::FileTemplate::Run>& runs, std::uint64_t file_size) {
  Xxh3Stream hash;
  const auto add_u64 = [&](std::uint64_t value) {
    unsigned char bytes[8];
    for (int i = 0; i < 8; ++i)
      bytes[i] = static_cast<unsigned char>(value >> (8 * i));
    hash.update(bytes, sizeof bytes);
  };
  for (const auto& run : runs) {
    add_u64(run.offset);
    add_u64(run.bytes.size());
    hash.update(run.bytes.data(), run.bytes.size());
  }
  add_u64(file_size);
  return hash.digest();
}

inline const DType kAllDtypes[] = {
    DType::kBool, DType::kU8,   DType::kI8,  DType::kU16,    DType::kI16,
    DType::kF16,  DType::kBF16, DType::kU32, DType::kI32,    DType::kF32,
    DType::kU64,  DType::kI64,  DType::kF64, DType::kF8E4M3, DType::kF8E5M2};

// One tensor of every kind of region: dim-0 shards (some empty on 4 ranks),
// a ZeRO flat range cutting rows, a replicated tensor, a rank-0 tensor held
// by the last rank only, a zero-size one, and names with '.' and '/'.
inline void build_region_kinds(State& state, int rank, int size) {
  const Shape rows{3, 5}, cube{4, 3, 5}, bias{6};
  state.add_model("model.layers.0.mlp.weight", DType::kF32, rows,
                  dim0_shard(rows, rank, size));
  state.add_optimizer("model.layers.0.mlp.weight", "exp_avg", DType::kF32, cube,
                      zero_flat_shard(cube, rank, size));
  state.add_model("model.bias", DType::kBF16, bias, replicated_whole(bias));
  if (rank == size - 1) {
    state.add_model("model.temperature", DType::kF64, {}, Region::whole({}));
  }
  state.add_model("model.empty", DType::kI32, {0, 4}, replicated_whole({0, 4}));
  state.add_model("encoder/block.0/scale", DType::kF16, rows,
                  dim0_shard(rows, rank, size));
  for (auto& shard : state.tensors()) fill_expected(shard);
}

// The setup the reader and error tests share: build_region_kinds' state
// on every rank of MPI_COMM_WORLD (a test may add to trainer.state()
// before write()), written by write_direct into path().
struct RegionKindsCheckpoint {
  RegionKindsCheckpoint() { build_region_kinds(trainer.state(), rank, size); }

  // Writes the state (with engine options `extra`; its transfers into
  // `stats`) and keeps its manifest. Collective.
  const Manifest& write(nlohmann::json extra = {},
                        h5::TransferStats* stats = nullptr) {
    manifest = manifest_of(
        write_direct(trainer, make_dir(path()), std::move(extra), stats));
    return manifest;
  }

  fs::path path() const { return dir / "c"; }
  fs::path file() const { return path() / "checkpoint.h5"; }
  // What a reader of the written checkpoint, or of `other` in its place,
  // is made from.
  ReadContext read_context() const { return read_context(manifest); }
  ReadContext read_context(const Manifest& other) const {
    return ReadContext{path(), other, MPI_COMM_WORLD, *files};
  }

  const int rank = world_rank();
  const int size = world_size();
  TempDir dir;
  SimpleTrainer trainer;
  Manifest manifest;
  std::shared_ptr<FileSystem> files = posix_file_system();
};

}  // namespace floe::test
