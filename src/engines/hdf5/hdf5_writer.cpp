#include "engines/hdf5/hdf5_writer.hpp"

#include <algorithm>
#include <optional>

#include "core/comm.hpp"
#include "core/phase_log.hpp"
#include "engines/hdf5/h5_file_create.hpp"
#include "engines/hdf5/h5_types.hpp"
#include "engines/hdf5/hdf5_batch_writer.hpp"
#include "engines/hdf5/hdf5_format.hpp"
#include "engines/hdf5/hdf5_loaded_template.hpp"
#include "engines/hdf5/hdf5_rank_report.hpp"
#include "engines/hdf5/hdf5_template.hpp"
#include "engines/hdf5/hdf5_tensor_writes.hpp"
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

// The tensor records only where `records` (rank 0, whose result is the
// manifest's): elsewhere they would be copies of every spec and region of
// 20,000 tensors made for nothing.
WriteResult make_result(const GlobalLayout& layout,
                        const std::vector<RankReport>& reports,
                        const std::vector<std::optional<std::uint64_t>>& storage,
                        const Hdf5Options& options, bool records) {
  WriteResult out;
  if (records) out.tensors.reserve(layout.tensors.size());
  // Each rank's checksums are in ascending tensor order (RankReport) and
  // the tensors are visited in that order: by rank, the first checksum not
  // yet passed.
  std::vector<std::size_t> next(reports.size(), 0);
  for (std::size_t t = 0; records && t < layout.tensors.size(); ++t) {
    const TensorLayout& tensor = layout.tensors[t];
    TensorRecord record{tensor.spec, dataset_path(tensor.spec), {}, storage[t]};
    record.pieces.reserve(tensor.pieces.size());
    const std::uint64_t element = dtype_size(tensor.spec.dtype);
    for (const Piece& piece : tensor.pieces) {
      if (!piece.writer) continue;
      const auto& sums = reports[piece.rank].piece_xxh3;
      std::size_t& at = next[piece.rank];
      while (at < sums.size() && sums[at].first < t) ++at;
      if (at == sums.size() || sums[at].first != t) {
        throw Error(ErrorCode::kInternal,
                    "rank " + std::to_string(piece.rank) +
                        " sent no checksum for tensor \"" + tensor.spec.key() +
                        "\"");
      }
      record.pieces.push_back(PieceRecord{piece.rank, piece.region, kFileName,
                                          0, piece.region.elements() * element,
                                          sums[at].second});
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
  // H5Fflush(GLOBAL) ends in MPI_File_sync: the data is durable. With a
  // batched write to come, its own sync covers the whole file. Agreed on
  // apart from the close: the sync can fail on one rank only (its own
  // fsync), and that rank must not skip the collective H5Fclose the
  // others make (on failure every rank closes the file in unwinding).
  collectively(comm, [&] {
    if (data.batched == 0) {
      check(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), "H5Fflush " + file_text);
    }
  });
  collectively(comm, [&] { file.close("H5Fclose " + file_text); });
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
  mark_phase("write: reports");
  std::string structure;
  if (options.reuse_structure) {
    structure = describe_structure(ctx.layout, reports, options);
  }
  // A fresh engine that loaded a checkpoint of this structure: its file is
  // the template (tried once; a mismatch saves in full as before). Tried
  // only when every rank has the loaded file's record (template_from_loaded
  // is collective).
  if (options.reuse_structure && !saved.file &&
      comm.allreduce_min(saved.loaded ? 1 : 0) == 1) {
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
  mark_phase("write: plan");

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
  mark_phase(saved.reused ? "write: data (template)" : "write: data (in full)");
  // Whatever the close still wrote (rank 0 writes the superblock).
  if (comm.rank() == 0) ctx.fs.fsync_file(path);
  WriteResult result =
      make_result(ctx.layout, reports, storage, options, comm.rank() == 0);
  // What lets an engine that loads this checkpoint save its next one from
  // the file (hdf5_loaded_template.hpp); only rank 0's result is recorded.
  if (image) {
    record_structure(result.engine_info, structure, *image,
                     saved.file->blob_offsets);
  }
  return result;
}

}  // namespace floe::h5
