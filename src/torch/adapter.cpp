// floe::torch::Adapter: the only translation unit of the adapter that
// includes LibTorch. Registers module and optimizer tensors in a floe::State,
// borrowing their memory where it is contiguous on the CPU.
#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "core/comm.hpp"
#include "floe/engine.hpp"
#include "floe/error.hpp"
#include "floe/torch.hpp"
#include "io/checksum.hpp"

namespace floe::torch {
namespace {

constexpr const char* kRngBlob = "torch/rng/cpu";

DType dtype_of(const at::Tensor& t, const std::string& name) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::kF32;
    case at::kDouble: return DType::kF64;
    case at::kHalf: return DType::kF16;
    case at::kBFloat16: return DType::kBF16;
    case at::kLong: return DType::kI64;
    case at::kInt: return DType::kI32;
    case at::kShort: return DType::kI16;
    case at::kChar: return DType::kI8;
    case at::kByte: return DType::kU8;
    case at::kBool: return DType::kBool;
    default:
      throw Error(ErrorCode::kInvalidArgument,
                  "tensor \"" + name + "\" has dtype " +
                      std::string(c10::toString(t.scalar_type())) +
                      ", which Floe cannot save");
  }
}

Shape shape_of(const at::Tensor& t) {
  Shape shape;
  for (const auto d : t.sizes()) shape.push_back(static_cast<std::uint64_t>(d));
  return shape;
}

bool zero_copy(const at::Tensor& t) {
  return t.device().is_cpu() && t.is_contiguous() && !t.is_sparse();
}

std::string impl_key(const at::Tensor& p) {
  return c10::guts::to_string(p.unsafeGetTensorImpl());
}

// The global shape and this rank's box for dim-0 shards of `locals` (every
// rank passes its tensors in the same order). Collective.
struct Dim0 {
  Shape global;
  Box box;
};

std::vector<Dim0> agree_dim0(const std::vector<std::pair<std::string, Shape>>& locals,
                             MPI_Comm comm) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  // Per tensor: its name's hash, its rank, dim 0, and a hash of the other
  // dims (XXH3-64).
  constexpr std::size_t kFields = 4;
  std::vector<std::uint64_t> mine;
  mine.push_back(locals.size());
  for (const auto& [name, shape] : locals) {
    mine.push_back(xxh3_64(name.data(), name.size()));
    mine.push_back(shape.size());
    mine.push_back(shape.empty() ? 0 : shape[0]);
    mine.push_back(shape.empty() ? 0
                                 : xxh3_64(shape.data() + 1,
                                           (shape.size() - 1) * sizeof(std::uint64_t)));
  }
  const int count = static_cast<int>(mine.size());
  std::vector<int> counts(size);
  MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, comm);
  if (std::any_of(counts.begin(), counts.end(), [&](int c) { return c != count; })) {
    throw Error(ErrorCode::kInvalidArgument,
                "dim-0 shards: the ranks register different numbers of tensors");
  }
  std::vector<std::uint64_t> all(static_cast<std::size_t>(count) * size);
  MPI_Allgather(mine.data(), count, MPI_UINT64_T, all.data(), count, MPI_UINT64_T, comm);

  std::vector<Dim0> out;
  for (std::size_t i = 0; i < locals.size(); ++i) {
    const auto& [name, shape] = locals[i];
    // Every rank compares every rank's entry with rank 0's, so that a
    // mismatch throws the same error on every rank (a rank holding a 0-d
    // tensor used to skip the check and go on alone).
    auto entry = [&](int r) { return &all[static_cast<std::size_t>(r) * count + 1 + kFields * i]; };
    const std::uint64_t* first = entry(0);
    std::uint64_t global0 = 0, offset0 = 0;
    for (int r = 0; r < size; ++r) {
      const std::uint64_t* e = entry(r);
      if (e[0] != first[0]) {
        throw Error(ErrorCode::kInvalidArgument,
                    "dim-0 shards: tensor " + std::to_string(i) + " has another name on rank " +
                        std::to_string(r) + " than on rank 0 (register the same "
                        "tensors in the same order on every rank)");
      }
      if (e[1] != first[1] || e[3] != first[3]) {
        throw Error(ErrorCode::kInvalidArgument,
                    "dim-0 shards of \"" + name + "\": rank " + std::to_string(r) +
                        " holds a shard whose rank or dims after the first differ "
                        "from rank 0's");
      }
      if (r < rank) offset0 += e[2];
      global0 += e[2];
    }
    Dim0 d;
    d.global = shape;
    d.box = full_box(shape);
    if (!shape.empty()) {  // a 0-d tensor is replicated
      d.global[0] = global0;
      d.box.offset[0] = offset0;
    }
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace

struct Adapter::Impl {
  // A tensor piece whose memory the state owns: copied in before a save,
  // out after a load. `view` has the piece's elements in the shard's order.
  struct Copy {
    at::Tensor view;
    TensorShard* shard;
  };

  State& state;
  MPI_Comm comm;
  int rank = 0;
  int world_size = 1;
  std::size_t tensors = 0;
  std::vector<Copy> copies;
  bool rng = false;

  Impl(State& s, MPI_Comm c) : state(s), comm(c) {
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &world_size);
  }

  void copy_in();
  void copy_out();

  // Registers `piece` (laid out as `region` describes) under `spec`.
  void add(TensorSpec spec, const Region& region, const at::Tensor& piece) {
    ++tensors;
    if (zero_copy(piece)) {
      state.add(std::move(spec), region, piece.data_ptr());
      return;
    }
    TensorShard& shard = state.add(std::move(spec), region);
    copies.push_back(Copy{piece, &shard});
  }

  void add_tensor(TensorGroup group, const std::string& name,
                  const std::string& key, const at::Tensor& t, Partition partition,
                  const Dim0* dim0) {
    TensorSpec spec;
    spec.group = group;
    spec.name = name;
    spec.opt_key = key;
    spec.dtype = dtype_of(t, name);
    if (partition == Partition::kDim0 && dim0 != nullptr && t.dim() > 0) {
      spec.shape = dim0->global;
      add(std::move(spec), Region::box(dim0->box), t);
    } else {
      spec.shape = shape_of(t);
      add(std::move(spec), Region::whole(shape_of(t)).replicated(), t);
    }
  }

  // The step counter, replicated: its memory is the optimizer's own int64.
  void add_step(const std::string& name, std::int64_t* step) {
    TensorSpec spec;
    spec.group = TensorGroup::kOptimizer;
    spec.name = name;
    spec.opt_key = "step";
    spec.dtype = DType::kI64;
    ++tensors;
    state.add(std::move(spec), Region::whole({}).replicated(), step);
  }

  std::map<const c10::TensorImpl*, std::pair<std::string, at::Tensor>> names_of(
      const ::torch::nn::Module& module) const {
    std::map<const c10::TensorImpl*, std::pair<std::string, at::Tensor>> out;
    for (const auto& item : module.named_parameters(true)) {
      out.emplace(item.value().unsafeGetTensorImpl(),
                  std::make_pair(item.key(), item.value()));
    }
    return out;
  }
};

// ---- per-optimizer state --------------------------------------------------

namespace {

// The tensors of one parameter's optimizer state, created if missing.
struct ParamState {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  std::int64_t* step = nullptr;  // nullptr for SGD
};

template <typename StateT, typename OptionsT>
ParamState adam_state(::torch::optim::Optimizer& opt, const at::Tensor& p,
                      const OptionsT& options) {
  auto& states = opt.state();
  const std::string key = impl_key(p);
  auto it = states.find(key);
  if (it == states.end()) {
    // As Adam(W)::step() does for a parameter it has not seen.
    auto s = std::make_unique<StateT>();
    s->step(0);
    s->exp_avg(::torch::zeros_like(p, at::MemoryFormat::Preserve));
    s->exp_avg_sq(::torch::zeros_like(p, at::MemoryFormat::Preserve));
    if (options.amsgrad()) {
      s->max_exp_avg_sq(::torch::zeros_like(p, at::MemoryFormat::Preserve));
    }
    it = states.insert({key, std::move(s)}).first;
  }
  auto& s = static_cast<StateT&>(*it->second);
  ParamState out;
  out.tensors = {{"exp_avg", s.exp_avg()}, {"exp_avg_sq", s.exp_avg_sq()}};
  if (options.amsgrad()) out.tensors.emplace_back("max_exp_avg_sq", s.max_exp_avg_sq());
  out.step = &s.step();
  return out;
}

ParamState sgd_state(::torch::optim::Optimizer& opt, const at::Tensor& p,
                     const ::torch::optim::SGDOptions& options,
                     const std::string& name) {
  ParamState out;
  if (options.momentum() == 0) return out;  // SGD keeps no state then
  auto& states = opt.state();
  const std::string key = impl_key(p);
  auto it = states.find(key);
  if (it == states.end()) {
    // SGD's first step sets the buffer to the gradient, which equals a step
    // from a zero buffer only without dampening.
    if (options.dampening() != 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  "SGD with dampening has no momentum_buffer for \"" + name +
                      "\" before its first step, and a zero buffer would change "
                      "that step; take one step before registering the optimizer");
    }
    auto s = std::make_unique<::torch::optim::SGDParamState>();
    s->momentum_buffer(::torch::zeros_like(p, at::MemoryFormat::Preserve));
    it = states.insert({key, std::move(s)}).first;
  }
  auto& s = static_cast<::torch::optim::SGDParamState&>(*it->second);
  out.tensors = {{"momentum_buffer", s.momentum_buffer()}};
  return out;
}

ParamState param_state(::torch::optim::Optimizer& opt,
                       ::torch::optim::OptimizerParamGroup& group,
                       const at::Tensor& p, const std::string& name) {
  if (dynamic_cast<::torch::optim::AdamW*>(&opt)) {
    return adam_state<::torch::optim::AdamWParamState>(
        opt, p, static_cast<const ::torch::optim::AdamWOptions&>(group.options()));
  }
  if (dynamic_cast<::torch::optim::Adam*>(&opt)) {
    return adam_state<::torch::optim::AdamParamState>(
        opt, p, static_cast<const ::torch::optim::AdamOptions&>(group.options()));
  }
  if (dynamic_cast<::torch::optim::SGD*>(&opt)) {
    return sgd_state(opt, p, static_cast<const ::torch::optim::SGDOptions&>(group.options()),
                     name);
  }
  throw Error(ErrorCode::kInvalidArgument,
              "floe::torch saves the state of torch::optim::Adam, AdamW and SGD; "
              "this optimizer is none of them");
}

}  // namespace

// ---- Adapter ---------------------------------------------------------------

Adapter::Adapter(State& state, MPI_Comm comm)
    : impl_(std::make_unique<Impl>(state, comm)) {}

Adapter::~Adapter() = default;

void Adapter::add_module(::torch::nn::Module& module, Partition partition) {
  if (partition == Partition::kZero1) {
    throw Error(ErrorCode::kInvalidArgument,
                "add_module: ZeRO-1 partitions the optimizer state only; add the "
                "module as kReplicated and the optimizer with add_zero1_optimizer");
  }
  std::vector<std::pair<std::string, at::Tensor>> items;
  for (const auto& item : module.named_parameters(true)) items.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers(true)) items.emplace_back(item.key(), item.value());
  std::vector<Dim0> dim0;
  if (partition == Partition::kDim0) {
    std::vector<std::pair<std::string, Shape>> shapes;
    for (const auto& [name, t] : items) shapes.emplace_back(name, shape_of(t));
    dim0 = agree_dim0(shapes, impl_->comm);
  }
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& [name, t] = items[i];
    impl_->add_tensor(TensorGroup::kModel, name, "", t.detach(), partition,
                      dim0.empty() ? nullptr : &dim0[i]);
  }
}

void Adapter::add_optimizer(::torch::optim::Optimizer& optimizer,
                            const ::torch::nn::Module& module, Partition partition) {
  if (partition == Partition::kZero1) {
    throw Error(ErrorCode::kInvalidArgument,
                "add_optimizer: use add_zero1_optimizer for a ZeRO-1 partition");
  }
  const auto names = impl_->names_of(module);
  struct Entry {
    std::string name;
    ParamState state;
  };
  std::vector<Entry> entries;
  auto make_entries = [&] {
    for (auto& group : optimizer.param_groups()) {
      for (const auto& p : group.params()) {
        const auto it = names.find(p.unsafeGetTensorImpl());
        if (it == names.end()) {
          throw Error(ErrorCode::kInvalidArgument,
                      "add_optimizer: the optimizer has a parameter of shape " +
                          c10::str(p.sizes()) + " that is not in the module");
        }
        entries.push_back({it->second.first, param_state(optimizer, group, p, it->second.first)});
      }
    }
  };
  if (partition == Partition::kDim0) {
    // Agreed on before agree_dim0's collectives: param_state allocates the
    // optimizer's state (zeros_like), and a rank out of memory (one GPU
    // fuller than the others) would leave the others waiting there.
    collectively(Comm(impl_->comm), make_entries);
  } else {
    make_entries();
  }
  std::vector<Dim0> dim0;
  std::vector<const Dim0*> dim0_of;
  if (partition == Partition::kDim0) {
    std::vector<std::pair<std::string, Shape>> shapes;
    for (const auto& e : entries) {
      for (const auto& [key, t] : e.state.tensors) shapes.emplace_back(e.name + "/" + key, shape_of(t));
    }
    dim0 = agree_dim0(shapes, impl_->comm);
  }
  std::size_t k = 0;
  for (const auto& e : entries) {
    for (const auto& [key, t] : e.state.tensors) {
      impl_->add_tensor(TensorGroup::kOptimizer, e.name, key, t, partition,
                        dim0.empty() ? nullptr : &dim0[k]);
      ++k;
    }
    if (e.state.step) impl_->add_step(e.name, e.state.step);
  }
}

void Adapter::add_zero1_optimizer(::torch::optim::Optimizer& optimizer,
                                  const ::torch::nn::Module& module,
                                  const FlatPartition& partition) {
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const auto& item : module.named_parameters(true)) params.emplace_back(item.key(), item.value());
  if (params.size() != partition.num_params()) {
    throw Error(ErrorCode::kInvalidArgument,
                "add_zero1_optimizer: the partition has " +
                    std::to_string(partition.num_params()) + " parameters, the module " +
                    std::to_string(params.size()));
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto n = static_cast<std::uint64_t>(params[i].second.numel());
    if (partition.offset(i + 1) - partition.offset(i) != n) {
      throw Error(ErrorCode::kInvalidArgument,
                  "add_zero1_optimizer: parameter \"" + params[i].first + "\" has " +
                      std::to_string(n) + " elements, the partition " +
                      std::to_string(partition.offset(i + 1) - partition.offset(i)));
    }
  }
  auto& groups = optimizer.param_groups();
  if (groups.size() != 1 || groups[0].params().size() != 1 ||
      groups[0].params()[0].dim() != 1 ||
      static_cast<std::uint64_t>(groups[0].params()[0].numel()) != partition.size()) {
    throw Error(ErrorCode::kInvalidArgument,
                "add_zero1_optimizer: the optimizer must step exactly one 1-D tensor "
                "of this rank's " + std::to_string(partition.size()) +
                    " elements (its slice of the flattened parameters)");
  }
  const at::Tensor slice = groups[0].params()[0];
  const ParamState st = param_state(optimizer, groups[0], slice, "<ZeRO-1 slice>");
  for (std::size_t i = 0; i < params.size(); ++i) {
    const std::string& name = params[i].first;
    const Shape shape = shape_of(params[i].second);
    const FlatRange range = partition.local_range(i);
    if (range.elements() > 0) {
      const auto at = static_cast<std::int64_t>(partition.offset(i) + range.begin -
                                                partition.begin());
      const auto n = static_cast<std::int64_t>(range.elements());
      for (const auto& [key, t] : st.tensors) {
        TensorSpec spec;
        spec.group = TensorGroup::kOptimizer;
        spec.name = name;
        spec.opt_key = key;
        spec.dtype = dtype_of(t, name);
        spec.shape = shape;
        impl_->add(std::move(spec), Region::flat(range), t.narrow(0, at, n));
      }
    }
    // Every rank steps its slice together, so every rank holds the step.
    if (st.step) impl_->add_step(name, st.step);
  }
}

void Adapter::add_rng() { impl_->rng = true; }

// This rank's half of before_save(): copies what is not zero-copy into the
// state and captures the RNG.
void Adapter::Impl::copy_in() {
  ::torch::NoGradGuard no_grad;
  for (const auto& c : copies) {
    auto dst = ::torch::from_blob(c.shard->data(), c.view.sizes(),
                                  c.view.options().device(at::kCPU));
    dst.copy_(c.view);
  }
  if (!rng) return;
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  at::Tensor s;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    s = gen.get_state();
  }
  const auto* bytes = s.data_ptr<std::uint8_t>();
  state.set_blob(kRngBlob, std::vector<std::uint8_t>(bytes, bytes + s.numel()));
}

// This rank's half of after_load().
void Adapter::Impl::copy_out() {
  ::torch::NoGradGuard no_grad;
  for (const auto& c : copies) {
    auto src = ::torch::from_blob(c.shard->data(), c.view.sizes(),
                                  c.view.options().device(at::kCPU));
    c.view.copy_(src);
  }
  const auto* blob = rng ? state.blob(kRngBlob) : nullptr;
  if (!blob) return;
  at::Tensor s = ::torch::empty({static_cast<std::int64_t>(blob->size())}, at::kByte);
  std::memcpy(s.data_ptr<std::uint8_t>(), blob->data(), blob->size());
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  try {
    gen.set_state(s);
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::kMismatch, std::string("blob \"") + kRngBlob +
                                          "\": torch's CPU generator refused the saved state (" +
                                          e.what_without_backtrace() + ")");
  }
}

// Collective, so that a copy or an RNG state failing on one rank (a saved
// state of another size) fails the call on every rank, rather than leave
// the others in save() or in the next training step.
void Adapter::before_save() {
  collectively(Comm(impl_->comm), [&] { impl_->copy_in(); });
}

void Adapter::after_load() {
  collectively(Comm(impl_->comm), [&] { impl_->copy_out(); });
}

// The engine agrees on its callbacks' outcome already: they run the halves
// without a second agreement.
void Adapter::attach(CheckpointEngine& engine) {
  engine.add_callback(CallbackEvent::kPreSave, [this](CheckpointEngine&) { impl_->copy_in(); });
  engine.add_callback(CallbackEvent::kPostLoad, [this](CheckpointEngine&) { impl_->copy_out(); });
}

std::size_t Adapter::tensors() const { return impl_->tensors; }
std::size_t Adapter::copied_tensors() const { return impl_->copies.size(); }

}  // namespace floe::torch
