// floe bench: save and load a synthetic state with each engine, side by side
// with a raw sequential write/read of the same bytes (fsync included in
// both), interleaved over repetitions; prints medians and ratios.
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/bench/async_bench.hpp"
#include "cli/bench/raw_io.hpp"
#include "cli/bench/timing.hpp"
#ifdef FLOE_CLI_HF
#include "cli/bench/export_bench.hpp"
#endif
#include "cli/cli_common.hpp"
#include "cli/commands.hpp"
#include "floe/floe.hpp"

namespace floe::cli {

using bench::median;

const char kBenchSummary[] =
    "Measure save/load against raw POSIX I/O of the same bytes.";

namespace {

struct Sample {
  std::string engine, op;
  std::vector<double> seconds;
  std::vector<double> cpu_seconds;  // all ranks' CPU time, per repetition
};

// `count` F32 tensors of [rows, 256] totalling about `bytes`, each split in
// dim-0 shards across the ranks. A tensor of fewer rows than ranks (many
// small tensors) is split with the ranks rotated by its index, so that each
// rank holds about count / size of them, as a trainer's partition would;
// split alike, the last rank held every row and the others nothing.
void build_state(State& state, std::uint64_t bytes, std::uint64_t count, int rank,
                 int size) {
  const std::uint64_t per = std::max<std::uint64_t>(bytes / count / 4, 1);
  const std::uint64_t cols = per >= 256 ? 256 : per;
  const std::uint64_t rows = std::max<std::uint64_t>(per / cols, 1);
  const auto ranks = static_cast<std::uint64_t>(size);
  for (std::uint64_t t = 0; t < count; ++t) {
    const std::uint64_t at =
        rows >= ranks ? static_cast<std::uint64_t>(rank) : (rank + t) % ranks;
    const std::uint64_t begin = rows * at / ranks, end = rows * (at + 1) / ranks;
    TensorShard& shard = state.add_model(
        "layer." + std::to_string(t) + ".weight", DType::kF32, {rows, cols},
        Region::box(Box{{begin, 0}, {end - begin, cols}}));
    auto* f = shard.data_as<float>();
    const std::uint64_t n = shard.region().elements();
    for (std::uint64_t i = 0; i < n; ++i) {
      f[i] = static_cast<float>((i * 2654435761u + t) % 1000) * 0.001f;
    }
  }
}

std::uint64_t state_bytes(const State& state) {
  std::uint64_t n = 0;
  for (const auto& s : state.tensors()) n += s.nbytes();
  return n;
}



// An --engines row: "NAME" or "NAME:KEY=VALUE[:KEY=VALUE...]", as the
// engine's name and its KEY=VALUE pairs (as typed: config_json_from_flags
// converts them by their keys' kinds).
std::pair<std::string, std::vector<std::pair<std::string, std::string>>> engine_row(
    const std::string& row) {
  std::stringstream parts(row);
  std::string name;
  std::getline(parts, name, ':');
  std::vector<std::pair<std::string, std::string>> keys;
  for (std::string part; std::getline(parts, part, ':');) {
    const std::size_t eq = part.find('=');
    if (eq == 0 || eq == std::string::npos) {
      throw UsageError("--engines: '" + row + "': '" + part + "' is not KEY=VALUE");
    }
    keys.emplace_back(part.substr(0, eq), part.substr(eq + 1));
  }
  return {name, keys};
}

// The directory under --dir a row's checkpoints go to: its name, with the
// characters of its keys that a file name should not hold made '_'.
std::string row_directory(std::string row) {
  for (char& c : row) {
    if (c == ':' || c == '=' || c == '/') c = '_';
  }
  return row;
}

}  // namespace

int run_bench(const std::vector<std::string>& args) {
  CommandLine line;
  line.usage = "floe bench --dir DIR [options]   (under mpirun -np N for N ranks)";
  line.summary = kBenchSummary;
  line.options.add_options()
      ("dir", po::value<std::string>()->required(), "scratch directory (emptied)")
      ("size", po::value<std::string>()->default_value("1GiB"), "total state size")
      ("tensors", po::value<std::uint64_t>()->default_value(16), "number of tensors")
      ("repeat", po::value<int>()->default_value(4),
       "repetitions (medians reported; a multiple of the rows rotated, and even, so "
       "each load's raw@ read comes before it as often as after)")
      ("engines", po::value<std::string>()->default_value("hdf5,mpiio"),
       "comma-separated engines to measure; NAME:KEY=VALUE[:KEY=VALUE...] is a row of "
       "its own with those config keys (e.g. hdf5,hdf5:load_exchange=true)")
      ("async", "measure how long an async save() blocks, against a memcpy of "
                "the state (--engines: which engines)")
      ("no-verify", "load without checking checksums")
      ("control", "also time, for each engine, a second raw@ read of its checkpoint in the "
                  "load's place (row control@ENGINE), paired and order-balanced as the load "
                  "is: how far apart two raw reads of the same files come in this run")
      ("phases", "every rank logs the steps of each save and load (trace_phases)")
      ("json", po::value<std::string>(), "also write the results as JSON to this file")
#ifdef FLOE_CLI_HF
      ("export", "measure the Hugging Face export instead (export_hf, the hf "
                 "engine, export-hf of a checkpoint) against a raw write, and "
                 "each rank's peak memory")
      ("buffer", po::value<std::string>()->default_value("32MiB"),
       "with --export: bytes each rank moves per round")
#endif
      ;
  line.positional.add("dir", 1);
  const auto vm = parse_command_line(line, args);
  if (!vm) return 0;

  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const std::filesystem::path dir = (*vm)["dir"].as<std::string>();
  const std::uint64_t bytes = parse_count((*vm)["size"].as<std::string>(), "--size", true);
  const std::uint64_t count = (*vm)["tensors"].as<std::uint64_t>();
  const int repeat = (*vm)["repeat"].as<int>();
  if (count == 0 || repeat <= 0) throw UsageError("--tensors and --repeat must be > 0");
  if (bytes == 0) throw UsageError("--size must be > 0");
#ifdef FLOE_CLI_HF
  const std::uint64_t buffer = parse_count((*vm)["buffer"].as<std::string>(), "--buffer", true);
  if (buffer == 0) throw UsageError("--buffer must be > 0");
#endif
  std::vector<std::string> engines;
  std::stringstream list((*vm)["engines"].as<std::string>());
  for (std::string e; std::getline(list, e, ',');) engines.push_back(e);
  // Checked before --dir is emptied: a typo must not cost the directory.
  const std::vector<EngineInfo> known = list_engines();
  std::string resumable;
  for (const auto& info : known) {
    if (info.resumable) resumable += (resumable.empty() ? "" : ", ") + info.name;
  }
  // Each row's config, checked here too (a key the engine lacks, a bad
  // value), by row name.
  std::map<std::string, CheckpointConfig> configs;
  for (const auto& row : engines) {
    if (configs.count(row)) throw UsageError("--engines: '" + row + "' is named twice");
    auto [e, keys] = engine_row(row);
    const auto it = std::find_if(known.begin(), known.end(),
                                 [&](const EngineInfo& info) { return info.name == e; });
    if (it == known.end() || !it->resumable) {
      throw UsageError("--engines: '" + e + "' is not " +
                       (it == known.end() ? "a registered engine" : "a resumable engine") +
                       " (engines that save and load: " + resumable + ")");
    }
    if (vm->count("async") && !keys.empty()) {
      throw UsageError("--engines: '" + row + "': --async measures engines by name alone");
    }
    for (const auto& [key, value] : keys) {
      if (key == "type" || key == "output_dir") {
        throw UsageError("--engines: '" + row + "': the bench sets type and output_dir");
      }
    }
    keys.emplace_back("type", e);
    // The row's keys win over the bench's defaults.
    nlohmann::json cfg = {{"output_dir", (dir / row_directory(row)).string()},
                          {"keep_last_n", 1},
                          {"verify_on_load", vm->count("no-verify") == 0},
                          {"trace_phases", vm->count("phases") > 0}};
    try {
      cfg.update(config_json_from_flags(keys));
      configs[row] = parse_config(cfg);
    } catch (const Error& error) {
      throw UsageError("--engines: '" + row + "': " + error.what());
    }
  }
  if (engines.empty()) throw UsageError("--engines: no engine named (" + resumable + ")");

  SimpleTrainer trainer;
  // Agreed on: a rank without memory for its share fails every rank.
  collectively(Comm(MPI_COMM_WORLD), [&] { build_state(trainer.state(), bytes, count, rank, size); });
  {
    // Every rank needs bytes of its own to write and read; the same answer
    // on every rank, so all refuse alike.
    if (Comm(MPI_COMM_WORLD).allreduce_min(state_bytes(trainer.state())) == 0) {
      throw UsageError("--size " + (*vm)["size"].as<std::string>() + " in " +
                       std::to_string(count) + " tensors leaves a rank of " +
                       std::to_string(size) + " with no bytes: use more tensors or a larger size");
    }
  }
  // Only once the arguments are known good: --dir is emptied (agreed on:
  // a removal failing on rank 0 must not leave the others in a barrier).
  on_rank0(Comm(MPI_COMM_WORLD), [&] {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir / "raw");
  });
  if (vm->count("async")) {
    bench::AsyncBenchOptions options;
    options.dir = dir;
    options.engines = engines;
    options.repeat = repeat;
    if (vm->count("json")) options.json = (*vm)["json"].as<std::string>();
    bench::run_async_bench(trainer.state(), options);
    return 0;
  }
#ifdef FLOE_CLI_HF
  if (vm->count("export")) {
    bench::ExportBenchOptions options;
    options.dir = dir;
    options.repeat = repeat;
    options.buffer = buffer;
    if (vm->count("json")) options.json = (*vm)["json"].as<std::string>();
    bench::run_export_bench(trainer.state(), options);
    return 0;
  }
#endif
  const std::uint64_t total = [&] {
    std::uint64_t mine = state_bytes(trainer.state()), all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    return all;
  }();
  std::map<std::string, std::unique_ptr<CheckpointEngine>> made;
  for (const auto& row : engines) made[row] = make_engine(trainer, configs.at(row));

  std::vector<Sample> samples;
  auto record = [&](const std::string& engine, const std::string& op, bench::Timing t) {
    for (auto& x : samples) {
      if (x.engine == engine && x.op == op) {
        x.seconds.push_back(t.seconds);
        x.cpu_seconds.push_back(t.cpu_seconds);
        return;
      }
    }
    samples.push_back({engine, op, {t.seconds}, {t.cpu_seconds}});
  };
  // Two raw baselines: "raw" writes a new file (and fsyncs it), as a
  // checkpoint must, and removes the one it replaces afterwards, untimed,
  // as the engines' saves leave the previous checkpoint to retention's
  // background deleter (waited for, untimed, before the next operation,
  // so that no deletion runs under a timed one); "rewrite" truncates and
  // rewrites one file in place, which recycles that file's own page cache
  // and blocks and is faster on some systems. Ratios are to "raw".
  const auto raw_file = [&](int r) {
    return dir / "raw" / ("rank" + std::to_string(rank) + "." + std::to_string(r % 2) + ".bin");
  };
  const auto rewrite_file = dir / "raw" / ("rank" + std::to_string(rank) + ".rewrite.bin");
  // Each repetition runs raw and the engines in a rotated order, so each
  // takes every position equally often: a write that follows two others
  // meets a fuller device write-back cache than the first, and a fixed order
  // would charge that to whichever came last.
  // Before every timed operation the bench directory is written back and
  // its page cache dropped (untimed), so each starts from the same state:
  // on a VM whose free pages return to the host after a few seconds, a write
  // into pages freed just before runs several times faster than one into
  // pages the host took back (BENCHMARKS.md), and without the drop the
  // order of the operations decided which got which.
  const auto settle = [&] {
    bench::drop_cache(dir);
    MPI_Barrier(MPI_COMM_WORLD);
  };
  // Bytes each row moves, where not the state's (`total`): a raw@ read and
  // a control read move all of a checkpoint's files (data, metadata,
  // manifest).
  std::map<std::string, std::uint64_t> row_bytes;
  const auto bytes_of = [&](const std::string& row) {
    const auto it = row_bytes.find(row);
    return it == row_bytes.end() ? total : it->second;
  };
  const bool control = vm->count("control") > 0;
  std::vector<std::string> order = {"raw", "rewrite"};
  for (const auto& [name, engine] : made) order.push_back(name);
  for (int r = 0; r < repeat; ++r) {
    trainer.progress_now.global_step = r + 1;
    for (const auto& name : order) {
      settle();
      record(name, "write", bench::timed_with_cpu(MPI_COMM_WORLD, [&] {
               if (name == "raw") {
                 bench::raw_write(raw_file(r), trainer.state());
               } else if (name == "rewrite") {
                 bench::raw_write(rewrite_file, trainer.state());
               } else {
                 made[name]->save();
               }
             }));
      if (name == "raw") {
        std::error_code ec;  // absent in the first repetition: no error
        if (!std::filesystem::remove(raw_file(r + 1), ec) && ec) {
          log_message(LogLevel::kWarning, "bench: cannot remove " +
                                              raw_file(r + 1).string() + ": " + ec.message());
        }
      } else if (name != "rewrite") {
        made[name]->wait();  // retention's deletion of the previous one
      }
    }
    // An engine's load is paired with a raw read of that checkpoint's own
    // files ("raw@<engine>"), just before it in even repetitions and just
    // after it in odd ones: on this VM how fast a file reads back depends
    // on what was written since and how it was written (the host's state,
    // BENCHMARKS.md), not on the reader, so each load is compared with a
    // raw read of the same bytes in the same state.
    for (const auto& name : order) {
      if (name == "rewrite") continue;  // the same bytes as raw's read
      if (name == "raw") {
        settle();
        record(name, "read", bench::timed_with_cpu(MPI_COMM_WORLD, [&] {
                 bench::raw_read(raw_file(r), trainer.state());
               }));
        continue;
      }
      // Agreed on: a rank that cannot list the checkpoint (a stale NFS view
      // of `latest`) fails every rank, not only itself.
      const auto files = collectively(Comm(MPI_COMM_WORLD), [&] {
        return bench::latest_checkpoint_files(configs.at(name).output_dir);
      });
      // A raw read of the checkpoint's files, each rank its share, timed as
      // row `as`.
      const auto raw_read_as = [&](const std::string& as) {
        settle();
        record(as, "read", bench::timed_with_cpu(MPI_COMM_WORLD, [&] {
                 row_bytes[as] = bench::raw_read_share(files, rank, size, trainer.state());
               }));
      };
      // `row`, timed by `timed_row`, paired with a raw@ read of the same
      // files just before it in even repetitions and just after it in odd
      // ones.
      const auto paired = [&](const std::string& row, const auto& timed_row) {
        if (r % 2 == 0) raw_read_as("raw@" + row);
        timed_row();
        if (r % 2 == 1) raw_read_as("raw@" + row);
      };
      paired(name, [&] {
        settle();
        record(name, "read", bench::timed_with_cpu(MPI_COMM_WORLD, [&] { made[name]->load(); }));
      });
      // The control: the same pairing with a raw read in the load's place.
      if (control) paired("control@" + name, [&] { raw_read_as("control@" + name); });
    }
    std::rotate(order.begin(), order.begin() + 1, order.end());
    out() << "repetition " << r + 1 << "/" << repeat << " done\n" << std::flush;
  }

  nlohmann::json report = {{"ranks", size}, {"bytes", total}, {"tensors", count},
                           {"repeat", repeat}, {"verify_on_load", vm->count("no-verify") == 0},
                           {"results", nlohmann::json::array()}};
  // A row's baseline: raw's write or read, and for a load (or a control
  // read) the raw@ read of the same checkpoint's files; a raw@ row's is
  // raw's read. Throughput ratios count the bytes each row moves
  // (bytes_of): a load the state's, raw@ all the checkpoint's.
  const auto baseline_of = [&](const Sample& s) -> const Sample* {
    std::string want = "raw";
    if (s.op == "read" && s.engine != "raw" && s.engine.rfind("raw@", 0) != 0) {
      want = "raw@" + s.engine;
    }
    for (const auto& b : samples) {
      if (b.engine == want && b.op == s.op) return &b;
    }
    return nullptr;
  };
  // s's throughput over b's: above 1 when s moves its bytes faster.
  const auto throughput_ratio = [&](const Sample& s, double s_seconds, const Sample& b,
                                    double b_seconds) {
    const double s_bytes = static_cast<double>(bytes_of(s.engine));
    const double b_bytes = static_cast<double>(bytes_of(b.engine));
    return s_bytes * b_seconds / (b_bytes * s_seconds);
  };
  char row[200];
  std::snprintf(row, sizeof row, "%-18s %-6s %10s %9s %12s %14s %10s\n", "engine", "op",
                "median s", "GB/s", "vs raw", "us/tensor", "cpu s");
  const char* io = std::getenv("OMPI_MCA_io");
  report["mpi_io_component"] = io ? io : "default";
  out() << "\n" << size << " ranks, " << total / 1e9 << " GB in " << count
        << " tensors, " << repeat << " repetitions, MPI-IO component: "
        << (io ? io : "default") << "\n" << row;
  std::string paired_lines;  // printed after the table
  for (const auto& s : samples) {
    const double m = median(s.seconds);
    const Sample* b = baseline_of(s);
    const double ratio = b ? throughput_ratio(s, m, *b, median(b->seconds)) : 0;
    const std::uint64_t moved = bytes_of(s.engine);
    const double cpu = median(s.cpu_seconds);
    std::snprintf(row, sizeof row, "%-18s %-6s %10.3f %9.3f %12.3f %14.1f %10.3f\n",
                  s.engine.c_str(), s.op.c_str(), m, static_cast<double>(moved) / m / 1e9, ratio,
                  m / static_cast<double>(count) * 1e6, cpu);
    out() << row;
    report["results"].push_back({{"engine", s.engine}, {"op", s.op}, {"median_s", m},
                                 {"all_s", s.seconds}, {"cpu_median_s", cpu},
                                 {"cpu_all_s", s.cpu_seconds}, {"bytes", moved},
                                 {"gb_per_s", static_cast<double>(moved) / m / 1e9},
                                 {"throughput_vs_raw", ratio},
                                 {"baseline", b ? b->engine : ""}});
    // A load against the raw@ read of the same repetition, one ratio per
    // repetition (the pair met the same device state).
    if (!b || b->engine.rfind("raw@", 0) != 0) continue;
    std::vector<double> pairs;
    for (std::size_t i = 0; i < s.seconds.size() && i < b->seconds.size(); ++i) {
      pairs.push_back(throughput_ratio(s, s.seconds[i], *b, b->seconds[i]));
    }
    report["results"].back()["paired_vs_raw"] = pairs;
    report["results"].back()["paired_vs_raw_median"] = median(pairs);
    const double balanced = bench::order_balanced(pairs);
    report["results"].back()["paired_vs_raw_balanced"] = balanced;
    char line[120];
    std::snprintf(line, sizeof line, "%-18s read vs %s, paired per repetition:",
                  s.engine.c_str(), b->engine.c_str());
    paired_lines += line;
    for (const double p : pairs) {
      std::snprintf(line, sizeof line, " %.2f", p);
      paired_lines += line;
    }
    std::snprintf(line, sizeof line, "; order-balanced %.3f\n", balanced);
    paired_lines += line;
  }
  if (!paired_lines.empty()) {
    out() << "reads: an engine's \"vs raw\" is against raw@<engine>, a raw read of that "
             "checkpoint's own files\n"
          << paired_lines
          << "(raw@ reads just before the load in odd-numbered repetitions, just after it in "
             "even ones; order-balanced: the median over pairs of repetitions of the geometric "
             "mean of the pair"
          << (control ? "; control@<engine>: a raw read of the checkpoint in the load's place, "
                        "so its ratios show how far apart two raw reads of the same files come"
                      : "")
          << ")\n";
  }
  if (vm->count("json")) {
    bench::write_report(MPI_COMM_WORLD, (*vm)["json"].as<std::string>(), report.dump(1) + "\n");
  }
  return 0;
}

}  // namespace floe::cli
