// The tensors' phase of an hdf5 save, shared by a save made in full and
// one made from a template (hdf5_writer.cpp): what each rank writes of every
// tensor (planned locally), the datasets' creation, the collective
// H5Dwrites of the large tensors, the batched write's pieces of the small
// ones, and where every tensor's storage lies.
#pragma once

#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engines/hdf5/h5_file_create.hpp"
#include "engines/hdf5/h5_handle.hpp"
#include "engines/hdf5/h5_transfer.hpp"
#include "engines/hdf5/h5_types.hpp"
#include "engines/hdf5/hdf5_batch_writer.hpp"
#include "engines/hdf5/hdf5_options.hpp"
#include "floe/engine.hpp"
#include "floe/layout.hpp"
#include "io/early_writeback.hpp"

namespace floe::h5 {

// What writing one tensor takes: how many collective transfers every rank
// makes, and this rank's own ones (none when it writes nothing of it).
struct TensorPlan {
  std::uint64_t rounds = 0;
  std::vector<Transfer> mine;
  void* buffer = nullptr;  // H5Dwrite only reads it
  // A small tensor: no H5Dwrite; this rank's piece (its boxes, in buffer
  // order) goes into the one batched write instead.
  bool batched = false;
  // A piece that is one box (the usual kind): that box, in the layout
  // (which outlives the plan), with no copy; Region::boxes' list of one
  // box cost three allocations a tensor. Else its boxes, in `batch_boxes`.
  const Box* batch_box = nullptr;
  std::vector<Box> batch_boxes;
};

// Local: planned before any collective HDF5 call, so nothing that can fail
// on one rank alone happens between them.
std::vector<TensorPlan> plan_writes(const SaveContext& ctx,
                                    const Hdf5Options& options);

// One tensor's dataset, open from its creation until its last transfer, and
// this rank's side of each of its collective transfers.
struct TensorWrite {
  Dataset dataset;
  hid_t type = H5I_INVALID_HID;  // owned by the TypeCache
  std::vector<PreparedTransfer> transfers;
  // Per transfer: the first and one past the last element this rank writes
  // (row-major, of the whole tensor), for the early writeback after it.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;
  std::uint64_t element_size = 0;
  bool batched = false;
  haddr_t offset = HADDR_UNDEF;  // of a batched tensor's storage in the file
  // Of another tensor's storage, when HDF5 reports it (for the writeback).
  haddr_t storage = HADDR_UNDEF;
};

// One stored type per dtype, made once per save.
class TypeCache {
 public:
  hid_t get(DType dtype) {
    auto it = types_.find(dtype);
    if (it == types_.end())
      it = types_.emplace(dtype, stored_type(dtype)).first;
    return it->second.get();
  }

 private:
  std::map<DType, Type> types_;
};

// "dataset <path> in <file>", the place errors name.
std::string where_of(const std::string& path, const std::string& file_text);

// Local: this rank's side of every tensor's transfers and the stored types,
// prepared before any dataset is created.
std::vector<TensorWrite> prepare_tensors(const GlobalLayout& layout,
                                         const std::vector<TensorPlan>& plans,
                                         TypeCache& types,
                                         const std::string& file_text);

// Collective: creates every tensor's dataset (see the definition).
void create_tensors(hid_t file, const CreateLists& lists,
                    const GlobalLayout& layout,
                    std::vector<TensorWrite>& writes,
                    const std::string& file_text);

// Local: this rank's pieces of the batched tensors that have storage (the
// batched write's input, hdf5_batch_writer.hpp).
std::vector<BatchPiece> batch_pieces(const GlobalLayout& layout,
                                     const std::vector<TensorPlan>& plans,
                                     const std::vector<TensorWrite>& writes);

// Collective: every rank makes every tensor's collective writes in layout
// order (see the definition); returns this rank's first error.
std::exception_ptr write_tensors(const GlobalLayout& layout,
                                 std::vector<TensorWrite>& writes, hid_t dxpl,
                                 const std::string& file_text,
                                 EarlyWriteback& writeback,
                                 TransferStats& stats);

// Where each tensor's dataset stores its bytes, for the manifest (see the
// definition).
std::vector<std::optional<std::uint64_t>> storage_offsets(
    const GlobalLayout& layout, const std::vector<TensorWrite>& writes);

}  // namespace floe::h5
