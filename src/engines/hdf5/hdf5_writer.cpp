#include "engines/hdf5/hdf5_writer.hpp"

#include <algorithm>
#include <map>
#include <optional>

#include "core/comm.hpp"
#include "engines/hdf5/h5_file_create.hpp"
#include "engines/hdf5/h5_types.hpp"
#include "engines/hdf5/hdf5_batch_writer.hpp"
#include "engines/hdf5/hdf5_format.hpp"
#include "engines/hdf5/hdf5_loaded_template.hpp"
#include "engines/hdf5/hdf5_rank_report.hpp"
#include "engines/hdf5/hdf5_template.hpp"
#include "io/early_writeback.hpp"
#include "io/mpi_file.hpp"

namespace floe::h5 {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "datasets are stored little-endian and transfers do not convert");

std::uint64_t bytes_written_by(const SaveContext& ctx) {
  std::uint64_t bytes = 0;
  for (const auto& tensor : ctx.layout.tensors) {
    for (const Piece& piece : tensor.pieces) {
      if (piece.rank == ctx.rank && piece.writer) {
        bytes += piece.region.elements() * dtype_size(tensor.spec.dtype);
      }
    }
  }
  for (const auto& [name, blob] : ctx.state.blobs()) bytes += blob.size();
  return bytes;
}

// The scalars' names, and (with `datasets`: not needed when the file is
// made from a template, whose save checked the same paths) every tensor's
// and blob's dataset path.
void check_paths(const GlobalLayout& layout,
                 const std::vector<RankReport>& reports, bool datasets) {
  for (const auto& [name, value] : reports[0].scalars) {
    if (name.empty() || name.find('\0') != std::string::npos) {
      throw Error(ErrorCode::kInvalidArgument,
                  "scalar \"" + name +
                      "\": an HDF5 attribute name must be "
                      "non-empty and free of NUL");
    }
  }
  if (!datasets) return;
  std::vector<NamedPath> paths;
  for (const auto& tensor : layout.tensors) {
    paths.push_back(
        {dataset_path(tensor.spec), "tensor \"" + tensor.spec.key() + "\""});
  }
  for (std::size_t r = 0; r < reports.size(); ++r) {
    for (const auto& blob : reports[r].blobs) {
      paths.push_back(
          {blob_path(static_cast<int>(r), blob.name),
           "blob \"" + blob.name + "\" of rank " + std::to_string(r)});
    }
  }
  check_dataset_paths(paths);
}

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

// What writing one tensor takes: how many collective transfers every rank
// makes, and this rank's own ones (none when it writes nothing of it).
struct TensorPlan {
  std::uint64_t rounds = 0;
  std::vector<Transfer> mine;
  void* buffer = nullptr;  // H5Dwrite only reads it
  // A small tensor: no H5Dwrite; this rank's piece (its boxes, in buffer
  // order) goes into the one batched write instead.
  bool batched = false;
  std::vector<Box> batch_boxes;
};

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
      for (const Piece* piece : tensor.writers()) {
        if (piece->rank != ctx.rank) continue;
        plan.buffer = const_cast<std::byte*>(shard_of(ctx.state, spec, t).data());
        plan.batch_boxes = piece->region.boxes(spec.shape);
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

// The first and one past the last element of `boxes` in the row-major order
// of a tensor of `shape` ({0, 0} when they hold none).
std::pair<std::uint64_t, std::uint64_t> element_span(const Shape& shape,
                                                     const std::vector<Box>& boxes) {
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

// One stored type per dtype, made once per save.
class TypeCache {
 public:
  hid_t get(DType dtype) {
    auto it = types_.find(dtype);
    if (it == types_.end()) it = types_.emplace(dtype, stored_type(dtype)).first;
    return it->second.get();
  }

 private:
  std::map<DType, Type> types_;
};

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
      w.spans.push_back(k < plan.mine.size()
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
    if (!plan.batched || plan.batch_boxes.empty() ||
        writes[t].offset == HADDR_UNDEF) {
      continue;
    }
    const TensorSpec& spec = layout.tensors[t].spec;
    pieces.push_back(BatchPiece{writes[t].offset, &spec.shape,
                                dtype_size(spec.dtype), &plan.batch_boxes,
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
                                 EarlyWriteback& writeback, TransferStats& stats) {
  std::exception_ptr error;
  for (std::size_t t = 0; t < writes.size(); ++t) {
    TensorWrite& w = writes[t];
    for (std::size_t k = 0; k < w.transfers.size(); ++k) {
      try {
        run_transfer(Direction::kWrite, w.dataset.get(), w.type, dxpl, w.transfers[k],
                     stats,
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
      w.dataset.close("H5Dclose (" +
                      where_of(dataset_path(layout.tensors[t].spec),
                               file_text) +
                      ")");
    } catch (...) {
      if (!error) error = std::current_exception();
    }
  }
  return error;
}

// Blobs are small and each belongs to one rank: every rank creates every
// blob dataset (metadata is collective), then each writes its own
// independently, with no collective per blob.
// Returns where each blob's storage lies (kNoStorage where HDF5 reports
// none), by rank, for the file's template.
std::vector<std::vector<std::uint64_t>> write_blobs(
    const Comm& comm, hid_t file, const CreateLists& lists,
    const std::vector<RankReport>& reports, const State& state,
    const std::string& file_text) {
  const Type type = stored_type(DType::kU8);
  std::vector<std::pair<Dataset, const std::vector<std::uint8_t>*>> mine;
  std::vector<std::vector<std::uint64_t>> offsets(reports.size());
  collectively(comm, [&] {
    for (std::size_t r = 0; r < reports.size(); ++r) {
      for (const auto& blob : reports[r].blobs) {
        const std::string path = blob_path(static_cast<int>(r), blob.name);
        const std::string where = "dataset " + path + " in " + file_text;
        Dataset dataset =
            create_dataset(file, lists, path, type.get(), {blob.nbytes}, where);
        const haddr_t offset =
            blob.nbytes > 0 ? H5Dget_offset(dataset.get()) : HADDR_UNDEF;
        if (offset == HADDR_UNDEF) H5Eclear2(H5E_DEFAULT);
        offsets[r].push_back(offset == HADDR_UNDEF ? kNoStorage : offset);
        if (static_cast<int>(r) == comm.rank() && blob.nbytes > 0) {
          mine.emplace_back(std::move(dataset), state.blob(blob.name));
        } else {
          dataset.close("H5Dclose (" + where + ")");
        }
      }
    }
  });
  collectively(comm, [&] {
    Plist dxpl(check_id(H5Pcreate(H5P_DATASET_XFER), "H5Pcreate (transfer)"));
    check(H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_INDEPENDENT),
          "H5Pset_dxpl_mpio");
    for (auto& [dataset, bytes] : mine) {
      check(H5Dwrite(dataset.get(), type.get(), H5S_ALL, H5S_ALL, dxpl.get(),
                     bytes->data()),
            "H5Dwrite (blob of rank " + std::to_string(comm.rank()) + " in " +
                file_text + ")");
      dataset.close("H5Dclose (blob in " + file_text + ")");
    }
  });
  return offsets;
}

// Where each tensor's dataset stores its bytes, for the manifest (the
// reader then reads them without opening the dataset): the address HDF5
// gave when it created the dataset, which early allocation fixes for good;
// 0 for a tensor of no elements (no storage, nothing to read); nothing
// when HDF5 reported no address (the reader then asks HDF5 itself).
std::vector<std::optional<std::uint64_t>> storage_offsets(const GlobalLayout& layout,
                                                          const std::vector<TensorWrite>& writes) {
  std::vector<std::optional<std::uint64_t>> out(writes.size());
  for (std::size_t t = 0; t < writes.size(); ++t) {
    const haddr_t address = writes[t].batched ? writes[t].offset : writes[t].storage;
    if (layout.tensors[t].spec.nbytes() == 0) {
      out[t] = 0;
    } else if (address != HADDR_UNDEF) {
      out[t] = address;
    }
  }
  return out;
}

// Rank 0 reserves the blocks of the tensors' storage, from the first
// tensor's to the end of the last's, before the ranks write their pieces of
// every tensor at once (FileSystem::reserve). Allocated as the ranks'
// interleaved pieces were written back, a 1 GiB file saved at 2 or 4 ranks
// lay in ~100 extents of ~8 MiB, a quarter to a third of them placed before
// the extent preceding them in the file; reserved, it lies in ~26 extents
// in file order (BENCHMARKS.md: loads were no faster for it on the test
// machine's disk). HDF5's metadata outside that range is left as HDF5
// writes it.
void reserve_storage(const SaveContext& ctx, const std::filesystem::path& path,
                     const std::vector<std::optional<std::uint64_t>>& storage) {
  if (ctx.rank != 0) return;
  std::uint64_t begin = ~std::uint64_t{0}, end = 0;
  for (std::size_t t = 0; t < storage.size(); ++t) {
    const std::uint64_t bytes = ctx.layout.tensors[t].spec.nbytes();
    if (!storage[t] || bytes == 0) continue;
    begin = std::min(begin, *storage[t]);
    end = std::max(end, *storage[t] + bytes);
  }
  if (end > begin) ctx.fs.reserve(path, begin, end - begin);
}

WriteResult make_result(const GlobalLayout& layout,
                        const std::vector<RankReport>& reports,
                        const std::vector<std::optional<std::uint64_t>>& storage,
                        const Hdf5Options& options) {
  WriteResult out;
  out.tensors.reserve(layout.tensors.size());
  for (std::size_t t = 0; t < layout.tensors.size(); ++t) {
    const TensorLayout& tensor = layout.tensors[t];
    TensorRecord record{tensor.spec, dataset_path(tensor.spec), {}, storage[t]};
    const std::vector<const Piece*> writers = tensor.writers();
    record.pieces.reserve(writers.size());
    for (const Piece* piece : writers) {
      const auto& sums = reports[piece->rank].piece_xxh3;
      const auto it = sums.find(t);
      if (it == sums.end()) {
        throw Error(ErrorCode::kInternal,
                    "rank " + std::to_string(piece->rank) +
                        " sent no checksum for tensor \"" + tensor.spec.key() +
                        "\"");
      }
      record.pieces.push_back(
          PieceRecord{piece->rank, piece->region, kFileName, 0,
                      piece->region.elements() * dtype_size(tensor.spec.dtype),
                      it->second});
    }
    out.tensors.push_back(std::move(record));
  }
  for (std::size_t r = 0; r < reports.size(); ++r) {
    for (const auto& blob : reports[r].blobs) {
      out.blobs.push_back(BlobRecord{static_cast<int>(r), blob.name, kFileName,
                                     0, blob.nbytes, blob.xxh3});
    }
  }
  out.files = {kFileName};
  out.engine_info = {
      {"format", kFormatName},
      {"format_version", kFormatVersion},
      {"file", kFileName},
      {"hdf5_version", hdf5_library_version()},
      {"alignment", options.alignment},
      {"alignment_threshold", options.alignment_threshold},
  };
  return out;
}

// The offsets the template keeps of what storage_offsets() gives the
// manifest (kNoStorage for none).
std::vector<std::uint64_t> template_offsets(
    const std::vector<std::optional<std::uint64_t>>& storage) {
  std::vector<std::uint64_t> out;
  out.reserve(storage.size());
  for (const auto& offset : storage) out.push_back(offset ? *offset : kNoStorage);
  return out;
}

// Collective (metadata operations are): opens every tensor's dataset that
// takes collective H5Dwrites, in layout order, and sets where each tensor's
// storage lies from the template instead of asking HDF5.
void open_tensors(hid_t file, const GlobalLayout& layout,
                  const FileTemplate& templ, std::vector<TensorWrite>& writes,
                  const std::string& file_text) {
  for (std::size_t t = 0; t < writes.size(); ++t) {
    const TensorSpec& spec = layout.tensors[t].spec;
    TensorWrite& w = writes[t];
    const std::uint64_t offset = templ.tensor_offsets[t];
    const haddr_t address =
        spec.nbytes() > 0 && offset != kNoStorage ? offset : HADDR_UNDEF;
    if (w.batched) {
      w.offset = address;
      continue;
    }
    w.storage = address;
    const std::string path = dataset_path(spec);
    w.dataset = Dataset(check_id(H5Dopen2(file, path.c_str(), H5P_DEFAULT),
                                 "H5Dopen2 (" + where_of(path, file_text) + ")"));
  }
}

// Local: this rank's blobs as runs of the batched write, at the template's
// addresses.
void add_blob_runs(const Comm& comm, const std::vector<RankReport>& reports,
                   const State& state, const FileTemplate& templ,
                   std::vector<IoRun>& runs) {
  const auto& blobs = reports[comm.rank()].blobs;
  for (std::size_t b = 0; b < blobs.size(); ++b) {
    if (blobs[b].nbytes == 0) continue;
    runs.push_back(IoRun{templ.blob_offsets[comm.rank()][b],
                         state.blob(blobs[b].name)->data(), blobs[b].nbytes});
  }
  // The blobs' storage follows the tensors': usually still in order.
  const auto by_offset = [](const IoRun& a, const IoRun& b) { return a.offset < b.offset; };
  if (!std::is_sorted(runs.begin(), runs.end(), by_offset)) {
    std::sort(runs.begin(), runs.end(), by_offset);
  }
}

// Everything a save writes into its file, given the plans: the file made
// in full with HDF5 (write_in_full) or from the template of an earlier save
// of the same structure (write_from_template). Both return the manifest's
// storage offsets.
struct FileWrite {
  const SaveContext& ctx;
  const Comm& comm;
  const Hdf5Options& options;
  const std::vector<RankReport>& reports;
  const std::vector<TensorPlan>& plans;
  std::filesystem::path path;
  std::string file_text;
};

// What the tensors' phase leaves for the batched write and the manifest.
struct TensorData {
  std::vector<IoRun> batch;  // this rank's runs of the batched write
  std::uint64_t batched = 0;  // tensors in the batched write
  std::vector<std::optional<std::uint64_t>> storage;  // storage_offsets()
};

// Collective, each phase agreed on once: prepares this rank's side of every
// tensor's transfers (local), `place`s their datasets (creates or opens
// them, setting where their storage lies), lists the batched write's runs
// (`add_runs` adds more), reserves the storage and makes every tensor's
// collective writes.
template <typename Place, typename AddRuns>
TensorData write_tensor_data(const FileWrite& job, Place&& place, AddRuns&& add_runs,
                             TransferStats& stats) {
  const Comm& comm = job.comm;
  const GlobalLayout& layout = job.ctx.layout;
  TypeCache types;
  std::vector<TensorWrite> writes;
  Plist dxpl;
  collectively(comm, [&] {
    dxpl = collective_dxpl();
    writes = prepare_tensors(layout, job.plans, types, job.file_text);
  });
  collectively(comm, [&] { place(writes); });
  TensorData out;
  collectively(comm, [&] {
    out.batch = batch_runs(batch_pieces(layout, job.plans, writes));
    add_runs(out.batch);
    for (const TensorWrite& w : writes) out.batched += w.offset != HADDR_UNDEF;
    out.storage = storage_offsets(layout, writes);
  });
  collectively(comm, [&] { reserve_storage(job.ctx, job.path, out.storage); });
  EarlyWriteback writeback(job.path);
  agree_on_error(comm, write_tensors(layout, writes, dxpl.get(), job.file_text,
                                     writeback, stats));
  return out;
}

std::vector<std::optional<std::uint64_t>> write_in_full(
    const FileWrite& job, TransferStats& stats,
    std::vector<std::vector<std::uint64_t>>& blob_offsets) {
  const SaveContext& ctx = job.ctx;
  const Comm& comm = job.comm;
  const std::string& file_text = job.file_text;
  File file;
  CreateLists lists;
  collectively(comm, [&] {
    lists = create_lists();
    std::uint64_t objects = ctx.layout.tensors.size();
    for (const RankReport& report : job.reports) objects += report.blobs.size();
    file = create_file(job.path, ctx.comm, job.options, objects);
    create_top_groups(file.get(), file_text);
    write_root_attributes(file.get(), ctx.layout, job.reports[0], file_text);
  });
  // Phases, each agreed on once: prepare the transfers (local), create every
  // dataset, write every tensor, then the blobs.
  TensorData data = write_tensor_data(
      job, [&](std::vector<TensorWrite>& writes) {
        create_tensors(file.get(), lists, ctx.layout, writes, file_text);
      },
      [](std::vector<IoRun>&) {}, stats);
  blob_offsets =
      write_blobs(comm, file.get(), lists, job.reports, ctx.state, file_text);
  collectively(comm, [&] {
    // H5Fflush(GLOBAL) ends in MPI_File_sync: the data is durable. With a
    // batched write to come, its own sync covers the whole file.
    if (data.batched == 0) {
      check(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), "H5Fflush " + file_text);
    }
    file.close("H5Fclose " + file_text);
  });
  if (data.batched > 0) {
    write_batch(comm, job.path, job.options, data.batch);
    stats.batched += data.batched;
  }
  return data.storage;
}

// The template's bytes instead of H5Fcreate and every dataset's creation;
// HDF5 opens the file to rewrite the metadata and scalars and to make the
// large tensors' collective writes; the small tensors and the blobs go into
// the batched write at the template's addresses, which also syncs.
std::vector<std::optional<std::uint64_t>> write_from_template(
    const FileWrite& job, const FileTemplate& templ, TransferStats& stats) {
  const SaveContext& ctx = job.ctx;
  const Comm& comm = job.comm;
  const std::string& file_text = job.file_text;
  write_template(comm, job.path, write_hints(job.options), templ);
  File file;
  collectively(comm, [&] {
    file = open_file_to_write(job.path, ctx.comm, job.options);
    rewrite_root_attributes(file.get(), job.reports[0], file_text);
  });
  TensorData data = write_tensor_data(
      job, [&](std::vector<TensorWrite>& writes) {
        open_tensors(file.get(), ctx.layout, templ, writes, file_text);
      },
      [&](std::vector<IoRun>& batch) {
        add_blob_runs(comm, job.reports, ctx.state, templ, batch);
      },
      stats);
  collectively(comm, [&] { file.close("H5Fclose " + file_text); });
  write_batch(comm, job.path, job.options, data.batch);
  stats.batched += data.batched;
  return data.storage;
}

}  // namespace

WriteResult write_checkpoint(const SaveContext& ctx, const Hdf5Options& options,
                             TransferStats& stats, SavedStructure& saved) {
  const QuietErrors quiet;
  const Comm comm(ctx.comm);
  const std::filesystem::path path = ctx.dir / kFileName;

  const std::vector<RankReport> reports = exchange_reports(ctx);
  std::string structure;
  if (options.reuse_structure) {
    structure = describe_structure(ctx.layout, reports, options);
  }
  // A fresh engine that loaded a checkpoint of this structure: its file is
  // the template (tried once; a mismatch saves in full as before).
  if (options.reuse_structure && !saved.file && saved.loaded) {
    saved.file = template_from_loaded(comm, *saved.loaded, structure,
                                      ctx.layout, reports);
  }
  saved.loaded.reset();
  // Every rank holds the same template (capture_template agrees), so this
  // is the same everywhere; the allreduce keeps it so by construction.
  saved.reused = comm.allreduce_min(saved.file && options.reuse_structure &&
                                            saved.file->structure == structure
                                        ? 1
                                        : 0) == 1;
  std::vector<TensorPlan> plans;
  collectively(comm, [&] {
    check_paths(ctx.layout, reports, /*datasets=*/!saved.reused);
    plans = plan_writes(ctx, options);
  });
  collectively(comm,
               [&] { ctx.fs.before_data_write(path, bytes_written_by(ctx)); });

  const FileWrite job{ctx, comm, options, reports, plans, path, path.string()};
  std::vector<std::optional<std::uint64_t>> storage;
  // Rank 0: image_xxh3() of this save's file, for its manifest.
  std::optional<std::uint64_t> image;
  if (saved.reused) {
    storage = write_from_template(job, *saved.file, stats);
    // Not the template's own: HDF5 rewrote attributes. Rank 0 reads the
    // file's structure bytes back (from the page cache) to hash them.
    if (comm.rank() == 0) {
      image = file_image_xxh3(path, ctx.layout, reports, *saved.file,
                              kMaxTemplateBytes);
    }
  } else {
    std::vector<std::vector<std::uint64_t>> blob_offsets;
    storage = write_in_full(job, stats, blob_offsets);
    // Made again below, or dropped: a template of an older structure is no
    // use any more.
    saved.file.reset();
    if (options.reuse_structure) {
      saved.file = capture_template(comm, path, structure, ctx.layout, reports,
                                    template_offsets(storage),
                                    std::move(blob_offsets), kMaxTemplateBytes);
      if (saved.file) image = saved.file->image_xxh3;
    }
  }
  // Whatever the close still wrote (rank 0 writes the superblock).
  if (comm.rank() == 0) ctx.fs.fsync_file(path);
  WriteResult result = make_result(ctx.layout, reports, storage, options);
  // What lets an engine that loads this checkpoint save its next one from
  // the file (hdf5_loaded_template.hpp); only rank 0's result is recorded.
  if (image) {
    record_structure(result.engine_info, structure, *image,
                     saved.file->blob_offsets);
  }
  return result;
}

}  // namespace floe::h5
