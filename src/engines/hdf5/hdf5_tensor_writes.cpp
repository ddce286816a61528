#include "engines/hdf5/hdf5_tensor_writes.hpp"

#include <algorithm>

#include "engines/hdf5/hdf5_format.hpp"
#include "engines/hdf5/hdf5_rank_report.hpp"
#include "floe/error.hpp"

namespace floe::h5 {
namespace {

// The most elements of `dtype` one transfer moves (0: no limit).
std::uint64_t max_elements(const Hdf5Options& options, DType dtype) {
  if (options.max_transfer_bytes == 0) return 0;
  return std::max<std::uint64_t>(
      1, options.max_transfer_bytes / dtype_size(dtype));
}

// How many transfers the writer of `piece` makes: its boxes form one run in
// row-major order, so plan_transfers cuts only at the size limit.
std::uint64_t transfers_of(const Piece& piece, std::uint64_t max_elements) {
  const std::uint64_t n = piece.region.elements();
  if (n == 0) return 0;
  return max_elements == 0 ? 1 : (n + max_elements - 1) / max_elements;
}

// The first and one past the last element of `boxes` in the row-major order
// of a tensor of `shape` ({0, 0} when they hold none).
std::pair<std::uint64_t, std::uint64_t> element_span(
    const Shape& shape, const std::vector<Box>& boxes) {
  std::uint64_t first = ~std::uint64_t{0}, last = 0;
  for (const Box& box : boxes) {
    if (box.elements() == 0) continue;
    std::uint64_t begin = 0, end = 0;
    for (std::size_t d = 0; d < shape.size(); ++d) {
      begin = begin * shape[d] + box.offset[d];
      end = end * shape[d] + box.offset[d] + box.extent[d] - 1;
    }
    first = std::min(first, begin);
    last = std::max(last, end + 1);
  }
  if (first >= last) return {0, 0};
  return {first, last};
}

}  // namespace

// Local: planned before any collective HDF5 call, so nothing that can fail
// on one rank alone happens between them.
std::vector<TensorPlan> plan_writes(const SaveContext& ctx,
                                    const Hdf5Options& options) {
  std::vector<TensorPlan> plans;
  plans.reserve(ctx.layout.tensors.size());
  for (const TensorLayout& tensor : ctx.layout.tensors) {
    const TensorSpec& spec = tensor.spec;
    const std::size_t t = plans.size();  // this tensor's index in the layout
    const std::uint64_t limit = max_elements(options, spec.dtype);
    TensorPlan plan;
    if (is_batched(spec, options)) {
      plan.batched = true;
      for (const Piece& piece : tensor.pieces) {
        if (!piece.writer || piece.rank != ctx.rank) continue;
        plan.buffer =
            const_cast<std::byte*>(shard_of(ctx.state, spec, t).data());
        if (piece.region.kind() == Region::Kind::kBox) {
          plan.batch_box = &piece.region.as_box();
          plan.batch_boxes.clear();
        } else {
          plan.batch_box = nullptr;
          plan.batch_boxes = piece.region.boxes(spec.shape);
        }
      }
      plans.push_back(std::move(plan));
      continue;
    }
    for (const Piece* piece : tensor.writers()) {
      plan.rounds = std::max(plan.rounds, transfers_of(*piece, limit));
      if (piece->rank != ctx.rank) continue;
      plan.buffer = const_cast<std::byte*>(shard_of(ctx.state, spec, t).data());
      plan.mine =
          plan_transfers(spec.shape, piece->region.boxes(spec.shape), limit);
      if (plan.mine.size() != transfers_of(*piece, limit)) {
        throw Error(ErrorCode::kInternal,
                    "tensor \"" + spec.key() +
                        "\": its writer's transfers were miscounted");
      }
    }
    plans.push_back(std::move(plan));
  }
  return plans;
}

std::string where_of(const std::string& path, const std::string& file_text) {
  return "dataset " + path + " in " + file_text;
}

// Local: this rank's side of every tensor's transfers and the stored types,
// prepared before any dataset is created.
std::vector<TensorWrite> prepare_tensors(const GlobalLayout& layout,
                                         const std::vector<TensorPlan>& plans,
                                         TypeCache& types,
                                         const std::string& file_text) {
  std::vector<TensorWrite> out(plans.size());
  for (std::size_t t = 0; t < plans.size(); ++t) {
    const TensorSpec& spec = layout.tensors[t].spec;
    const TensorPlan& plan = plans[t];
    TensorWrite& w = out[t];
    w.type = types.get(spec.dtype);
    w.batched = plan.batched;
    w.element_size = dtype_size(spec.dtype);
    w.transfers.reserve(plan.rounds);
    for (std::uint64_t k = 0; k < plan.rounds; ++k) {
      w.transfers.push_back(prepare_transfer(
          spec.shape, k < plan.mine.size() ? &plan.mine[k] : nullptr,
          plan.buffer, dtype_size(spec.dtype),
          where_of(dataset_path(spec), file_text), ErrorCode::kIo));
      w.spans.push_back(
          k < plan.mine.size()
              ? element_span(spec.shape, plan.mine[k].boxes)
              : std::make_pair(std::uint64_t{0}, std::uint64_t{0}));
    }
  }
  return out;
}

// Collective (metadata operations are): creates every tensor's dataset and
// its floe_dtype attribute, in layout order, with HDF5 calls only, and notes
// where a batched tensor's storage lies (the same address on every rank:
// the ranks make the same metadata calls) before closing its dataset.
// Nothing here is agreed on tensor by tensor: the caller agrees once on the
// phase.
void create_tensors(hid_t file, const CreateLists& lists,
                    const GlobalLayout& layout,
                    std::vector<TensorWrite>& writes,
                    const std::string& file_text) {
  for (std::size_t t = 0; t < writes.size(); ++t) {
    const TensorSpec& spec = layout.tensors[t].spec;
    const std::string path = dataset_path(spec);
    const std::string where = where_of(path, file_text);
    TensorWrite& w = writes[t];
    w.dataset = create_dataset(file, lists, path, w.type, spec.shape, where);
    write_string_attribute(w.dataset.get(), kDtypeAttribute,
                           std::string(dtype_name(spec.dtype)), where);
    if (!w.batched) {
      // A local query; without an address the writeback is skipped.
      if (spec.nbytes() > 0) w.storage = H5Dget_offset(w.dataset.get());
      if (w.storage == HADDR_UNDEF) H5Eclear2(H5E_DEFAULT);
      continue;
    }
    if (spec.nbytes() > 0) w.offset = storage_offset(w.dataset.get(), where);
    w.dataset.close("H5Dclose (" + where + ")");
  }
}

// Local: this rank's pieces of the batched tensors that have storage (the
// batched write's input, hdf5_batch_writer.hpp).
std::vector<BatchPiece> batch_pieces(const GlobalLayout& layout,
                                     const std::vector<TensorPlan>& plans,
                                     const std::vector<TensorWrite>& writes) {
  std::vector<BatchPiece> pieces;
  for (std::size_t t = 0; t < plans.size(); ++t) {
    const TensorPlan& plan = plans[t];
    const Box* boxes =
        plan.batch_box ? plan.batch_box : plan.batch_boxes.data();
    const std::size_t count = plan.batch_box ? 1 : plan.batch_boxes.size();
    if (!plan.batched || count == 0 || writes[t].offset == HADDR_UNDEF) {
      continue;
    }
    const TensorSpec& spec = layout.tensors[t].spec;
    pieces.push_back(BatchPiece{writes[t].offset, &spec.shape,
                                dtype_size(spec.dtype), boxes, count,
                                plan.buffer});
  }
  return pieces;
}

// Collective: every rank makes every tensor's collective writes in layout
// order, then closes its dataset. After each of its writes a rank starts
// the kernel's writeback of the bytes it wrote (EarlyWriteback: the device
// writes one tensor while the next is copied into the page cache; the
// H5Fflush at the end still makes them durable). A rank whose write fails
// keeps making the remaining ones (the others may be inside them) and
// returns its first error; the caller agrees on it once for the whole
// phase. (An HDF5 failure inside a collective call is the same on every
// rank in practice.)
std::exception_ptr write_tensors(const GlobalLayout& layout,
                                 std::vector<TensorWrite>& writes, hid_t dxpl,
                                 const std::string& file_text,
                                 EarlyWriteback& writeback,
                                 TransferStats& stats) {
  std::exception_ptr error;
  for (std::size_t t = 0; t < writes.size(); ++t) {
    TensorWrite& w = writes[t];
    for (std::size_t k = 0; k < w.transfers.size(); ++k) {
      try {
        run_transfer(Direction::kWrite, w.dataset.get(), w.type, dxpl,
                     w.transfers[k], stats,
                     where_of(dataset_path(layout.tensors[t].spec), file_text),
                     ErrorCode::kIo);
        const auto [first, last] = w.spans[k];
        if (w.storage != HADDR_UNDEF && last > first) {
          writeback.written(w.storage + first * w.element_size,
                            (last - first) * w.element_size);
        }
      } catch (...) {
        if (!error) error = std::current_exception();
      }
    }
    w.transfers.clear();
    // A batched tensor has no dataset open here: no message to build.
    if (w.dataset.get() < 0) continue;
    try {
      w.dataset.close(
          "H5Dclose (" +
          where_of(dataset_path(layout.tensors[t].spec), file_text) + ")");
    } catch (...) {
      if (!error) error = std::current_exception();
    }
  }
  return error;
}

// Where each tensor's dataset stores its bytes, for the manifest (the
// reader then reads them without opening the dataset): the address HDF5
// gave when it created the dataset, which early allocation fixes for good;
// 0 for a tensor of no elements (no storage, nothing to read); nothing
// when HDF5 reported no address (the reader then asks HDF5 itself).
std::vector<std::optional<std::uint64_t>> storage_offsets(
    const GlobalLayout& layout, const std::vector<TensorWrite>& writes) {
  std::vector<std::optional<std::uint64_t>> out(writes.size());
  for (std::size_t t = 0; t < writes.size(); ++t) {
    const haddr_t address =
        writes[t].batched ? writes[t].offset : writes[t].storage;
    if (layout.tensors[t].spec.nbytes() == 0) {
      out[t] = 0;
    } else if (address != HADDR_UNDEF) {
      out[t] = address;
    }
  }
  return out;
}

}  // namespace floe::h5
