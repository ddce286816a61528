// Corruption sweeps: a single bit flipped, and the file cut short, at many
// positions of every file kind a checkpoint or an export holds (the hdf5
// data file, the mpiio data file, manifest.json, a safetensors file, the
// safetensors index). Each damaged copy is judged by what users run:
// verify_checkpoint and load() for checkpoints, the safe reader and
// load_weights() for exports. Outcomes:
//   detected  both refuse it with a floe::Error naming the damaged file;
//   harmless  both accept it and load() gives back exactly the saved state
//             (the byte was padding or unused file space);
//   check only  the check refuses it naming the file, and load() gives back
//             exactly the saved state: damage to structures that verify
//             checks but a load does not read (an hdf5 dataset's object
//             header: load reads at the manifest's storage_offset);
//   silent    load() accepts it and gives back something else: never allowed
//             where a checksum covers the bytes.
// Auto-resume over a damaged newest checkpoint falls back to the one before.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>

#include <hdf5.h>

#include "engine_fixture.hpp"
#include "floe/hf.hpp"
#include "hf_test_util.hpp"
#ifdef FLOE_TEST_HF
#include "engines/hf/safetensors_index.hpp"
#endif

namespace floe::test {
namespace {

namespace fs = std::filesystem;

struct Tally {
  // detected: refused by both, with the same floe::Error on every rank;
  // named: of those, how many named the damaged file itself (the others
  // name the file the damage points to, e.g. a data file whose dataset a
  // flipped manifest byte renamed).
  int tried = 0, detected = 0, named = 0, harmless = 0, check_only = 0, silent = 0,
      unclean = 0;
  // manifest.json only: flips after which the file still parses to the same
  // JSON value (formatting only), and how many of the harmless ones were not
  // such a flip (must be none: the self-checksum covers the value).
  int same_value = 0, harmless_changed = 0;
  std::string first_bad;      // the first silent or unclean case, for the message
  std::string first_unnamed;  // the first detected case not naming the file

  void bad(const std::string& what) {
    if (first_bad.empty()) first_bad = what;
  }
  std::string line(const std::string& what) const {
    return what + ": " + std::to_string(detected) + "/" + std::to_string(tried) +
           " detected (" + std::to_string(named) + " naming it), " +
           std::to_string(harmless) + " harmless, " + std::to_string(check_only) +
           " caught by the check only, " + std::to_string(silent) + " silent, " +
           std::to_string(unclean) + " unclean";
  }
};

// Up to `n` positions spread evenly over [0, size), first and last included.
std::vector<std::uint64_t> positions(std::uint64_t size, std::uint64_t n) {
  std::vector<std::uint64_t> out;
  if (size == 0) return out;
  n = std::min(n, size);
  for (std::uint64_t k = 0; k < n; ++k) {
    const std::uint64_t at = n == 1 ? 0 : k * (size - 1) / (n - 1);
    if (out.empty() || out.back() != at) out.push_back(at);
  }
  return out;
}

// Rank 0 damages `file` (flip bit `bit` of byte `at`, or cut it to `at`
// bytes) and puts it back when this goes out of scope. Collective.
class Damage {
 public:
  Damage(fs::path file, bool truncate, std::uint64_t at, int bit)
      : file_(std::move(file)) {
    if (world_rank() == 0) {
      original_ = read_bytes(file_);
      std::string bytes = original_;
      if (truncate) {
        bytes.resize(at);
      } else {
        bytes[at] = static_cast<char>(bytes[at] ^ (1 << bit));
      }
      write_bytes(file_, bytes);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
  ~Damage() {
    if (world_rank() == 0) write_bytes(file_, original_);
    MPI_Barrier(MPI_COMM_WORLD);
  }

 private:
  fs::path file_;
  std::string original_;
};

bool same_scalars_and_blobs(const State& a, const State& b) {
  if (a.scalars() != b.scalars() || a.metadata() != b.metadata()) return false;
  for (const char* name : {"rng"}) {
    const auto* x = a.blob(name);
    const auto* y = b.blob(name);
    if (!x || !y || *x != *y) return false;
  }
  return true;
}

// Every rank's verdict, combined: "detected" only if every rank refused it
// with the same floe::Error.
enum class Verdict { kNamed, kDetected, kHarmless, kCheckOnly, kSilent, kUnclean };

// `check` is the integrity check (verify, or the safe reader), `load` the
// load; `exact` whether the load gave back exactly what was saved.
Verdict combine(const Caught& check, const Caught& load, bool exact,
                const std::string& name, std::string& why) {
  const auto named = [&](const Caught& c) {
    return c.floe_error && c.message.find(name) != std::string::npos;
  };
  Verdict mine;
  if (check.thrown && load.thrown) {
    if (!check.floe_error || !load.floe_error) {
      mine = Verdict::kUnclean;
    } else {
      mine = named(check) && named(load) ? Verdict::kNamed : Verdict::kDetected;
    }
    why = "refused without naming " + name + ": " + check.message + " | " + load.message;
  } else if (!check.thrown && !load.thrown) {
    mine = exact ? Verdict::kHarmless : Verdict::kSilent;
    why = "both accepted it and the loaded state differs";
  } else if (!load.thrown && !exact) {
    mine = Verdict::kSilent;
    why = "the check refused it but load accepted it and loaded wrong values: " +
          check.message;
  } else if (!load.thrown && named(check)) {
    // Damage to what only the check reads; the load gave back the state.
    mine = Verdict::kCheckOnly;
    why = "the check refused it but load accepted it and loaded wrong values: " +
          check.message;
  } else {
    // The check and the load disagree: each must hold its own promise.
    mine = Verdict::kUnclean;
    why = "the check and the load disagree: " +
          (check.thrown ? check.message : std::string("(check passed)")) + " | " +
          (load.thrown ? load.message : std::string("(load passed)"));
  }
  if (!same_on_all_ranks(check.message + "|" + load.message)) mine = Verdict::kUnclean;
  int worst = static_cast<int>(mine);
  MPI_Allreduce(MPI_IN_PLACE, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return static_cast<Verdict>(worst);
}

void count(Tally& t, Verdict v, const std::string& what, const std::string& why) {
  ++t.tried;
  switch (v) {
    case Verdict::kNamed: ++t.detected; ++t.named; break;
    case Verdict::kDetected:
      ++t.detected;
      if (t.first_unnamed.empty()) t.first_unnamed = what + ": " + why;
      break;
    case Verdict::kHarmless: ++t.harmless; break;
    case Verdict::kCheckOnly: ++t.check_only; break;
    case Verdict::kSilent: ++t.silent; t.bad(what + ": SILENT " + why); break;
    case Verdict::kUnclean: ++t.unclean; t.bad(what + ": " + why); break;
  }
}

// ---- Resumable checkpoints ------------------------------------------------

struct Saved {
  SimpleTrainer trainer;
  std::unique_ptr<CheckpointEngine> engine;
};

// HDF5 identifiers of the kinds no file owns (property lists, dataspaces,
// transient datatypes): H5Fget_obj_count does not see them.
std::uint64_t hdf5_ids() {
  std::uint64_t total = 0;
  for (const H5I_type_t type : {H5I_GENPROP_LST, H5I_DATASPACE, H5I_DATATYPE}) {
    hsize_t n = 0;
    if (H5Inmembers(type, &n) >= 0) total += n;
  }
  return total;
}

Verdict judge_checkpoint(const std::string& engine, const fs::path& out,
                         const fs::path& dir, const std::string& name,
                         const State& reference, std::string& why) {
  const std::uint64_t ids_before = hdf5_ids();
  const Caught verify = catch_error([&] {
    const VerifyReport r = verify_checkpoint(dir, MPI_COMM_WORLD);
    if (!r.ok()) throw Error(ErrorCode::kCorrupt, r.problems[0]);
  });
  Caught load;
  bool exact = false;
  {
    Saved fresh;
    build_test_state(fresh.trainer.state(), world_rank(), world_size(), Partition::kMixed);
    for (auto& s : fresh.trainer.state().tensors()) std::memset(s.data(), 0, s.nbytes());
    fresh.trainer.state().set_scalar("lr", 0.0);
    fresh.engine = make_test_engine(fresh.trainer, engine, out);
    load = catch_error([&] { fresh.engine->load(dir); });
    exact = !load.thrown && state_holds_expected(fresh.trainer.state()) &&
            same_scalars_and_blobs(fresh.trainer.state(), reference);
  }
  // Every HDF5 file, dataset, group, attribute, property list, dataspace and
  // type the readers opened is closed again, refused or not: one left open
  // keeps the file open and makes HDF5 print "infinite loop closing
  // library" at exit. (HDF5 1.10.8 still prints that after some damaged
  // files with no identifier left open: state of its own that a failed
  // H5Fopen leaves behind; see RELIABILITY.md.)
  const std::int64_t open_ids =
      static_cast<std::int64_t>(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL)) +
      (static_cast<std::int64_t>(hdf5_ids()) - static_cast<std::int64_t>(ids_before));
  Verdict v = combine(verify, load, exact, name, why);
  int leaked = open_ids != 0;
  MPI_Allreduce(MPI_IN_PLACE, &leaked, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (leaked) {
    why = "HDF5 identifiers left open (" + std::to_string(open_ids) + " on rank " +
          std::to_string(world_rank()) + ") after: " + why;
    v = Verdict::kUnclean;
  }
  return v;
}

// Whether flipping bit `bit` of byte `at` leaves `text` parsing to the same
// JSON value (nlohmann compares numbers by value: 1e-05 == 1E-05).
bool same_json_value(const std::string& text, std::uint64_t at, int bit) {
  std::string damaged = text;
  damaged[at] = static_cast<char>(damaged[at] ^ (1 << bit));
  try {
    return nlohmann::json::parse(damaged) == nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

class CorruptionSweep : public ::testing::TestWithParam<std::string> {};

TEST_P(CorruptionSweep, FlipsAndTruncationsOfEveryFileAreDetected) {
  const std::string engine = GetParam();
  TempDir tmp;
  const fs::path out = tmp / "ckpt";
  Saved saver;
  build_test_state(saver.trainer.state(), world_rank(), world_size(), Partition::kMixed);
  saver.engine = make_test_engine(saver.trainer, engine, out);
  saver.trainer.progress_now.global_step = 1;
  saver.engine->save();
  saver.trainer.progress_now.global_step = 2;
  saver.engine->save();
  MPI_Barrier(MPI_COMM_WORLD);  // rank 0's commit is done: every rank reads it
  const fs::path dir = out / "global_step_2";
  const Manifest manifest = Manifest::read(dir);
  std::vector<std::string> kinds;
  for (const auto& f : manifest.files) kinds.push_back(f.path);
  kinds.push_back("manifest.json");

  for (const auto& name : kinds) {
    const std::uint64_t size = fs::file_size(dir / name);
    // Flips: evenly spread, plus the first and a middle byte of every piece
    // and blob in this file (mpiio: the manifest knows where they are).
    std::vector<std::uint64_t> flips = positions(size, 96);
    for (const auto& t : manifest.tensors) {
      for (const auto& p : t.pieces) {
        if (p.file == name && p.nbytes > 0 && engine == "mpiio") {
          flips.push_back(p.offset);
          flips.push_back(p.offset + p.nbytes / 2);
        }
      }
    }
    Tally flipped, cut;
    const bool is_manifest = name == "manifest.json";
    const std::string original = is_manifest ? read_bytes(dir / name) : std::string();
    MPI_Barrier(MPI_COMM_WORLD);  // read intact on every rank before rank 0 damages it
    for (std::size_t k = 0; k < flips.size(); ++k) {
      const int bit = static_cast<int>(k % 8);
      const std::string what = engine + " " + name + " bit " + std::to_string(bit) +
                               " of byte " + std::to_string(flips[k]);
      run_within(std::chrono::seconds(60), [&] {
        Damage damage(dir / name, false, flips[k], bit);
        std::string why;
        const Verdict v = judge_checkpoint(engine, out, dir, name, saver.trainer.state(), why);
        count(flipped, v, what, why);
        if (is_manifest) {
          const bool same = same_json_value(original, flips[k], bit);
          flipped.same_value += same;
          if (v == Verdict::kHarmless && !same) {
            ++flipped.harmless_changed;
            flipped.bad(what + ": harmless, but the manifest's value changed");
          }
        }
      });
    }
    for (const std::uint64_t at : positions(size, 48)) {
      const std::string what = engine + " " + name + " cut to " + std::to_string(at);
      run_within(std::chrono::seconds(60), [&] {
        Damage damage(dir / name, true, at, 0);
        std::string why;
        count(cut, judge_checkpoint(engine, out, dir, name, saver.trainer.state(), why),
              what, why);
      });
    }
    if (world_rank() == 0) {
      std::printf("[ figures  ] %s%s\n[ figures  ] %s\n",
                  flipped.line(engine + " " + name + " bit flips").c_str(),
                  is_manifest ? (" (" + std::to_string(flipped.same_value) +
                                 " left the JSON value unchanged)")
                                    .c_str()
                              : "",
                  cut.line(engine + " " + name + " truncations").c_str());
    }
    // Truncation is always caught (sizes are in the manifest; a cut
    // manifest is not JSON). Flipped data is caught by the checksums.
    EXPECT_EQ(cut.named, cut.tried) << cut.first_bad << cut.first_unnamed;
    EXPECT_EQ(flipped.unclean, 0) << flipped.first_bad;
    if (name != "manifest.json") {
      // Data files: checksums (and HDF5's own) catch every flip that
      // changes what a load returns, and name the file.
      EXPECT_EQ(flipped.silent, 0) << flipped.first_bad;
      EXPECT_EQ(flipped.named, flipped.detected) << flipped.first_unnamed;
      EXPECT_GT(flipped.detected, flipped.tried / 2);
      // Only hdf5 has structures that verify checks and load does not read.
      if (engine != "hdf5") {
        EXPECT_EQ(flipped.check_only, 0) << flipped.line(name);
      }
    } else {
      // manifest.json checks itself (manifest_xxh3 over its canonical form):
      // every flip that changes its JSON value is refused, naming the file;
      // the only ones accepted are those that leave the value as it was
      // (an exponent's e/E), and those load exactly.
      EXPECT_EQ(flipped.silent, 0) << flipped.first_bad;
      EXPECT_EQ(flipped.harmless_changed, 0) << flipped.first_bad;
      EXPECT_EQ(flipped.named, flipped.detected) << flipped.first_unnamed;
      EXPECT_EQ(flipped.detected + flipped.harmless, flipped.tried)
          << flipped.line("manifest flips");
      EXPECT_EQ(flipped.harmless, flipped.same_value) << flipped.line("manifest flips");
    }
  }
}

TEST_P(CorruptionSweep, AutoResumeFallsBackToTheNewestGoodCheckpoint) {
  const std::string engine = GetParam();
  TempDir tmp;
  const fs::path out = tmp / "ckpt";
  {
    Saved saver;
    build_test_state(saver.trainer.state(), world_rank(), world_size(), Partition::kMixed);
    saver.engine = make_test_engine(saver.trainer, engine, out);
    for (int step = 1; step <= 3; ++step) {
      saver.trainer.progress_now.global_step = step;
      saver.engine->save();
    }
  }
  // Damage step 3's data file (cut) and step 2's manifest (not JSON):
  // resume must skip both and land on step 1.
  if (world_rank() == 0) {
    const Manifest m3 = Manifest::read(out / "global_step_3");
    const fs::path data = out / "global_step_3" / m3.files.at(0).path;
    fs::resize_file(data, fs::file_size(data) / 2);
    std::ofstream(out / "global_step_2" / "manifest.json", std::ios::app) << "}";
  }
  MPI_Barrier(MPI_COMM_WORLD);
  Saved fresh;
  build_test_state(fresh.trainer.state(), world_rank(), world_size(), Partition::kMixed);
  for (auto& s : fresh.trainer.state().tensors()) std::memset(s.data(), 0, s.nbytes());
  fresh.engine = make_test_engine(fresh.trainer, engine, out);
  std::vector<std::string> warnings;
  set_log_sink([&](LogLevel, const std::string& m) { warnings.push_back(m); });
  std::optional<Manifest> resumed;
  run_within(std::chrono::seconds(60), [&] { resumed = fresh.engine->resume(); });
  set_log_sink(nullptr);
  ASSERT_TRUE(resumed.has_value());
  EXPECT_EQ(resumed->step, 1);
  EXPECT_TRUE(state_holds_expected(fresh.trainer.state()));
  if (world_rank() == 0) {
    EXPECT_EQ(read_bytes(out / "latest"), "global_step_1\n");
    EXPECT_TRUE(fs::exists(out / "global_step_3.corrupt"));
    EXPECT_TRUE(fs::exists(out / "global_step_2.corrupt"));
    EXPECT_EQ(std::count_if(warnings.begin(), warnings.end(),
                            [](const std::string& w) {
                              return w.find("skipped checkpoint") != std::string::npos;
                            }),
              2)
        << ::testing::PrintToString(warnings);
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, CorruptionSweep, ::testing::ValuesIn(resumable_engines()),
                         [](const auto& info) { return info.param; });

// ---- Hugging Face exports ---------------------------------------------------
#ifdef FLOE_TEST_HF

// The safe reader (what opening an export for reading runs first), then
// load_weights into a zeroed state.
Verdict judge_export(const fs::path& dir, const std::string& name, std::string& why) {
  const Caught open = catch_error([&] { hf::HfDirectory opened(dir); });
  State state;
  build_test_state(state, world_rank(), world_size(), Partition::kMixed);
  for (auto& s : state.tensors()) std::memset(s.data(), 0, s.nbytes());
  const Caught load = catch_error([&] { (void)load_weights(dir, state, MPI_COMM_WORLD); });
  bool exact = !load.thrown;
  for (const auto& s : state.tensors()) {
    if (exact && s.spec().group == TensorGroup::kModel && !holds_expected(s)) exact = false;
  }
  return combine(open, load, exact, name, why);
}

TEST(CorruptionSweepHf, FlipsAndTruncationsOfAnExportAreDetected) {
  TempDir tmp;
  const fs::path dir = tmp / "export";
  {
    State state;
    build_test_state(state, world_rank(), world_size(), Partition::kMixed);
    HfExportOptions options;
    options.max_shard_size = 1500;  // several files and an index
    export_hf(state, dir, MPI_COMM_WORLD, options);
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  ASSERT_GE(names.size(), 3u);
  ASSERT_EQ(names.back(), "model.safetensors.index.json");
  // The index and the first shard: the other shards are the same kind.
  for (const std::string& name : {names.back(), names.front()}) {
    const fs::path file = dir / name;
    const std::string bytes = read_bytes(file);
    // Every rank reads the intact file before rank 0 damages it: a rank
    // that read it after the first flip planned other positions (a header
    // length with a flipped bit), ran a different number of trials, and
    // hung the job in the last one's collectives.
    MPI_Barrier(MPI_COMM_WORLD);
    std::uint64_t header_end = bytes.size();  // the index is all "header"
    if (name != names.back()) {
      std::uint64_t n = 0;
      for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
      header_end = 8 + n;
    }
    Tally header, data, cut;
    std::vector<std::uint64_t> flips = positions(header_end, 128);
    for (const std::uint64_t at : positions(bytes.size() - header_end, 32)) {
      flips.push_back(header_end + at);
    }
    for (std::size_t k = 0; k < flips.size(); ++k) {
      const int bit = static_cast<int>(k % 8);
      const std::string what = name + " bit " + std::to_string(bit) + " of byte " +
                               std::to_string(flips[k]);
      run_within(std::chrono::seconds(60), [&] {
        Damage damage(file, false, flips[k], bit);
        std::string why;
        count(flips[k] < header_end ? header : data, judge_export(dir, name, why), what, why);
      });
    }
    for (const std::uint64_t at : positions(bytes.size(), 48)) {
      run_within(std::chrono::seconds(60), [&] {
        Damage damage(file, true, at, 0);
        std::string why;
        count(cut, judge_export(dir, name, why), name + " cut to " + std::to_string(at), why);
      });
    }
    if (world_rank() == 0) {
      std::printf("[ figures  ] %s\n[ figures  ] %s\n[ figures  ] %s\n",
                  header.line("hf " + name + " header bit flips").c_str(),
                  data.line("hf " + name + " data bit flips (no checksum in the format)").c_str(),
                  cut.line("hf " + name + " truncations").c_str());
    }
    // A cut is always caught, except of the index's trailing newline.
    EXPECT_GE(cut.detected, cut.tried - 1) << cut.first_bad;
    EXPECT_EQ(cut.silent + cut.unclean, 0) << cut.first_bad;
    EXPECT_GE(header.detected, header.tried * 3 / 4) << header.line("header flips");
    EXPECT_EQ(header.unclean, 0) << header.first_bad;
    EXPECT_EQ(header.silent, 0) << header.first_bad;
    EXPECT_EQ(data.unclean, 0) << data.first_bad;
    EXPECT_EQ(cut.check_only + header.check_only + data.check_only, 0);
  }
}

#endif  // FLOE_TEST_HF

}  // namespace
}  // namespace floe::test
