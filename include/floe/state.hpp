// The training state one rank contributes to a checkpoint: its regions of
// model and optimizer tensors, global scalars, per-rank blobs and user metadata.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "floe/dtype.hpp"
#include "floe/region.hpp"

namespace floe {

// Model tensors are saved as `/model/<name>`; optimizer tensors as
// `/optimizer/<param>/<key>` (key: "exp_avg", "exp_avg_sq", "momentum_buffer").
enum class TensorGroup { kModel, kOptimizer };

std::string_view group_name(TensorGroup group);  // "model" / "optimizer"

// A named global array: dtype and global shape, the same on every rank.
struct TensorSpec {
  TensorGroup group = TensorGroup::kModel;
  std::string name;     // model tensor name, or the parameter's name
  std::string opt_key;  // optimizer key; empty for model tensors
  DType dtype = DType::kF32;
  Shape shape;

  // "model/<name>" or "optimizer/<name>/<opt_key>": unique within a state.
  std::string key() const;
  std::uint64_t nbytes() const { return byte_size(shape, dtype_size(dtype)); }
};

// One tensor's region on this rank and the memory that holds it, laid out as
// Region::boxes() describes. The memory is either borrowed from the caller
// (zero-copy: it must stay valid and unchanged during save() and load()) or
// owned by the state.
class TensorShard {
 public:
  TensorShard(TensorSpec spec, Region region, void* borrowed);
  TensorShard(TensorSpec spec, Region region);  // owns zeroed memory

  const TensorSpec& spec() const { return spec_; }
  const Region& region() const { return region_; }
  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  // The region's bytes, counted once when the shard is made: a load asks
  // for them several times per tensor.
  std::uint64_t nbytes() const { return nbytes_; }

  // Typed view; T's size must match the dtype's.
  template <typename T>
  T* data_as() { return reinterpret_cast<T*>(data_); }
  template <typename T>
  const T* data_as() const { return reinterpret_cast<const T*>(data_); }

 private:
  TensorSpec spec_;
  Region region_;
  std::uint64_t nbytes_ = 0;
  std::shared_ptr<std::byte[]> owned_;
  std::byte* data_ = nullptr;
};

// A value that is the same on every rank: step, epoch, learning-rate state.
using Scalar = std::variant<bool, std::int64_t, double, std::string>;

// Everything one rank saves and restores. Tensors keep the order they were
// added in (the order of an exported state dict). Not thread-safe.
class State {
 public:
  // Adds this rank's `region` of model tensor `name`. With `data` the memory
  // is borrowed; without, the state owns zeroed memory of the right size.
  // Throws Error(kInvalidArgument) on a duplicate name or a region outside
  // `shape`.
  TensorShard& add_model(const std::string& name, DType dtype, Shape shape,
                         Region region, void* data = nullptr);
  // The same for optimizer tensor `key` ("exp_avg", ...) of parameter `param`.
  TensorShard& add_optimizer(const std::string& param, const std::string& key,
                             DType dtype, Shape shape, Region region,
                             void* data = nullptr);
  TensorShard& add(TensorSpec spec, Region region, void* data = nullptr);

  // A deque: references returned by add*() stay valid as more are added.
  std::deque<TensorShard>& tensors() { return tensors_; }
  const std::deque<TensorShard>& tensors() const { return tensors_; }
  // The shard whose TensorSpec::key() is `key`, or nullptr.
  TensorShard* find(const std::string& key);
  const TensorShard* find(const std::string& key) const;

  // Global scalars: rank 0's values are saved; load sets them on every rank.
  void set_scalar(const std::string& name, Scalar value);
  const std::map<std::string, Scalar>& scalars() const { return scalars_; }
  std::optional<Scalar> scalar(const std::string& name) const;

  // Per-rank opaque bytes (RNG state, data-loader position). Saved for each
  // rank; after load, holds what the rank of the same number saved, if any.
  void set_blob(const std::string& name, std::vector<std::uint8_t> bytes);
  const std::map<std::string, std::vector<std::uint8_t>>& blobs() const {
    return blobs_;
  }
  const std::vector<std::uint8_t>* blob(const std::string& name) const;
  void clear_blobs() { blobs_.clear(); }

  // Free-form user metadata (rank 0's is saved).
  nlohmann::json& metadata() { return metadata_; }
  const nlohmann::json& metadata() const { return metadata_; }

 private:
  std::deque<TensorShard> tensors_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, Scalar> scalars_;
  std::map<std::string, std::vector<std::uint8_t>> blobs_;
  nlohmann::json metadata_ = nlohmann::json::object();
};

}  // namespace floe
