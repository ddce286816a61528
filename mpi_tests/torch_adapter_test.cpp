// floe::torch: module and optimizer state saved through an engine and read
// back into fresh objects, bit for bit, in each partition; zero-copy where
// the tensor is contiguous on the CPU; the RNG; a model that differs.
#include <torch/torch.h>

#include "engine_fixture.hpp"
#include "floe/torch.hpp"
#include "test_util.hpp"

// TORCH_MODULE names torch::nn unqualified, which inside namespace floe
// would mean floe::torch: modules are declared outside it.
namespace {
// A module with parameters, a buffer and a non-contiguous buffer.
struct NetImpl : ::torch::nn::Module {
  NetImpl(std::int64_t in, std::int64_t hidden) {
    fc1 = register_module("fc1", ::torch::nn::Linear(in, hidden));
    fc2 = register_module("fc2", ::torch::nn::Linear(hidden, 3));
    scale = register_buffer("scale", ::torch::rand({hidden}));
    // A transposed view: not contiguous, so the adapter copies it.
    mixing = register_buffer("mixing", ::torch::rand({hidden, 2}).t());
  }
  ::torch::Tensor forward(::torch::Tensor x) {
    return fc2->forward(::torch::tanh(fc1->forward(x)) * scale);
  }
  ::torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  ::torch::Tensor scale, mixing;
};
TORCH_MODULE(Net);
}  // namespace

namespace floe::test {
namespace {

using floe::torch::Adapter;
using floe::torch::FlatPartition;
namespace ft = floe::torch;


// The same inputs on every rank and every call with the same `step`.
::torch::Tensor input_for(int step) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + step);
  return ::torch::randn({5, 4}, gen);
}

template <typename Optimizer>
void train_steps(Net& net, Optimizer& opt, int from, int count) {
  for (int s = from; s < from + count; ++s) {
    opt.zero_grad();
    net->forward(input_for(s)).pow(2).sum().backward();
    opt.step();
  }
}

bool same(const ::torch::Tensor& a, const ::torch::Tensor& b) {
  return a.sizes() == b.sizes() && a.dtype() == b.dtype() && ::torch::equal(a, b);
}

::testing::AssertionResult same_module(Net& a, Net& b) {
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (const auto& item : pa) {
    if (!same(item.value(), pb[item.key()])) {
      return ::testing::AssertionFailure() << "parameter " << item.key() << " differs";
    }
  }
  auto ba = a->named_buffers(), bb = b->named_buffers();
  for (const auto& item : ba) {
    if (!same(item.value(), bb[item.key()])) {
      return ::testing::AssertionFailure() << "buffer " << item.key() << " differs";
    }
  }
  return ::testing::AssertionSuccess();
}

Net make_net(std::uint64_t seed, std::int64_t hidden = 6) {
  ::torch::manual_seed(seed);
  return Net(4, hidden);
}

class TorchAdapterTest : public ::testing::TestWithParam<std::string> {};

// Replicated model, Adam/AdamW/SGD state: save after 3 steps, load into a
// fresh model and an optimizer that has not stepped yet, then both take the
// same step and stay identical.
template <typename Optimizer, typename Options>
void replicated_round_trip(const std::string& engine_type, const Options& options) {
  TempDir dir;
  Net a = make_net(1);
  Optimizer opt_a(a->parameters(), options);
  train_steps(a, opt_a, 0, 3);
  {
    SimpleTrainer trainer;
    trainer.progress_now.global_step = 3;
    Adapter adapter(trainer.state_now, MPI_COMM_WORLD);
    adapter.add_module(*a);
    adapter.add_optimizer(opt_a, *a);
    adapter.add_rng();
    auto engine = make_test_engine(trainer, engine_type, dir.path());
    adapter.attach(*engine);
    engine->save();
  }
  Net b = make_net(2);
  Optimizer opt_b(b->parameters(), options);
  ASSERT_TRUE(opt_b.state().empty());
  SimpleTrainer trainer;
  Adapter adapter(trainer.state_now, MPI_COMM_WORLD);
  adapter.add_module(*b);
  adapter.add_optimizer(opt_b, *b);
  auto engine = make_test_engine(trainer, engine_type, dir.path());
  adapter.attach(*engine);
  EXPECT_EQ(engine->load().step, 3);
  EXPECT_TRUE(same_module(a, b));
  train_steps(a, opt_a, 3, 1);
  train_steps(b, opt_b, 3, 1);
  EXPECT_TRUE(same_module(a, b)) << "after one more step";
}

TEST_P(TorchAdapterTest, AdamWReplicatedRoundTrip) {
  replicated_round_trip<::torch::optim::AdamW>(GetParam(),
                                               ::torch::optim::AdamWOptions(0.01));
}

TEST_P(TorchAdapterTest, AdamAmsgradReplicatedRoundTrip) {
  replicated_round_trip<::torch::optim::Adam>(
      GetParam(), ::torch::optim::AdamOptions(0.01).amsgrad(true));
}

TEST_P(TorchAdapterTest, SgdMomentumReplicatedRoundTrip) {
  replicated_round_trip<::torch::optim::SGD>(GetParam(),
                                             ::torch::optim::SGDOptions(0.05).momentum(0.9));
}

// ZeRO-1: each rank's AdamW steps its slice of the flattened parameters.
// Saved on every rank, loaded on fewer ranks (a new partition): each loading
// rank's slice state equals the same elements of the saving ranks' slices.
TEST_P(TorchAdapterTest, Zero1SliceStateReshardsToFewerRanks) {
  TempDir dir;
  const int saver_count = world_size();
  const int loader_count = std::max(1, world_size() - 1);
  Net net = make_net(3);
  std::vector<std::uint64_t> numels;
  for (const auto& p : net->parameters()) numels.push_back(p.numel());
  std::vector<float> all_exp_avg;  // the whole flat exp_avg, as saved
  {
    const FlatPartition part(numels, world_rank(), saver_count);
    ::torch::Tensor slice = ::torch::randn({static_cast<std::int64_t>(part.size())});
    ::torch::optim::AdamW opt({slice}, ::torch::optim::AdamWOptions(0.01));
    // Fill the state with values that say where each element sits.
    SimpleTrainer trainer;
    Adapter adapter(trainer.state_now, MPI_COMM_WORLD);
    adapter.add_module(*net);
    adapter.add_zero1_optimizer(opt, *net, part);
    auto& st = static_cast<::torch::optim::AdamWParamState&>(*opt.state().begin()->second);
    for (std::uint64_t i = 0; i < part.size(); ++i) {
      st.exp_avg()[i] = static_cast<float>(part.begin() + i) * 0.5f;
      st.exp_avg_sq()[i] = static_cast<float>(part.begin() + i) * 0.25f;
    }
    st.step(7);
    trainer.progress_now.global_step = 7;
    auto engine = make_test_engine(trainer, GetParam(), dir.path());
    adapter.attach(*engine);
    engine->save();
  }
  SubComm sub(loader_count);
  if (!sub.member()) return;
  int rank = 0;
  MPI_Comm_rank(sub.get(), &rank);
  const FlatPartition part(numels, rank, loader_count);
  ::torch::Tensor slice = ::torch::zeros({static_cast<std::int64_t>(part.size())});
  ::torch::optim::AdamW opt({slice}, ::torch::optim::AdamWOptions(0.01));
  SimpleTrainer trainer(sub.get());
  Adapter adapter(trainer.state_now, sub.get());
  Net fresh = make_net(4);
  adapter.add_module(*fresh);
  adapter.add_zero1_optimizer(opt, *fresh, part);
  auto engine = make_test_engine(trainer, GetParam(), dir.path());
  adapter.attach(*engine);
  engine->load();
  EXPECT_TRUE(same_module(net, fresh));
  auto& st = static_cast<::torch::optim::AdamWParamState&>(*opt.state().begin()->second);
  EXPECT_EQ(st.step(), 7);
  for (std::uint64_t i = 0; i < part.size(); ++i) {
    ASSERT_EQ(st.exp_avg()[i].item<float>(), static_cast<float>(part.begin() + i) * 0.5f)
        << "flat element " << part.begin() + i;
    ASSERT_EQ(st.exp_avg_sq()[i].item<float>(), static_cast<float>(part.begin() + i) * 0.25f);
  }
}

// Dim-0 shards of different sizes per rank: the global shape is their sum,
// and a fresh set of shards reads back its rows.
TEST_P(TorchAdapterTest, Dim0ShardsRoundTrip) {
  TempDir dir;
  const std::int64_t rows = 2 + world_rank();  // uneven on purpose
  ::torch::manual_seed(10 + world_rank());
  ::torch::nn::Linear a(4, rows);  // weight [rows, 4], bias [rows]
  ::torch::optim::AdamW opt_a(a->parameters(), ::torch::optim::AdamWOptions(0.01));
  for (int s = 0; s < 2; ++s) {
    opt_a.zero_grad();
    a->forward(input_for(s)).pow(2).sum().backward();
    opt_a.step();
  }
  std::uint64_t global_rows = 0;
  for (int r = 0; r < world_size(); ++r) global_rows += 2 + r;
  {
    SimpleTrainer trainer;
    Adapter adapter(trainer.state_now, MPI_COMM_WORLD);
    adapter.add_module(*a, ft::Partition::kDim0);
    adapter.add_optimizer(opt_a, *a, ft::Partition::kDim0);
    const TensorShard* w = trainer.state_now.find("model/weight");
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->spec().shape, (Shape{global_rows, 4}));
    auto engine = make_test_engine(trainer, GetParam(), dir.path());
    adapter.attach(*engine);
    engine->save();
  }
  ::torch::manual_seed(99);
  ::torch::nn::Linear b(4, rows);
  ::torch::optim::AdamW opt_b(b->parameters(), ::torch::optim::AdamWOptions(0.01));
  SimpleTrainer trainer;
  Adapter adapter(trainer.state_now, MPI_COMM_WORLD);
  adapter.add_module(*b, ft::Partition::kDim0);
  adapter.add_optimizer(opt_b, *b, ft::Partition::kDim0);
  auto engine = make_test_engine(trainer, GetParam(), dir.path());
  adapter.attach(*engine);
  engine->load();
  EXPECT_TRUE(same(a->weight, b->weight));
  EXPECT_TRUE(same(a->bias, b->bias));
  auto key = [](const ::torch::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); };
  auto& sa = static_cast<::torch::optim::AdamWParamState&>(*opt_a.state().at(key(a->weight)));
  auto& sb = static_cast<::torch::optim::AdamWParamState&>(*opt_b.state().at(key(b->weight)));
  EXPECT_TRUE(same(sa.exp_avg(), sb.exp_avg()));
  EXPECT_TRUE(same(sa.exp_avg_sq(), sb.exp_avg_sq()));
  EXPECT_EQ(sb.step(), 2);
}

// Dim-0 shards that disagree between ranks fail on every rank with the same
// error: a 0-d tensor on rank 0 against 1-d ones elsewhere (rank 0 used to
// skip the check and go on alone), and tensors registered under other
// names in the same place.
TEST(TorchAdapter, Dim0ShardsThatDisagreeFailOnEveryRankAlike) {
  if (world_size() < 2) GTEST_SKIP() << "needs ranks that disagree";
  auto try_module = [](::torch::nn::Module& m) {
    SimpleTrainer trainer;
    Adapter adapter(trainer.state_now, MPI_COMM_WORLD);
    return catch_error([&] { adapter.add_module(m, ft::Partition::kDim0); });
  };
  ::torch::nn::Module shapes;
  shapes.register_parameter("p", world_rank() == 0 ? ::torch::zeros({}) : ::torch::zeros({2}));
  const Caught shape_error = try_module(shapes);
  EXPECT_TRUE(is_error(shape_error, ErrorCode::kInvalidArgument,
                       {"dim-0 shards of \"p\": rank 1 holds a shard"}))
      << shape_error.message;
  EXPECT_TRUE(same_on_all_ranks(shape_error.message));

  ::torch::nn::Module names;
  names.register_parameter(world_rank() == 0 ? "a" : "b", ::torch::zeros({2}));
  const Caught name_error = try_module(names);
  EXPECT_TRUE(is_error(name_error, ErrorCode::kInvalidArgument,
                       {"tensor 0 has another name on rank 1 than on rank 0"}))
      << name_error.message;
  EXPECT_TRUE(same_on_all_ranks(name_error.message));
}

// A checkpoint of a different model: the error names the tensor, on every
// rank, and nothing is half-applied to the names that do not match.
TEST_P(TorchAdapterTest, DifferentModelIsAMismatchNamingTheTensor) {
  TempDir dir;
  {
    Net a = make_net(1, 6);
    SimpleTrainer trainer;
    Adapter adapter(trainer.state_now, MPI_COMM_WORLD);
    adapter.add_module(*a);
    auto engine = make_test_engine(trainer, GetParam(), dir.path());
    engine->save();
  }
  Net b = make_net(1, 7);
  SimpleTrainer trainer;
  Adapter adapter(trainer.state_now, MPI_COMM_WORLD);
  adapter.add_module(*b);
  auto engine = make_test_engine(trainer, GetParam(), dir.path());
  const Caught caught = catch_error([&] { engine->load(); });
  ASSERT_TRUE(caught.thrown);
  EXPECT_EQ(caught.code, ErrorCode::kMismatch) << caught.message;
  EXPECT_NE(caught.message.find("fc1.weight"), std::string::npos) << caught.message;
  EXPECT_TRUE(same_on_all_ranks(caught.message));
}

INSTANTIATE_TEST_SUITE_P(Engines, TorchAdapterTest, ::testing::ValuesIn(resumable_engines()),
                         [](const auto& info) { return info.param; });

// Contiguous CPU tensors are borrowed; the transposed buffer is copied in
// before a save and back after a load.
TEST(TorchAdapter, ZeroCopyWhereContiguousCopiesOtherwise) {
  Net net = make_net(5);
  SimpleTrainer trainer;
  Adapter adapter(trainer.state_now, MPI_COMM_WORLD);
  adapter.add_module(*net);
  EXPECT_EQ(adapter.tensors(), 6u);  // 4 parameters, 2 buffers
  EXPECT_EQ(adapter.copied_tensors(), 1u);
  EXPECT_EQ(trainer.state_now.find("model/fc1.weight")->data(),
            static_cast<std::byte*>(net->fc1->weight.data_ptr()));
  TensorShard* mixing = trainer.state_now.find("model/mixing");
  ASSERT_NE(mixing, nullptr);
  EXPECT_EQ(mixing->spec().shape, (Shape{2, 6}));
  adapter.before_save();
  EXPECT_TRUE(::torch::equal(
      ::torch::from_blob(mixing->data(), {2, 6}), net->mixing));
  mixing->data_as<float>()[1] = 42.0f;  // as a load would write
  adapter.after_load();
  EXPECT_EQ(net->mixing[0][1].item<float>(), 42.0f);
}

TEST(TorchAdapter, RngStateIsSavedPerRankAndRestored) {
  TempDir dir;
  SimpleTrainer trainer;
  Adapter adapter(trainer.state_now, MPI_COMM_WORLD);
  adapter.add_rng();
  ::torch::manual_seed(100 + world_rank());
  auto engine = make_test_engine(trainer, "hdf5", dir.path());
  adapter.attach(*engine);
  engine->save();
  const ::torch::Tensor first = ::torch::rand({8});
  ::torch::manual_seed(12345);
  engine->load();
  EXPECT_TRUE(::torch::equal(first, ::torch::rand({8})));
  // Each rank had its own stream.
  if (world_size() > 1) {
    EXPECT_FALSE(same_on_all_ranks(std::to_string(first[0].item<float>())));
  }
}

// before_save() and after_load() called by hand (not through attach()) are
// collective: a saved RNG state that torch's generator refuses on one rank
// fails after_load() on every rank, with one message.
TEST(TorchAdapter, AfterLoadFailingOnOneRankFailsOnEveryRank) {
  SimpleTrainer trainer;
  Adapter adapter(trainer.state_now, MPI_COMM_WORLD);
  adapter.add_rng();
  adapter.before_save();
  const int last = world_size() - 1;
  if (world_rank() == last) trainer.state_now.set_blob("torch/rng/cpu", {1, 2, 3});
  const Caught c = catch_error([&] { adapter.after_load(); });
  EXPECT_TRUE(is_error(c, ErrorCode::kMismatch,
                       {"blob \"torch/rng/cpu\"", "refused the saved state"}))
      << c.message;
  EXPECT_EQ(c.message.find("frame #"), std::string::npos) << c.message;  // no backtrace
  EXPECT_TRUE(same_on_all_ranks(c.message)) << c.message;
  if (world_size() > 1) {
    EXPECT_NE(c.message.find("rank " + std::to_string(last)), std::string::npos) << c.message;
  }
  adapter.before_save();  // the adapter still works: every rank's state again
  adapter.after_load();
}

TEST(TorchAdapter, FlatPartitionCoversEveryElementOnce) {
  const std::vector<std::uint64_t> numels = {5, 0, 7, 1, 11};
  for (int world = 1; world <= 7; ++world) {
    std::vector<int> owners(24, 0);
    for (int r = 0; r < world; ++r) {
      const FlatPartition p(numels, r, world);
      EXPECT_EQ(p.total(), 24u);
      EXPECT_EQ(p.begin(), r == 0 ? 0 : FlatPartition(numels, r - 1, world).end());
      std::uint64_t held = 0;
      for (std::size_t i = 0; i < numels.size(); ++i) {
        const FlatRange range = p.local_range(i);
        for (auto e = range.begin; e < range.end; ++e) ++owners[p.offset(i) + e];
        held += range.elements();
      }
      EXPECT_EQ(held, p.size());
    }
    for (int n : owners) EXPECT_EQ(n, 1) << "world " << world;
  }
  const Caught caught = catch_error([&] { FlatPartition(numels, 3, 3); });
  EXPECT_EQ(caught.code, ErrorCode::kInvalidArgument);
}

TEST(TorchAdapter, RejectsOptimizerParameterOutsideTheModule) {
  Net net = make_net(6);
  ::torch::Tensor stray = ::torch::zeros({3}, ::torch::requires_grad());
  ::torch::optim::AdamW opt({stray}, ::torch::optim::AdamWOptions(0.01));
  SimpleTrainer trainer;
  Adapter adapter(trainer.state_now, MPI_COMM_WORLD);
  const Caught caught = catch_error([&] { adapter.add_optimizer(opt, *net); });
  EXPECT_EQ(caught.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(caught.message.find("not in the module"), std::string::npos) << caught.message;
}

TEST(TorchAdapter, SgdWithDampeningBeforeItsFirstStepIsRefused) {
  Net net = make_net(7);
  ::torch::optim::SGD opt(net->parameters(),
                          ::torch::optim::SGDOptions(0.1).momentum(0.9).dampening(0.1));
  SimpleTrainer trainer;
  Adapter adapter(trainer.state_now, MPI_COMM_WORLD);
  const Caught caught = catch_error([&] { adapter.add_optimizer(opt, *net); });
  EXPECT_EQ(caught.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(caught.message.find("dampening"), std::string::npos) << caught.message;
}

}  // namespace
}  // namespace floe::test
