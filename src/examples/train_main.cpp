// floe-train-example: an MLP on synthetic data, data parallel over MPI with
// a ZeRO-1 partitioned AdamW, checkpointed by a Floe engine chosen by config.
// The only translation unit of the example that includes LibTorch.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <mpi.h>
#include <torch/torch.h>

#include "examples/stop_signal.hpp"
#include "examples/train_options.hpp"
#include "examples/zero1_comm.hpp"
#include "floe/config.hpp"
#include "floe/error.hpp"
#include "floe/hf.hpp"
#include "floe/registry.hpp"
#include "floe/torch.hpp"
#include "floe/trainer.hpp"

namespace fs = std::filesystem;
using floe::example::TrainOptions;

namespace {

constexpr std::int64_t kInputs = 32;
constexpr std::int64_t kOutputs = 8;

// input -> tanh(layers.0) -> ... -> tanh(layers.{L-1}) -> head, where
// layers.0 maps kInputs to hidden.
struct MlpImpl : torch::nn::Module {
  MlpImpl(std::int64_t hidden, std::int64_t layers) {
    blocks = register_module("layers", torch::nn::ModuleList());
    for (std::int64_t i = 0; i < layers; ++i) {
      blocks->push_back(torch::nn::Linear(i == 0 ? kInputs : hidden, hidden));
    }
    head = register_module("head", torch::nn::Linear(hidden, kOutputs));
  }
  torch::Tensor forward(torch::Tensor x) {
    for (const auto& block : *blocks) x = torch::tanh(block->as<torch::nn::Linear>()->forward(x));
    return head->forward(x);
  }
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(Mlp);

// The trainer as an engine sees it.
struct Trainer : floe::TrainerView {
  MPI_Comm comm() const override { return MPI_COMM_WORLD; }
  const floe::Progress& progress() const override { return progress_now; }
  floe::State& state() override { return state_now; }
  floe::Progress progress_now;
  floe::State state_now;
};

int g_rank = 0;
int g_size = 1;
bool g_thread_multiple = false;

void log0(const std::string& line) {
  if (g_rank == 0) std::cout << line << std::endl;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string mib(std::uint64_t bytes) {
  if (bytes < (1u << 20)) return fixed(bytes / 1024.0, 1) + " KiB";
  return fixed(bytes / 1048576.0, 1) + " MiB";
}

double max_over_ranks(double v) {
  double out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return out;
}

// The global batch of step `step` (1-based), the same whatever the rank
// count: inputs from a generator seeded by (seed, step), targets from a
// fixed random teacher. Returns this rank's rows.
std::pair<torch::Tensor, torch::Tensor> batch_for(const TrainOptions& o, std::int64_t step,
                                                  const torch::Tensor& teacher) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed * 1000003ULL +
                                                      static_cast<std::uint64_t>(step));
  torch::Tensor x = torch::randn({o.global_batch, kInputs}, gen);
  torch::Tensor y = torch::sin(x.matmul(teacher));
  const std::int64_t per_rank = o.global_batch / g_size;
  return {x.narrow(0, per_rank * g_rank, per_rank), y.narrow(0, per_rank * g_rank, per_rank)};
}

// Rank 0 makes the output directory and checks it takes a file; every rank
// gets the verdict, so all stop together before any step.
void preflight_output_dir(const fs::path& dir) {
  std::string error;
  if (g_rank == 0) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
      error = "cannot create output directory " + dir.string() + ": " + ec.message();
    } else {
      const fs::path probe = dir / (".floe-write-probe-" + std::to_string(getpid()));
      const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
      if (fd < 0) {
        error = "output directory " + dir.string() + " is not writable: " +
                std::error_code(errno, std::generic_category()).message();
      } else {
        ::close(fd);
        fs::remove(probe, ec);
      }
    }
  }
  int n = static_cast<int>(error.size());
  MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
  error.resize(static_cast<std::size_t>(n));
  MPI_Bcast(error.data(), n, MPI_CHAR, 0, MPI_COMM_WORLD);
  if (!error.empty()) throw floe::Error(floe::ErrorCode::kIo, error);
}

std::uint64_t dir_bytes(const fs::path& dir) {
  std::uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  }
  return total;
}

void fsync_file(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// What a DeepSpeed-style trainer does: each rank torch::save()s its share
// (rank 0 the model and its optimizer slice, the others their slice) to its
// own file. Returns the seconds without the fsync and with it (each the
// slowest rank's), and the bytes written by all ranks.
struct TorchSaveTiming {
  double save_s = 0;
  double total_s = 0;
  std::uint64_t bytes = 0;
};

TorchSaveTiming time_torch_save(const fs::path& dir, std::int64_t step, Mlp& model,
                                torch::optim::AdamW& optimizer, const torch::Tensor& slice) {
  const fs::path file = dir / ("torch_save_step" + std::to_string(step) + "_rank" +
                               std::to_string(g_rank) + ".pt");
  std::vector<torch::Tensor> share;
  if (g_rank == 0) {
    for (const auto& p : model->parameters()) share.push_back(p.detach());
  }
  auto& st = static_cast<torch::optim::AdamWParamState&>(
      *optimizer.state().at(c10::guts::to_string(slice.unsafeGetTensorImpl())));
  share.push_back(st.exp_avg());
  share.push_back(st.exp_avg_sq());
  MPI_Barrier(MPI_COMM_WORLD);
  const auto t0 = std::chrono::steady_clock::now();
  torch::save(share, file.string());
  const auto t1 = std::chrono::steady_clock::now();
  fsync_file(file);
  const auto t2 = std::chrono::steady_clock::now();
  TorchSaveTiming out;
  out.save_s = max_over_ranks(std::chrono::duration<double>(t1 - t0).count());
  out.total_s = max_over_ranks(std::chrono::duration<double>(t2 - t0).count());
  std::uint64_t mine = fs::file_size(file), all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  out.bytes = all;
  fs::remove(file);
  return out;
}

int train(const TrainOptions& o) {
  if (o.global_batch % g_size != 0) {
    throw floe::example::UsageError(
        "--global-batch " + std::to_string(o.global_batch) + " does not split evenly over " +
        std::to_string(g_size) + " ranks (" + std::to_string(o.global_batch % g_size) +
        " samples left over); choose a multiple of the rank count");
  }
  // Checked before any training step: the config (engine name, keys), the
  // output directory, then the checkpoint to resume from.
  const floe::CheckpointConfig config = floe::parse_config(o.checkpoint_json());
  if (config.async && !g_thread_multiple) {
    throw floe::example::UsageError(
        "--async needs an MPI library that provides MPI_THREAD_MULTIPLE; this one does not");
  }
  preflight_output_dir(o.output_dir);

  at::set_num_threads(1);  // deterministic reductions inside each rank
  torch::manual_seed(o.seed);
  Mlp model(o.hidden, o.layers);
  const torch::Tensor teacher = torch::randn(
      {kInputs, kOutputs}, at::make_generator<at::CPUGeneratorImpl>(o.seed + 7777));

  // Flatten the parameters into one buffer; the parameters become views of
  // it, so the allgather writes straight into the model.
  std::vector<torch::Tensor> params = model->parameters();
  std::vector<std::uint64_t> numels;
  for (const auto& p : params) numels.push_back(static_cast<std::uint64_t>(p.numel()));
  const floe::torch::FlatPartition partition(numels, g_rank, g_size);
  torch::Tensor flat = torch::empty({static_cast<std::int64_t>(partition.total())});
  torch::Tensor flat_grad = torch::zeros_like(flat);
  {
    torch::NoGradGuard no_grad;
    for (std::size_t i = 0; i < params.size(); ++i) {
      auto view = flat.narrow(0, static_cast<std::int64_t>(partition.offset(i)), params[i].numel())
                      .view(params[i].sizes());
      view.copy_(params[i]);
      params[i].set_data(view);
    }
  }
  floe::example::Zero1Comm zero1(partition, MPI_COMM_WORLD);
  // This rank's slice: the one tensor its AdamW steps, a view of `flat`.
  torch::Tensor slice = flat.narrow(0, static_cast<std::int64_t>(partition.begin()),
                                    static_cast<std::int64_t>(partition.size()));
  torch::Tensor slice_grad = torch::zeros_like(slice);
  slice.mutable_grad() = slice_grad;
  torch::optim::AdamW optimizer({slice}, torch::optim::AdamWOptions(o.lr).weight_decay(0.01));

  Trainer trainer;
  floe::torch::Adapter adapter(trainer.state_now, MPI_COMM_WORLD);
  adapter.add_module(*model);
  adapter.add_zero1_optimizer(optimizer, *model, partition);
  adapter.add_rng();
  trainer.state_now.set_scalar("lr", o.lr);
  trainer.state_now.metadata() = {{"trainer", "floe-train-example"},
                                  {"seed", o.seed},
                                  {"global_batch", o.global_batch},
                                  {"hidden", o.hidden},
                                  {"layers", o.layers}};

  std::unique_ptr<floe::CheckpointEngine> engine = floe::make_engine(trainer, config);
  adapter.attach(*engine);
  const std::uint64_t state_bytes = partition.total() * 4 * 3;
  log0("floe-train-example: " + std::to_string(g_size) + " ranks, " +
       std::to_string(partition.total()) + " parameters, state " + mib(state_bytes) +
       " (model + AdamW exp_avg, exp_avg_sq), engine " + config.type + ", output " +
       o.output_dir.string());

  std::int64_t start = 0;
  bool resumed = false;
  std::optional<floe::Manifest> loaded;
  if (!o.resume_from.empty()) {
    loaded = engine->load(o.resume_from);
  } else if (o.auto_resume) {
    loaded = engine->resume();
  }
  if (loaded) {
    start = loaded->step;
    resumed = true;
    log0("resumed from " + loaded->tag + " (step " + std::to_string(loaded->step) +
         ", saved by " + std::to_string(loaded->world_size) + " ranks)");
    const auto& meta = loaded->metadata;
    if (meta.is_object() && meta.value("seed", o.seed) != o.seed) {
      log0("warning: the checkpoint was trained with --seed " + meta["seed"].dump() +
           "; the data stream from here on follows --seed " + std::to_string(o.seed));
    }
  } else if (o.auto_resume) {
    log0("no checkpoint in " + o.output_dir.string() + ": starting fresh");
  }

  floe::Progress& progress = trainer.progress_now;
  auto set_progress = [&](std::int64_t step) {
    progress.global_step = step;
    progress.epoch = o.steps_per_epoch > 0 ? step / o.steps_per_epoch : 0;
    progress.epoch_finished = o.steps_per_epoch > 0 && step > 0 && step % o.steps_per_epoch == 0;
    progress.training_finished = step >= o.steps;
  };
  set_progress(start);
  std::int64_t last_saved = resumed ? start : -1;

  // With --bench-torch-save, torch::save runs after Floe's save at odd
  // steps and before it at even ones: the second writer of a step meets the
  // page cache and write-back the first left, so each takes either place.
  auto save = [&](const char* why) {
    const bool torch_before = o.bench_torch_save && progress.global_step % 2 == 0;
    std::optional<TorchSaveTiming> torch_timing;
    if (torch_before) {
      torch_timing = time_torch_save(o.output_dir, progress.global_step, model, optimizer, slice);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = std::chrono::steady_clock::now();
    engine->save();
    const double blocked = max_over_ranks(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    last_saved = progress.global_step;
    std::string line = "save step " + std::to_string(progress.global_step) + " (" + why +
                       "): blocked " + fixed(blocked, 3) + " s";
    if (g_rank == 0) {
      const fs::path dir = engine->checkpoint_dir();
      if (fs::exists(dir)) {
        const std::uint64_t bytes = dir_bytes(dir);
        line += ", " + mib(bytes) + " in " + dir.string() + " (" +
                fixed(bytes / 1048576.0 / blocked, 1) + " MiB/s)";
      } else {
        line += " (committing in the background)";
      }
    }
    log0(line);
    if (o.bench_torch_save) {
      const TorchSaveTiming t =
          torch_timing ? *torch_timing
                       : time_torch_save(o.output_dir, progress.global_step, model, optimizer, slice);
      log0("torch::save step " + std::to_string(progress.global_step) + " (" +
           (torch_before ? "before" : "after") + " Floe's): " + fixed(t.save_s, 3) +
           " s, with fsync " + fixed(t.total_s, 3) + " s, " + mib(t.bytes) + " in " +
           std::to_string(g_size) + " files; Floe/torch::save = " + fixed(blocked / t.save_s, 2) +
           ", with fsync " + fixed(blocked / t.total_s, 2));
    }
  };

  for (std::int64_t step = start + 1; step <= o.steps; ++step) {
    if (floe::example::stop_requested(MPI_COMM_WORLD)) {
      log0("stop signal at the boundary of step " + std::to_string(step - 1) +
           ": writing an emergency checkpoint");
      if (last_saved != progress.global_step) save("emergency");
      engine.reset();  // an async save finishes here
      return floe::example::kExitPreempted;
    }
    auto [x, y] = batch_for(o, step, teacher);
    for (auto& p : params) p.mutable_grad() = torch::Tensor();
    torch::Tensor loss = (model->forward(x) - y).pow(2).sum() /
                         static_cast<double>(o.global_batch * kOutputs);
    loss.backward();
    {
      torch::NoGradGuard no_grad;
      for (std::size_t i = 0; i < params.size(); ++i) {
        flat_grad.narrow(0, static_cast<std::int64_t>(partition.offset(i)), params[i].numel())
            .copy_(params[i].grad().reshape(-1));
      }
    }
    zero1.reduce_scatter_ordered(flat_grad.data_ptr<float>(), slice_grad.data_ptr<float>());
    double local_loss = loss.item<double>(), global_loss = 0;
    MPI_Reduce(&local_loss, &global_loss, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    if (o.crash_at_step == step && !resumed) {
      log0("--crash-at-step " + std::to_string(step) + ": aborting before the update");
      MPI_Abort(MPI_COMM_WORLD, floe::example::kExitCrashInjected);
    }
    optimizer.step();
    zero1.allgather(flat.data_ptr<float>());
    set_progress(step);
    if (step % o.log_every == 0 || step == o.steps) {
      log0("step " + std::to_string(step) + " loss " + fixed(global_loss, 6));
    }
    if (o.step_delay_ms > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(o.step_delay_ms));
    }
    if (engine->do_checkpoint()) {
      const bool periodic = o.save_every_n_steps > 0 && step % o.save_every_n_steps == 0;
      save(periodic || progress.epoch_finished ? "periodic" : "end of training");
    }
  }

  if (!o.export_hf.empty()) {
    adapter.before_save();
    const auto t0 = std::chrono::steady_clock::now();
    const floe::HfExportSummary summary =
        floe::export_hf(trainer.state_now, o.export_hf, MPI_COMM_WORLD);
    const double s = max_over_ranks(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    log0("exported " + std::to_string(summary.tensors) + " tensors (" + mib(summary.total_size) +
         ") as HF safetensors into " + o.export_hf.string() + " in " + fixed(s, 3) + " s");
  }
  engine.reset();
  log0("done: step " + std::to_string(progress.global_step));
  return floe::example::kExitDone;
}

}  // namespace

int main(int argc, char** argv) {
#ifdef OPEN_MPI
  // As the floe command does: Open MPI 4.1's ROMIO wrote checkpoints at about
  // twice OMPIO's throughput here (BENCHMARKS.md), unless the user chose.
  ::setenv("OMPI_MCA_io", "romio321", /*overwrite=*/0);
#endif
  // async saves write from a background thread, which needs this level.
  int provided = MPI_THREAD_SINGLE;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  g_thread_multiple = provided >= MPI_THREAD_MULTIPLE;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  // From here on, not only once the loop starts: a job preempted while it
  // loads its checkpoint (minutes, for a large state) still stops at the
  // first step boundary with exit 75, having nothing new to save.
  floe::example::install_stop_handlers();
  int status = floe::example::kExitDone;
  auto fail = [&](const std::string& what, int code) {
    // One write per line, so the ranks' lines do not interleave.
    const std::string line =
        "floe-train-example: error (rank " + std::to_string(g_rank) + "): " + what + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
    status = code;
  };
  try {
    // Each rank parses its own command line and reads --config itself: the
    // ranks agree on the outcome before train()'s first collective, so a
    // config file missing on one node fails every rank instead of leaving
    // the others waiting in train().
    TrainOptions options;
    std::string usage_error;
    try {
      options = floe::example::parse_train_options(argc, argv);
    } catch (const floe::example::UsageError& e) {
      usage_error = e.what();
    }
    int bad = usage_error.empty() ? 0 : 1;
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (bad != 0) {
      throw floe::example::UsageError(
          usage_error.empty() ? "another rank could not read its options" : usage_error);
    }
    if (options.help) {
      if (g_rank == 0) std::cout << options.help_text;
    } else {
      status = train(options);
    }
  } catch (const floe::example::UsageError& e) {
    fail(std::string(e.what()) + " (see --help)", floe::example::kExitUsage);
  } catch (const floe::Error& e) {
    fail(e.what(), e.code() == floe::ErrorCode::kInvalidConfig ? floe::example::kExitUsage
                                                                : floe::example::kExitError);
  } catch (const std::exception& e) {
    // Not a floe::Error (LibTorch's c10::Error, a std::filesystem error, out
    // of memory): nothing says the other ranks saw it, and MPI_Finalize
    // would wait for them while they wait in a collective for this rank.
    fail(e.what(), floe::example::kExitError);
    if (g_size > 1) MPI_Abort(MPI_COMM_WORLD, status);
  }
  MPI_Finalize();
  return status;
}
