#include "engine_fixture.hpp"

namespace floe::test {

SubComm::SubComm(int size) {
  rank_ = world_rank();
  MPI_Comm_split(MPI_COMM_WORLD, rank_ < size ? 0 : MPI_UNDEFINED, rank_, &comm_);
}

SubComm::~SubComm() {
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

namespace {

Region part(const Shape& shape, Partition p, int rank, int size, bool model) {
  if (p == Partition::kFlat || (p == Partition::kMixed && !model) ||
      (p == Partition::kDim0 && !model)) {
    return zero_flat_shard(shape, rank, size);
  }
  return dim0_shard(shape, rank, size);
}

}  // namespace

void build_test_state(State& state, int rank, int size, Partition partition) {
  const Shape embed{37, 16}, w{8, 12, 3}, bias{12};
  state.add_model("model.embed.weight", DType::kF32, embed,
                  part(embed, partition, rank, size, true));
  state.add_model("model.layers.0.w", DType::kBF16, w,
                  part(w, partition, rank, size, true));
  state.add_model("model.bias", DType::kF64, bias, replicated_whole(bias));
  state.add_model("model.scale", DType::kF32, {}, replicated_whole({}));
  state.add_model("model.empty", DType::kF16, {0, 4}, replicated_whole({0, 4}));
  state.add_model("model.mask", DType::kBool, {5, 7},
                  part({5, 7}, partition, rank, size, true));
  state.add_model("model.ids", DType::kI64, {9}, part({9}, partition, rank, size, false));
  for (const char* key : {"exp_avg", "exp_avg_sq"}) {
    state.add_optimizer("model.embed.weight", key, DType::kF32, embed,
                        part(embed, partition, rank, size, false));
    state.add_optimizer("model.layers.0.w", key, DType::kF32, w,
                        part(w, partition, rank, size, false));
  }
  state.add_optimizer("model.bias", "step", DType::kI32, {1}, replicated_whole({1}));
  for (auto& shard : state.tensors()) fill_expected(shard);
  state.set_scalar("lr", 0.00025);
  state.set_scalar("optimizer_steps", std::int64_t{1234});
  state.set_scalar("scheduler", std::string("cosine"));
  state.set_scalar("warmup_done", true);
  state.metadata() = {{"run", "test"}, {"layers", {1, 2, 3}}};
  std::vector<std::uint8_t> rng(100 + rank);
  for (std::size_t i = 0; i < rng.size(); ++i) rng[i] = static_cast<std::uint8_t>(i * 7 + rank);
  state.set_blob("rng", std::move(rng));
}

::testing::AssertionResult state_holds_expected(const State& state) {
  for (const auto& shard : state.tensors()) {
    auto result = holds_expected(shard);
    if (!result) return result;
  }
  return ::testing::AssertionSuccess();
}

std::unique_ptr<CheckpointEngine> make_test_engine(TrainerView& trainer,
                                                   const std::string& type,
                                                   const std::filesystem::path& dir,
                                                   nlohmann::json extra) {
  nlohmann::json json = {{"type", type}, {"output_dir", dir.string()}};
  if (extra.is_object()) json.update(extra);
  return make_engine(trainer, parse_config(json));
}

std::vector<std::string> resumable_engines() {
  std::vector<std::string> out;
  for (const auto& info : list_engines()) {
    if (info.resumable && info.factory && info.reader) out.push_back(info.name);
  }
  return out;
}

}  // namespace floe::test
