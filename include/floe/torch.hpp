// floe::torch: builds a floe::State from a LibTorch module and optimizer
// (named parameters, buffers, Adam/AdamW/SGD state, the RNG) and restores
// them after a load. The adapter's only header; it declares the LibTorch
// types it takes instead of including <torch/torch.h>. Inside namespace
// floe, `torch::` means floe::torch: write `::torch::` there (and declare
// TORCH_MODULE modules outside it, since that macro names torch::nn).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <mpi.h>

#include "floe/region.hpp"
#include "floe/state.hpp"

namespace at {
class Tensor;
}
namespace torch {
namespace nn {
class Module;
}
namespace optim {
class Optimizer;
}
}  // namespace torch

namespace floe {
class CheckpointEngine;
}

namespace floe::torch {

// How the ranks hold a tensor.
enum class Partition {
  // Every rank holds all of it (plain data parallel): saved once, read by all.
  kReplicated,
  // Optimizer state only: the parameters, flattened in named_parameters()
  // order and concatenated, are cut into one contiguous slice per rank
  // (FlatPartition); each rank's optimizer steps one 1-D tensor holding its
  // slice. Use add_zero1_optimizer().
  kZero1,
  // Each rank's tensor is its dim-0 shard; the shards, in rank order, make
  // the global tensor (FSDP-style). The global shape is agreed collectively.
  kDim0,
};

// ZeRO-1's flat partition: `numels[i]` elements of parameter i, in order,
// split into `world_size` contiguous slices of near-equal size (rank r holds
// [total*r/W, total*(r+1)/W)). Pure: every rank computes the same layout.
class FlatPartition {
 public:
  FlatPartition(std::vector<std::uint64_t> numels, int rank, int world_size);

  std::uint64_t total() const { return offsets_.back(); }
  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  // Rank r's slice of the flat order; without `r`, this rank's.
  std::uint64_t begin(int r) const;
  std::uint64_t end(int r) const;
  std::uint64_t begin() const { return begin(rank_); }
  std::uint64_t end() const { return end(rank_); }
  std::uint64_t size() const { return end() - begin(); }
  std::size_t num_params() const { return numels_.size(); }
  // Where parameter i starts in the flat order.
  std::uint64_t offset(std::size_t i) const { return offsets_[i]; }
  // The part of parameter i in this rank's slice, as a flat range of that
  // parameter's own elements; empty (begin == end) when there is none.
  FlatRange local_range(std::size_t i) const;

 private:
  std::vector<std::uint64_t> numels_;
  std::vector<std::uint64_t> offsets_;  // numels_.size() + 1 entries
  int rank_ = 0;
  int world_size_ = 1;
};

// Connects LibTorch objects to a floe::State: each add_*() registers
// tensors ("model/<name>", "optimizer/<name>/<key>") whose memory is
// borrowed from the tensor where it is contiguous on the CPU (zero-copy;
// load() writes straight into the parameters), and owned by the state
// otherwise. Call before_save() before CheckpointEngine::save() and
// after_load() after load()/resume(), or attach() once to have the engine
// call them. The module, optimizer and state must outlive the adapter, and
// the tensors must keep their storage: optimizers and in-place updates do;
// replacing a parameter's data (set_data, load_state_dict) does not.
// Not thread-safe.
class Adapter {
 public:
  Adapter(State& state, MPI_Comm comm);
  ~Adapter();
  Adapter(const Adapter&) = delete;
  Adapter& operator=(const Adapter&) = delete;

  // Registers the module's named parameters and buffers as "model/<name>"
  // (named_parameters() then named_buffers(), recursive). kReplicated or
  // kDim0 (collective: every rank calls it with the same module structure;
  // the global dim 0 is the sum of the ranks' dim 0, other dims must agree).
  // Throws Error(kInvalidArgument) for kZero1, an unsupported dtype or
  // mismatched shapes across ranks.
  void add_module(::torch::nn::Module& module,
                  Partition partition = Partition::kReplicated);

  // Registers the state of `optimizer` (torch::optim::Adam, AdamW or SGD),
  // whose parameters belong to `module`, as "optimizer/<name>/<key>":
  // exp_avg, exp_avg_sq, step (I64 scalar), max_exp_avg_sq (amsgrad), or
  // momentum_buffer (SGD with momentum). Missing state (before the first
  // step) is created as the optimizer's first step would (zeros, step 0),
  // so a load before any step restores into it. `partition` is kReplicated
  // or kDim0, as the module was added. Throws Error(kInvalidArgument) for an
  // optimizer parameter not in the module, another optimizer type, or SGD
  // with dampening whose state does not exist yet (its first step is not
  // a step from zeros).
  void add_optimizer(::torch::optim::Optimizer& optimizer,
                     const ::torch::nn::Module& module,
                     Partition partition = Partition::kReplicated);

  // ZeRO-1: `optimizer` has exactly one parameter, a 1-D tensor of
  // partition.size() elements holding this rank's slice of the flattened
  // parameters of `module` (named_parameters() order). Its state is saved
  // per parameter as flat ranges of "optimizer/<name>/<key>", so any rank
  // count reads it back. Throws Error(kInvalidArgument) when the partition
  // does not match the module or the optimizer's parameter.
  void add_zero1_optimizer(::torch::optim::Optimizer& optimizer,
                           const ::torch::nn::Module& module,
                           const FlatPartition& partition);

  // Saves torch's default CPU generator state as this rank's blob
  // "torch/rng/cpu" at each before_save(); after_load() restores it when
  // the checkpoint holds one from a rank of this number (a rank added since
  // keeps its own generator).
  void add_rng();

  // Copies what is not zero-copy into the state and captures the RNG.
  // Collective over the adapter's communicator, as save() is: an error on
  // one rank is thrown on every rank (Error, naming that rank).
  void before_save();
  // Copies the loaded state into the tensors that are not zero-copy and
  // restores the RNG (a saved RNG state torch refuses, e.g. of another
  // size: kMismatch naming the blob, the rank and torch's reason).
  // Collective, as before_save().
  void after_load();
  // Makes `engine` call before_save() before each save and after_load()
  // after each load. The adapter must outlive the engine's saves and loads.
  void attach(CheckpointEngine& engine);

  // Tensors registered, and how many of them are copies (not zero-copy).
  std::size_t tensors() const;
  std::size_t copied_tensors() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace floe::torch
