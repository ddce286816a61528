#include "cli/bench/async_bench.hpp"

#include <mpi.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/bench/timing.hpp"
#include "cli/cli_common.hpp"
#include "floe/floe.hpp"

namespace floe::bench {

void run_async_bench(State& state, const AsyncBenchOptions& options) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::uint64_t mine = 0;
  for (const auto& shard : state.tensors()) mine += shard.nbytes();
  std::uint64_t total = 0;
  MPI_Allreduce(&mine, &total, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);

  // The baseline's destination is allocated and touched once, as the
  // engines' staging pools are after their first save.
  std::unique_ptr<std::byte[]> copy(new std::byte[mine ? mine : 1]);
  std::memset(copy.get(), 1, mine);
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
  for (int r = 0; r < options.repeat; ++r) {
    trainer.progress_now.global_step = r + 2;
    memcpy_s.push_back(timed(MPI_COMM_WORLD, plain_memcpy));
    for (auto& [name, engine] : engines) {
      blocking_s[name].push_back(timed(MPI_COMM_WORLD, [&] { engine->save(); }));
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
                                 {"wait_median_s", w}, {"wait_all_s", wait_s[name]}});
  }
  if (options.json && rank == 0) std::ofstream(*options.json) << report.dump(1) << "\n";
}

}  // namespace floe::bench
