#include "floe/state.hpp"

#include <cstring>
#include <memory>
#include <utility>

#include "core/page_memory.hpp"
#include "floe/error.hpp"

namespace floe {

std::string_view group_name(TensorGroup group) {
  return group == TensorGroup::kModel ? "model" : "optimizer";
}

std::string TensorSpec::key() const {
  if (group == TensorGroup::kModel) return "model/" + name;
  return "optimizer/" + name + "/" + opt_key;
}

namespace {

std::uint64_t bytes_of(const TensorSpec& spec, const Region& region) {
  // Region::validate() ran when the shard was added, so this cannot overflow
  // past the tensor's own (checked) byte size.
  return region.elements() * dtype_size(spec.dtype);
}

// Shards of at least kAlignFrom bytes start on a page (allocate_pages).
constexpr std::size_t kAlignFrom = 64u << 10;

}  // namespace

TensorShard::TensorShard(TensorSpec spec, Region region, void* borrowed)
    : spec_(std::move(spec)),
      region_(std::move(region)),
      nbytes_(bytes_of(spec_, region_)),
      data_(static_cast<std::byte*>(borrowed)) {}

TensorShard::TensorShard(TensorSpec spec, Region region)
    : spec_(std::move(spec)), region_(std::move(region)), nbytes_(bytes_of(spec_, region_)) {
  // Large shards start on a 4 KiB boundary. `new std::byte[]` of a large
  // size gives memory 16 bytes past one (glibc's mmapped chunks), and the
  // kernel's copies out of the page cache into memory not aligned to a
  // cache line cost ~1.6x the CPU: loads of 1 GiB at 2 and 4 ranks took
  // 0.58-0.94 s that way against 0.42-0.65 s aligned (BENCHMARKS.md, "Shard
  // memory alignment"). A 4 KiB boundary also lets loads read around the
  // page cache (direct_io: O_DIRECT needs file offsets and memory aligned
  // alike). Small shards are not padded out to a page each.
  if (nbytes_ >= kAlignFrom) {
    PageBlock block = page_block(nbytes_);
    std::memset(block.get(), 0, nbytes_);
    owned_ = std::move(block);
  } else {
    owned_.reset(new std::byte[nbytes_ ? nbytes_ : 1]());
  }
  data_ = owned_.get();
}

TensorShard& State::add_model(const std::string& name, DType dtype,
                              Shape shape, Region region, void* data) {
  return add(TensorSpec{TensorGroup::kModel, name, "", dtype, std::move(shape)},
             std::move(region), data);
}

TensorShard& State::add_optimizer(const std::string& param,
                                  const std::string& key, DType dtype,
                                  Shape shape, Region region, void* data) {
  if (key.empty()) {
    throw Error(ErrorCode::kInvalidArgument,
                "optimizer tensor of \"" + param + "\" needs a key");
  }
  return add(
      TensorSpec{TensorGroup::kOptimizer, param, key, dtype, std::move(shape)},
      std::move(region), data);
}

TensorShard& State::add(TensorSpec spec, Region region, void* data) {
  const std::string key = spec.key();
  if (spec.name.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "a tensor needs a name");
  }
  if (spec.name.find('\0') != std::string::npos) {
    throw Error(ErrorCode::kInvalidArgument, "tensor name contains NUL");
  }
  if (index_.count(key)) {
    throw Error(ErrorCode::kInvalidArgument,
                "tensor \"" + key + "\" was added twice");
  }
  byte_size(spec.shape, dtype_size(spec.dtype));  // throws on overflow
  region.validate(spec.shape, key);
  if (data == nullptr) {
    tensors_.emplace_back(std::move(spec), std::move(region));
  } else {
    tensors_.emplace_back(std::move(spec), std::move(region), data);
  }
  index_[key] = tensors_.size() - 1;
  return tensors_.back();
}

TensorShard* State::find(const std::string& key) {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorShard* State::find(const std::string& key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void State::set_scalar(const std::string& name, Scalar value) {
  scalars_[name] = std::move(value);
}

std::optional<Scalar> State::scalar(const std::string& name) const {
  auto it = scalars_.find(name);
  if (it == scalars_.end()) return std::nullopt;
  return it->second;
}

void State::set_blob(const std::string& name, std::vector<std::uint8_t> bytes) {
  blobs_[name] = std::move(bytes);
}

const std::vector<std::uint8_t>* State::blob(const std::string& name) const {
  auto it = blobs_.find(name);
  return it == blobs_.end() ? nullptr : &it->second;
}

}  // namespace floe
