#include "cli/bench/async_bench.hpp"

#include <mpi.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/bench/timing.hpp"
#include "cli/cli_common.hpp"
#include "core/page_memory.hpp"
#include "floe/floe.hpp"

namespace floe::bench {
namespace {

// What the calling thread used, from getrusage(RUSAGE_THREAD): counters, not
// timers, so they say why a save() blocked longer than its copy whatever the
// machine's load.
struct ThreadUsage {
  double cpu_s = 0;           // user + system
  double faults = 0;          // minor + major page faults
  double involuntary = 0;     // preempted (another thread wanted the core)
  double voluntary = 0;       // slept (a lock, a blocking call)

  static ThreadUsage now() {
    rusage u{};
    getrusage(RUSAGE_THREAD, &u);
    ThreadUsage t;
    t.cpu_s = u.ru_utime.tv_sec + u.ru_stime.tv_sec +
              (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
    t.faults = static_cast<double>(u.ru_minflt + u.ru_majflt);
    t.involuntary = static_cast<double>(u.ru_nivcsw);
    t.voluntary = static_cast<double>(u.ru_nvcsw);
    return t;
  }
  ThreadUsage operator-(const ThreadUsage& o) const {
    return {cpu_s - o.cpu_s, faults - o.faults, involuntary - o.involuntary,
            voluntary - o.voluntary};
  }
};

// Each field's largest value over the ranks of `comm` (collective).
ThreadUsage max_over_ranks(const ThreadUsage& mine, MPI_Comm comm) {
  double in[4] = {mine.cpu_s, mine.faults, mine.involuntary, mine.voluntary};
  double out[4];
  MPI_Allreduce(in, out, 4, MPI_DOUBLE, MPI_MAX, comm);
  return {out[0], out[1], out[2], out[3]};
}

nlohmann::json usage_json(const std::vector<ThreadUsage>& list) {
  nlohmann::json out = nlohmann::json::array();
  for (const ThreadUsage& u : list) {
    out.push_back({{"cpu_s", u.cpu_s}, {"faults", u.faults},
                   {"involuntary_switches", u.involuntary},
                   {"voluntary_switches", u.voluntary}});
  }
  return out;
}

}  // namespace

void run_async_bench(State& state, const AsyncBenchOptions& options) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::uint64_t mine = 0;
  for (const auto& shard : state.tensors()) mine += shard.nbytes();
  std::uint64_t total = 0;
  MPI_Allreduce(&mine, &total, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);

  // The baseline's destination is allocated on a page and touched once, as
  // the engines' staging pools are after their first save.
  // Agreed on: a rank without room for the copy fails every rank.
  PageBlock copy;
  collectively(Comm(MPI_COMM_WORLD), [&] {
    copy = page_block(mine);
    std::memset(copy.get(), 1, mine);
  });
  auto plain_memcpy = [&] {
    std::uint64_t offset = 0;
    for (const auto& shard : state.tensors()) {
      std::memcpy(copy.get() + offset, shard.data(), shard.nbytes());
      offset += shard.nbytes();
    }
  };

  SimpleTrainer trainer;
  // Borrow the state's tensors: the engines save what the caller built.
  for (auto& shard : state.tensors()) {
    trainer.state().add(shard.spec(), shard.region(), shard.data());
  }
  std::map<std::string, std::unique_ptr<CheckpointEngine>> engines;
  for (const auto& e : options.engines) {
    const nlohmann::json cfg = {{"type", e},
                                {"output_dir", (options.dir / (e + "-async")).string()},
                                {"keep_last_n", 1},
                                {"async", true}};
    engines[e] = make_engine(trainer, parse_config(cfg));
  }

  // The first save allocates each pool: a warm-up, not measured.
  trainer.progress_now.global_step = 1;
  for (auto& [name, engine] : engines) {
    engine->save();
    engine->wait();
  }
  std::vector<double> memcpy_s;
  std::map<std::string, std::vector<double>> blocking_s, wait_s;
  // The trainer thread's usage during each save() (each field the largest
  // over the ranks): CPU seconds against the blocking time show whether it
  // waited (for another rank, or off its core), faults whether the pool's
  // pages had to be mapped again.
  std::map<std::string, std::vector<ThreadUsage>> usage;
  for (int r = 0; r < options.repeat; ++r) {
    trainer.progress_now.global_step = r + 2;
    ThreadUsage copied;
    memcpy_s.push_back(timed(MPI_COMM_WORLD, [&] {
      const ThreadUsage before = ThreadUsage::now();
      plain_memcpy();
      copied = ThreadUsage::now() - before;
    }));
    usage["memcpy"].push_back(max_over_ranks(copied, MPI_COMM_WORLD));
    for (auto& [name, engine] : engines) {
      ThreadUsage used;
      blocking_s[name].push_back(timed(MPI_COMM_WORLD, [&] {
        const ThreadUsage before = ThreadUsage::now();
        engine->save();
        used = ThreadUsage::now() - before;
      }));
      usage[name].push_back(max_over_ranks(used, MPI_COMM_WORLD));
      wait_s[name].push_back(timed(MPI_COMM_WORLD, [&] { engine->wait(); }));
    }
    cli::out() << "repetition " << r + 1 << "/" << options.repeat << " done\n"
               << std::flush;
  }

  const double base = median(memcpy_s);
  nlohmann::json report = {{"ranks", size}, {"bytes", total},
                           {"tensors", state.tensors().size()},
                           {"repeat", options.repeat},
                           {"memcpy_median_s", base}, {"memcpy_all_s", memcpy_s},
                           {"results", nlohmann::json::array()}};
  char row[200];
  cli::out() << "\n" << size << " ranks, " << total / 1e9 << " GB in "
             << state.tensors().size() << " tensors, " << options.repeat
             << " repetitions: async save() blocking vs memcpy of the state\n";
  std::snprintf(row, sizeof row, "%-14s %12s %10s %14s %16s\n", "what", "median s", "GB/s",
                "vs memcpy", "background s");
  cli::out() << row;
  std::snprintf(row, sizeof row, "%-14s %12.4f %10.2f %14.3f %16s\n", "memcpy", base,
                total / base / 1e9, 1.0, "-");
  cli::out() << row;
  for (const auto& [name, times] : blocking_s) {
    const double m = median(times), w = median(wait_s[name]);
    std::snprintf(row, sizeof row, "%-14s %12.4f %10.2f %14.3f %16.3f\n",
                  (name + " save()").c_str(), m, total / m / 1e9, m / base, w);
    cli::out() << row;
    report["results"].push_back({{"engine", name}, {"op", "async_save_blocking"},
                                 {"median_s", m}, {"all_s", times},
                                 {"vs_memcpy", m / base},
                                 {"wait_median_s", w}, {"wait_all_s", wait_s[name]},
                                 {"thread_usage", usage_json(usage[name])}});
  }
  report["memcpy_thread_usage"] = usage_json(usage["memcpy"]);
  cli::out() << "\nthe trainer thread's usage (largest over the ranks, median of the "
                "repetitions):\n";
  std::snprintf(row, sizeof row, "%-14s %10s %12s %14s %12s\n", "what", "CPU s",
                "page faults", "preempted", "slept");
  cli::out() << row;
  std::vector<std::string> rows = {"memcpy"};
  for (const auto& [name, times] : blocking_s) rows.push_back(name);
  for (const std::string& name : rows) {
    const std::vector<ThreadUsage>& list = usage[name];
    auto field = [&](double ThreadUsage::*f) {
      std::vector<double> v;
      for (const ThreadUsage& u : list) v.push_back(u.*f);
      return median(v);
    };
    std::snprintf(row, sizeof row, "%-14s %10.4f %12.0f %14.0f %12.0f\n",
                  (name == "memcpy" ? name : name + " save()").c_str(),
                  field(&ThreadUsage::cpu_s), field(&ThreadUsage::faults),
                  field(&ThreadUsage::involuntary), field(&ThreadUsage::voluntary));
    cli::out() << row;
  }
  if (options.json) write_report(MPI_COMM_WORLD, *options.json, report.dump(1) + "\n");
}

}  // namespace floe::bench
