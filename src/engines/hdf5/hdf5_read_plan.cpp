// The hdf5 reader's plan of its direct reads (Hdf5Reader's constructor):
// where each small tensor's bytes lie, from the manifest or from checks of
// its dataset, and planned()'s lookup of that plan for a read.
#include <algorithm>
#include <string>
#include <string_view>

#include "core/comm.hpp"
#include "core/wire.hpp"
#include "engines/hdf5/h5_dataset_check.hpp"
#include "engines/hdf5/h5_direct_runs.hpp"
#include "engines/hdf5/hdf5_reader.hpp"

namespace floe::h5 {

Hdf5Reader::Direct Hdf5Reader::check_direct(hid_t file, const TensorRecord& tensor) {
  const TensorSpec& spec = tensor.spec;
  const std::string where = "dataset " + tensor.dataset + " in " + file_text_;
  Direct direct;
  try {
    Dataset dataset = open_dataset(file, tensor.dataset, H5P_DEFAULT, file_text_,
                                   "tensor \"" + spec.key() + "\"");
    check_dataset(dataset.get(), spec, where);
    const std::optional<std::uint64_t> storage = contiguous_storage(dataset.get(), spec);
    direct.collective = !storage;  // not the storage Floe writes
    direct.offset = storage.value_or(0);
    dataset.close("H5Dclose (" + where + ")");
  } catch (const Error& e) {
    direct.code = e.code();
    direct.problem = e.what();
  }
  return direct;
}

void Hdf5Reader::note_record(Direct& d, const TensorRecord& tensor) {
  d.dtype = tensor.spec.dtype;
  d.names_at = names_.size();
  append_key(names_, tensor.spec);
  d.key_size = names_.size() - d.names_at;
  names_ += tensor.dataset;
  d.dataset_size = tensor.dataset.size();
  d.dims_at = dims_.size();
  d.rank = tensor.spec.shape.size();
  dims_.insert(dims_.end(), tensor.spec.shape.begin(), tensor.spec.shape.end());
}

std::string_view Hdf5Reader::key_of(const Direct& d) const {
  return std::string_view(names_).substr(d.names_at, d.key_size);
}

bool Hdf5Reader::same_record(const Direct& d,
                             const TensorRecord& tensor) const {
  const std::string_view dataset =
      std::string_view(names_).substr(d.names_at + d.key_size, d.dataset_size);
  const Shape& shape = tensor.spec.shape;
  return dataset == tensor.dataset && d.dtype == tensor.spec.dtype &&
         std::equal(dims_.begin() + d.dims_at,
                    dims_.begin() + d.dims_at + d.rank, shape.begin(),
                    shape.end());
}

Hdf5Reader::Direct Hdf5Reader::recorded_direct(const TensorRecord& tensor,
                                               std::uint64_t bytes,
                                               std::uint64_t file_size) const {
  const TensorSpec& spec = tensor.spec;
  Direct direct;
  direct.planned = true;
  direct.offset = *tensor.storage_offset;
  // The manifest's own check compared it with the size files[] records,
  // which open_checkpoint compares with the file; a reader made from a
  // manifest by other means is held to the file itself.
  if (direct.offset > file_size || bytes > file_size - direct.offset) {
    direct.problem = "tensor \"" + spec.key() + "\": field storage_offset: its " +
                     std::to_string(bytes) + " bytes at offset " + std::to_string(direct.offset) +
                     " lie beyond the end of " + file_text_ + " (" + std::to_string(file_size) +
                     " bytes)";
  }
  return direct;
}

void Hdf5Reader::plan_direct_reads(const ReadContext& ctx, const std::string& name) {
  // The tensors read directly (below direct_below_) whose record gives no
  // storage_offset, or all of them when the caller asks for the file's
  // structure to be checked (verify): their datasets are checked here.
  // Every rank makes the same list from the same manifest.
  std::vector<std::size_t> unchecked;
  const std::uint64_t file_size = data_->size();
  direct_.resize(ctx.manifest.tensors.size());
  // Whether every tensor is read from its recorded offset, with pread alone.
  bool all_recorded = true;
  for (std::size_t t = 0; t < ctx.manifest.tensors.size(); ++t) {
    const TensorRecord& tensor = ctx.manifest.tensors[t];
    const std::uint64_t bytes = tensor.spec.nbytes();
    if (bytes >= direct_below_) {
      all_recorded = false;
      continue;
    }
    ++planned_count_;
    if (tensor.storage_offset && !ctx.check_structure) {
      direct_[t] = recorded_direct(tensor, bytes, file_size);
      note_record(direct_[t], tensor);
    } else {
      unchecked.push_back(t);
    }
  }
  if (unchecked.empty()) {
    independent_ = all_recorded;
    return;
  }
  const QuietErrors quiet;
  const Comm comm(comm_);
  // Every size-th one is this rank's to check.
  const std::string mine = collectively(comm, [&] {
    const hid_t file = own_file(name, "hdf5 data file");
    WireWriter w;
    for (std::size_t k = comm.rank(); k < unchecked.size(); k += comm.size()) {
      const Direct d = check_direct(file, ctx.manifest.tensors[unchecked[k]]);
      ++stats_.checked;
      w.u64(k);
      w.u8(d.collective ? 1 : 0);
      w.u64(d.offset);
      w.u8(static_cast<std::uint8_t>(d.code));
      w.str(d.problem);
    }
    return w.bytes();
  });
  for (const auto& bytes : comm.allgather_bytes(mine)) {
    WireReader r(bytes);
    while (!r.done()) {
      const std::uint64_t k = r.u64();
      if (k >= unchecked.size()) throw Error(ErrorCode::kInternal, "bad direct-read index");
      const TensorRecord& tensor = ctx.manifest.tensors[unchecked[k]];
      Direct d;
      d.planned = true;
      d.collective = r.u8() != 0;
      d.offset = r.u64();
      d.code = static_cast<ErrorCode>(r.u8());
      d.problem = r.str();
      note_record(d, tensor);
      if (d.problem.empty() && tensor.storage_offset &&
          (d.collective || d.offset != *tensor.storage_offset)) {
        d.code = ErrorCode::kCorrupt;
        d.problem = "tensor \"" + tensor.spec.key() + "\": field storage_offset: the manifest "
                    "records " + std::to_string(*tensor.storage_offset) + ", but dataset " +
                    tensor.dataset + " in " + file_text_ +
                    (d.collective ? " is not stored contiguously"
                                  : " stores its bytes at " + std::to_string(d.offset));
      }
      direct_[unchecked[k]] = std::move(d);
    }
  }
}

const Hdf5Reader::Direct* Hdf5Reader::planned(const TensorRecord& tensor) const {
  // The checks were made for the manifest's record: another record of the
  // same key (a caller's own) takes the checked path.
  if (planned_count_ == 0) return nullptr;
  // Loads ask in manifest order: the tensor after the last one found is
  // tried first (a guess: threads may race on it), then the index by key.
  std::size_t at = next_guess_.load(std::memory_order_relaxed);
  if (at >= direct_.size() || !direct_[at].planned ||
      !key_is(key_of(direct_[at]), tensor.spec)) {
    std::call_once(by_key_made_, [this] {
      by_key_.reserve(planned_count_);
      for (std::size_t t = 0; t < direct_.size(); ++t) {
        if (direct_[t].planned) by_key_[std::string(key_of(direct_[t]))] = t;
      }
    });
    const auto it = by_key_.find(tensor.spec.key());
    if (it == by_key_.end()) return nullptr;
    at = it->second;
  }
  next_guess_.store(at + 1, std::memory_order_relaxed);
  const Direct& d = direct_[at];
  return !d.collective && same_record(d, tensor) ? &d : nullptr;
}

}  // namespace floe::h5
