#include "cli/bench/export_bench.hpp"

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/bench/raw_io.hpp"
#include "cli/bench/timing.hpp"
#include "cli/cli_common.hpp"
#include "floe/floe.hpp"
#include "floe/hf.hpp"

namespace floe::bench {
namespace {

namespace fs = std::filesystem;
using cli::out;

constexpr double kMiB = 1024.0 * 1024.0;

// A field of /proc/self/status in bytes ("VmHWM", "VmRSS"); 0 if unknown.
std::uint64_t status_bytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.compare(0, field.size() + 1, field + ":") == 0) {
      return std::strtoull(line.c_str() + field.size() + 1, nullptr, 10) * 1024;
    }
  }
  return 0;
}

// Resets VmHWM to the current resident size (Linux >= 4.0).
bool reset_peak() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}



// One export's memory on this rank: resident before, peak during.
struct Memory {
  std::uint64_t before = 0, peak = 0;
};

template <typename Fn>
double measured(Memory& memory, Fn&& fn) {
  MPI_Barrier(MPI_COMM_WORLD);
  reset_peak();
  const std::uint64_t before = status_bytes("VmRSS");
  const double seconds = timed(MPI_COMM_WORLD, fn);
  const std::uint64_t peak = status_bytes("VmHWM");
  if (peak >= memory.peak) memory = Memory{before, peak};
  return seconds;
}

void clear(const fs::path& dir) {
  MPI_Barrier(MPI_COMM_WORLD);
  // Agreed on: a removal that fails on rank 0 (EACCES, an NFS .nfsXXXX
  // file still open) must not leave the others waiting in a barrier.
  on_rank0(Comm(MPI_COMM_WORLD), [&] { fs::remove_all(dir); });
}

// Untimed, before every timed write: the page cache of everything under
// `dir` is written back and dropped, so each write starts from the same
// state (it gets the pages the op before it used). Without it the writes'
// speed depended on what ran just before: on a VM whose free pages go back
// to the host (free page reporting), copying into page-cache pages just
// freed ran at 2-3 GB/s and into others at ~0.5 GB/s, and only the raw
// write freed its own (its untimed removal of a file the raw read had just
// cached).
void settle(const fs::path& dir) {
  MPI_Barrier(MPI_COMM_WORLD);
  drop_cache(dir);
  MPI_Barrier(MPI_COMM_WORLD);
}

// The raw write of one repetition: each rank writes its bytes to a new
// file and fsyncs it (timed, the slowest rank), then removes the file of
// the repetition before (untimed), as the hf engine's save leaves the
// previous export to retention's background deleter (waited for, untimed,
// after the save).
double timed_raw_write(const fs::path& file, const fs::path& previous,
                       const State& state) {
  // timed(): a write that fails on one rank (ENOSPC, a quota) fails every
  // rank instead of leaving the others in the reduction.
  const double slowest = timed(MPI_COMM_WORLD, [&] { raw_write(file, state); });
  std::error_code ec;
  fs::remove(previous, ec);  // absent in the first repetition
  return slowest;
}

}  // namespace

void run_export_bench(State& state, const ExportBenchOptions& options) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const fs::path& dir = options.dir;
  std::uint64_t own = 0;
  for (const auto& s : state.tensors()) own += s.nbytes();
  std::uint64_t total = 0;
  MPI_Allreduce(&own, &total, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  const bool peak_resets = reset_peak();

  SimpleTrainer trainer;
  for (auto& shard : state.tensors()) {
    trainer.state_now.add(shard.spec(), shard.region(), shard.data());
  }
  auto engine = [&](const std::string& type, const fs::path& out_dir) {
    return make_engine(trainer, parse_config({{"type", type},
                                              {"output_dir", out_dir.string()},
                                              {"keep_last_n", 1}}));
  };
  // The checkpoint `floe export-hf` converts, saved once (not timed).
  trainer.progress_now.global_step = 1;
  engine("mpiio", dir / "ckpt")->save();
  const fs::path ckpt = dir / "ckpt" / "global_step_1";
  auto hf_engine = engine("hf", dir / "hf-engine");

  HfExportOptions export_options;
  export_options.round_bytes = options.buffer;
  std::map<std::string, std::vector<double>> seconds;
  Memory in_memory, engine_memory, offline_memory;
  // Two raw files per rank, used in turns: each repetition writes one and
  // removes the other.
  auto raw_file = [&](int r) {
    return dir / "raw" /
           ("rank" + std::to_string(rank) + "." + std::to_string(r % 2) + ".bin");
  };
  on_rank0(Comm(MPI_COMM_WORLD), [&] { fs::create_directories(dir / "raw"); });
  // The three writes run in a rotated order each repetition, so each takes
  // every position equally often (see cmd_bench.cpp).
  std::vector<std::string> order = {"raw write", "export_hf", "hf engine save"};
  for (int r = 0; r < options.repeat; ++r) {
    trainer.progress_now.global_step = r + 2;
    for (const auto& op : order) {
      if (op == "raw write") {
        settle(dir);
        seconds[op].push_back(timed_raw_write(raw_file(r), raw_file(r + 1), state));
      } else if (op == "export_hf") {
        // Into a directory emptied beforehand (untimed): export_hf removes
        // nothing.
        clear(dir / "hf-mem");
        settle(dir);
        seconds[op].push_back(measured(in_memory, [&] {
          export_hf(state, dir / "hf-mem", MPI_COMM_WORLD, export_options);
        }));
      } else {
        settle(dir);
        seconds[op].push_back(measured(engine_memory, [&] { hf_engine->save(); }));
        hf_engine->wait();  // retention's deletion of the previous export
      }
    }
    std::rotate(order.begin(), order.begin() + 1, order.end());
    clear(dir / "hf-ckpt");
    drop_cache(dir);
    MPI_Barrier(MPI_COMM_WORLD);
    seconds["raw read"].push_back(
        timed(MPI_COMM_WORLD, [&] { raw_read(raw_file(r), state); }));
    // As before every timed write; this also drops what the raw read
    // cached, so the checkpoint is read cold.
    settle(dir);
    seconds["export-hf"].push_back(measured(offline_memory, [&] {
      export_checkpoint_hf(ckpt, dir / "hf-ckpt", MPI_COMM_WORLD,
                           export_options);
    }));
    out() << "repetition " << r + 1 << "/" << options.repeat << " done\n"
          << std::flush;
  }

  // Every rank's memory figures, on rank 0.
  const std::vector<std::uint64_t> mine = {
      own,           in_memory.before,     in_memory.peak,
      engine_memory.before, engine_memory.peak, offline_memory.before,
      offline_memory.peak};
  std::vector<std::uint64_t> all(mine.size() * static_cast<std::size_t>(size));
  MPI_Gather(mine.data(), static_cast<int>(mine.size()), MPI_UINT64_T,
             all.data(), static_cast<int>(mine.size()), MPI_UINT64_T, 0,
             MPI_COMM_WORLD);

  const double raw_write_s = median(seconds["raw write"]);
  const double raw_read_s = median(seconds["raw read"]);
  const char* io = std::getenv("OMPI_MCA_io");
  nlohmann::json report = {{"ranks", size},
                           {"bytes", total},
                           {"tensors", state.tensors().size()},
                           {"repeat", options.repeat},
                           {"buffer_bytes", options.buffer},
                           {"mpi_io_component", io ? io : "default"},
                           {"peak_reset", peak_resets},
                           {"results", nlohmann::json::array()},
                           {"memory", nlohmann::json::array()}};
  char row[240];
  out() << "\n" << size << " ranks, " << total / 1e9 << " GB in "
        << state.tensors().size() << " tensors, " << options.repeat
        << " repetitions, buffer " << options.buffer / kMiB
        << " MiB, MPI-IO component: " << (io ? io : "default") << "\n";
  std::snprintf(row, sizeof row, "%-16s %10s %8s %14s\n", "op", "median s",
                "GB/s", "vs raw write");
  out() << row;
  for (const char* op : {"raw write", "raw read",
                         "export_hf", "hf engine save", "export-hf"}) {
    const double m = median(seconds[op]);
    const double ratio = raw_write_s / m;
    std::snprintf(row, sizeof row, "%-16s %10.3f %8.3f %14.3f\n", op, m,
                  total / m / 1e9, ratio);
    out() << row;
    report["results"].push_back({{"op", op},
                                 {"median_s", m},
                                 {"all_s", seconds[op]},
                                 {"gb_per_s", total / m / 1e9},
                                 {"throughput_vs_raw_write", ratio}});
  }
  const double offline_vs_both =
      (raw_read_s + raw_write_s) / median(seconds["export-hf"]);
  std::snprintf(row, sizeof row,
                "export-hf (cold checkpoint) vs raw read + raw write: %.3f\n",
                offline_vs_both);
  out() << row;
  report["export_hf_cli_vs_raw_read_plus_write"] = offline_vs_both;

  out() << "\nresident memory per rank, MiB (peak = VmHWM during the op"
        << (peak_resets ? "" : "; not reset: peak since start") << ")\n";
  std::snprintf(row, sizeof row, "%-5s %9s %9s %9s %10s %9s %10s %9s %10s\n",
                "rank", "own part", "before", "export_hf", "- own",
                "hf save", "- own", "export-hf", "- before");
  out() << row;
  for (int r = 0; r < size && rank == 0; ++r) {
    const std::uint64_t* m = &all[static_cast<std::size_t>(r) * mine.size()];
    auto mib = [](std::uint64_t b) { return static_cast<double>(b) / kMiB; };
    std::snprintf(row, sizeof row,
                  "%-5d %9.1f %9.1f %9.1f %10.1f %9.1f %10.1f %9.1f %10.1f\n",
                  r, mib(m[0]), mib(m[1]), mib(m[2]), mib(m[2]) - mib(m[0]),
                  mib(m[4]), mib(m[4]) - mib(m[0]), mib(m[6]),
                  mib(m[6]) - mib(m[5]));
    out() << row;
    report["memory"].push_back({{"rank", r},
                                {"own_part", m[0]},
                                {"export_hf_before", m[1]},
                                {"export_hf_peak", m[2]},
                                {"hf_engine_before", m[3]},
                                {"hf_engine_peak", m[4]},
                                {"export_hf_cli_before", m[5]},
                                {"export_hf_cli_peak", m[6]}});
  }
  if (!options.json.empty()) write_report(MPI_COMM_WORLD, options.json, report.dump(1) + "\n");
  clear(dir);
}

}  // namespace floe::bench
