#include "engines/hdf5/hdf5_reader.hpp"

#include <algorithm>
#include <map>
#include <optional>

#include "commit/paths.hpp"
#include "core/comm.hpp"
#include "engines/hdf5/h5_dataset_check.hpp"
#include "engines/hdf5/h5_direct_runs.hpp"
#include "engines/hdf5/h5_types.hpp"
#include "engines/hdf5/hdf5_format.hpp"
#include "engines/hdf5/hdf5_options.hpp"
#include "io/gathered_read.hpp"
#include "io/mpi_file.hpp"

namespace floe::h5 {
namespace {

// Reads move at most this much per rank and transfer.
constexpr std::uint64_t kMaxReadBytes = 1ull << 30;
// A rank's request is read with pread when it takes at most this many runs,
// or when its runs average at least this many bytes; many small runs (a
// column block of a row-major tensor) go through the collective H5Dread,
// whose two-phase I/O turns them into large reads.
constexpr std::size_t kDirectMaxRuns = 64;
constexpr std::uint64_t kDirectMinRunBytes = 256u << 10;

// The one data file the manifest's pieces and blobs name (checkpoint.h5
// when they name none).
std::string data_file_name(const Manifest& manifest) {
  std::vector<std::string> names;
  auto add = [&](const std::string& name) {
    if (std::find(names.begin(), names.end(), name) == names.end())
      names.push_back(name);
  };
  for (const auto& tensor : manifest.tensors) {
    for (const auto& piece : tensor.pieces) add(piece.file);
  }
  for (const auto& blob : manifest.blobs) add(blob.file);
  if (names.empty()) return kFileName;
  if (names.size() > 1) {
    throw Error(ErrorCode::kCorrupt,
                "an hdf5 checkpoint has one data file, but "
                "its manifest names \"" +
                    names[0] + "\" and \"" + names[1] + "\"");
  }
  check_relative_path(names[0], "hdf5 data file");
  return names[0];
}

File open_file(const std::filesystem::path& path, MPI_Comm comm) {
  if (comm != MPI_COMM_SELF) check_open_on_every_rank(comm, path, MpiFile::Mode::kRead);
  const Plist fapl = file_access(comm, Hdf5Options{}, /*for_writing=*/false);
  return File(check_id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()),
                       "H5Fopen " + path.string(), ErrorCode::kCorrupt));
}

void check_format(hid_t file, const std::string& file_text) {
  const std::string format = read_string_attribute(
      file, kFormatAttribute, file_text, ErrorCode::kCorrupt);
  if (format != kFormatName) {
    throw Error(ErrorCode::kCorrupt, file_text + " is a \"" + format +
                                         "\" file, not a Floe hdf5 checkpoint");
  }
  Attribute version(check_id(
      H5Aopen(file, kFormatVersionAttribute, H5P_DEFAULT),
      std::string("H5Aopen ") + kFormatVersionAttribute + " of " + file_text,
      ErrorCode::kCorrupt));
  std::int64_t value = 0;
  check(H5Aread(version.get(), H5T_NATIVE_INT64, &value),
        std::string("H5Aread ") + kFormatVersionAttribute + " of " + file_text,
        ErrorCode::kCorrupt);
  if (value > kFormatVersion) {
    throw Error(ErrorCode::kUnsupported, file_text + " has format version " +
                                             std::to_string(value) +
                                             "; this Floe reads up to " +
                                             std::to_string(kFormatVersion));
  }
}

std::uint64_t request_bytes(const std::vector<Hdf5Reader::Run>& runs) {
  std::uint64_t n = 0;
  for (const auto& run : runs) n += run.length;
  return n;
}

}  // namespace

Hdf5Reader::Hdf5Reader(const ReadContext& ctx, std::uint64_t direct_below,
                       LargeReads large_reads)
    : comm_(ctx.comm),
      dir_(ctx.dir),
      direct_large_(large_reads == LargeReads::kDirect),
      direct_below_(direct_below) {
  const QuietErrors quiet;
  const Comm comm(comm_);
  std::filesystem::path path;
  std::string name;
  collectively(comm, [&] {
    name = data_file_name(ctx.manifest);
    path = ctx.dir / name;
    file_text_ = path.string();
    if (comm.rank() != 0) return;
    resolve_inside(ctx.dir, name, "hdf5 data file");
    if (!ctx.fs.exists(path)) {
      throw Error(ErrorCode::kCorrupt, file_text_ + " is missing");
    }
    if (!check_tri(H5Fis_hdf5(path.c_str()), "H5Fis_hdf5 " + file_text_,
                   ErrorCode::kCorrupt)) {
      throw Error(ErrorCode::kCorrupt, file_text_ + " is not an HDF5 file");
    }
  });
  collectively(comm, [&] {
    file_ = open_file(path, comm_);
    check_format(file_.get(), file_text_);
    data_ = std::make_unique<ReadOnlyFile>(resolve_inside(dir_, name, "hdf5 data file"),
                                           ctx.direct_io);
    dataset_access_ = Plist(
        check_id(H5Pcreate(H5P_DATASET_ACCESS), "H5Pcreate (dataset access)"));
    // Per operation, collective metadata reads work in HDF5 1.10.8 (rank 0
    // reads, the others receive a broadcast); file-wide they do not
    // (HDFFV-11260), and blobs need independent opens anyway.
    if (Hdf5Options{}.collective_metadata) {
      check(H5Pset_all_coll_metadata_ops(dataset_access_.get(), true),
            "H5Pset_all_coll_metadata_ops");
    }
  });
  plan_direct_reads(ctx, name);
}

Hdf5Reader::~Hdf5Reader() {
  const QuietErrors quiet;
  own_file_.reset();
  dataset_access_.reset();
  file_.reset();
}

hid_t Hdf5Reader::own_file(const std::string& name, const std::string& owner) {
  if (!own_file_ || name != own_file_name_) {
    own_file_.reset();
    own_file_ = open_file(resolve_inside(dir_, name, owner), MPI_COMM_SELF);
    own_file_name_ = name;
  }
  return own_file_.get();
}

void Hdf5Reader::read(const TensorRecord& tensor, const std::vector<Box>& boxes,
                      void* out) {
  if (const Direct* direct = planned(tensor)) return read_direct(tensor, *direct, boxes, out);
  read_collective(tensor, boxes, out);
}

std::size_t Hdf5Reader::read_some(const ReadRequest* requests, std::size_t count) {
  if (count == 1) return read_each(requests, 1);
  std::size_t gathered_reads = 0;
  try {
    std::vector<FileRun> runs;
    Box whole;  // each_run's scratch, kept across the requests
    for (std::size_t i = 0; i < count; ++i) {
      // Not a planned direct read: read() says how it is read.
      if (!append_runs(requests[i], runs, whole)) {
        gathered_.count_fallback(count);
        return read_each(requests, count);
      }
    }
    gathered_reads = read_gathered(runs);
  } catch (...) {
    // Not pinned to a request: read() of each says which.
    gathered_.count_fallback(count);
    return read_each(requests, count);
  }
  batched_ += count;
  gathered_.count_batch(count, gathered_reads);
  return count;
}

bool Hdf5Reader::append_runs(const ReadRequest& request, std::vector<FileRun>& runs) {
  Box whole;
  return append_runs(request, runs, whole);
}

bool Hdf5Reader::append_runs(const ReadRequest& request, std::vector<FileRun>& runs,
                             Box& whole) {
  const Direct* direct = planned(*request.tensor);
  if (!direct) return false;
  const TensorSpec& spec = request.tensor->spec;
  check_request(spec, request.boxes, request.out);
  if (!direct->problem.empty()) throw Error(direct->code, direct->problem);
  // Straight into `runs`: append_run merges as runs_of would.
  each_run(spec, direct->offset, request.boxes, request.out, whole,
           [&](std::uint64_t offset, char* memory, std::uint64_t length) {
             append_run(runs, *data_, offset, memory, length);
           });
  return true;
}

std::vector<Hdf5Reader::Run> Hdf5Reader::runs_of(const TensorSpec& spec,
                                                 std::uint64_t storage,
                                                 const std::vector<Box>& boxes,
                                                 void* out) {
  // Runs that continue each other in both the file and memory are one read.
  std::vector<Run> runs;
  Box whole;
  each_run(spec, storage, boxes, out, whole,
           [&](std::uint64_t offset, char* memory, std::uint64_t length) {
             if (!runs.empty()) {
               Run& last = runs.back();
               if (last.offset + last.length == offset && last.memory + last.length == memory) {
                 last.length += length;
                 return;
               }
             }
             runs.push_back(Run{offset, memory, length});
           });
  return runs;
}

void Hdf5Reader::read_runs(const std::vector<Run>& runs) {
  for (const Run& run : runs) data_->read_exact(run.offset, run.length, run.memory);
}

void Hdf5Reader::read_direct(const TensorRecord& tensor, const Direct& direct,
                             const std::vector<Box>& boxes, void* out) {
  const TensorSpec& spec = tensor.spec;
  check_request(spec, boxes, out);
  if (!direct.problem.empty()) throw Error(direct.code, direct.problem);
  read_runs(runs_of(spec, direct.offset, boxes, out));
  ++batched_;
}

void Hdf5Reader::read_collective(const TensorRecord& tensor,
                                 const std::vector<Box>& boxes, void* out) {
  const QuietErrors quiet;
  const Comm comm(comm_);
  const TensorSpec& spec = tensor.spec;
  const std::size_t element_size = dtype_size(spec.dtype);
  const std::string where = "dataset " + tensor.dataset + " in " + file_text_;

  // Each rank checks and prepares its own request (local), then every rank
  // opens and checks the dataset (collective metadata reads, which fail
  // alike on every rank); one allreduce then carries both whether any rank
  // failed and how many transfers every rank makes.
  std::vector<Transfer> plan;
  std::vector<PreparedTransfer> prepared;
  std::exception_ptr error;
  try {
    check_request(spec, boxes, out);
    plan = plan_transfers(
        spec.shape, boxes,
        std::max<std::uint64_t>(1, kMaxReadBytes / element_size));
    for (const Transfer& transfer : plan) {
      prepared.push_back(prepare_transfer(spec.shape, &transfer, out,
                                          element_size, where,
                                          ErrorCode::kCorrupt));
    }
    if (!transfer_list_) transfer_list_ = collective_dxpl();
  } catch (...) {
    error = std::current_exception();
    plan.clear();
    prepared.clear();
  }
  Dataset dataset;
  std::vector<Run> runs;  // this rank's request, when it can be read directly
  bool direct = direct_large_;
  try {
    dataset = open_dataset(file_.get(), tensor.dataset, dataset_access_.get(),
                           file_text_, "tensor \"" + spec.key() + "\"");
    check_dataset(dataset.get(), spec, where);
    if (direct) {
      const std::optional<std::uint64_t> storage = contiguous_storage(dataset.get(), spec);
      direct = storage.has_value();
      if (direct && !error) {
        runs = runs_of(spec, *storage, boxes, out);
        direct = runs.size() <= kDirectMaxRuns ||
                 request_bytes(runs) / runs.size() >= kDirectMinRunBytes;
      }
    }
  } catch (...) {
    if (!error) error = std::current_exception();
  }
  // Whether any rank failed, how many transfers each makes, and whether
  // any rank needs the collective H5Dread.
  const std::uint64_t local[3] = {error ? 1u : 0u, plan.size(), direct ? 0u : 1u};
  std::uint64_t global[3] = {0, 0, 0};
  check_mpi(MPI_Allreduce(local, global, 3, MPI_UINT64_T, MPI_MAX, comm_),
            "MPI_Allreduce");
  if (global[0] != 0) {
    dataset.reset();
    agree_on_error(comm, error);  // throws on every rank
  }
  if (global[2] == 0) {
    // Every rank reads its own runs with pread, as read_direct does: no
    // collective call is left, so a failure here is this rank's alone (the
    // caller agrees on it after its last read, as for direct reads).
    dataset.close("H5Dclose (" + where + ")");
    read_runs(runs);
    ++stats_.direct;
    return;
  }
  const std::uint64_t rounds = global[1];

  // Only the collective H5Dreads are left: an HDF5 failure inside one is
  // the same on every rank, so no further agreement is needed.
  if (rounds > prepared.size()) {
    const Shape& shape = spec.shape;
    const std::size_t have = prepared.size();
    for (std::uint64_t k = have; k < rounds; ++k) {
      prepared.push_back(prepare_transfer(shape, nullptr, out, element_size,
                                          where, ErrorCode::kCorrupt));
    }
  }
  const Type& type = type_of(spec.dtype);
  for (std::uint64_t k = 0; k < rounds; ++k) {
    run_transfer(Direction::kRead, dataset.get(), type.get(),
                 transfer_list_.get(), prepared[k], stats_, where,
                 ErrorCode::kCorrupt);
  }
  dataset.close("H5Dclose (" + where + ")");
}

const Type& Hdf5Reader::type_of(DType dtype) {
  auto it = types_.find(dtype);
  if (it == types_.end()) it = types_.emplace(dtype, stored_type(dtype)).first;
  return it->second;
}

TransferStats Hdf5Reader::stats() const {
  TransferStats out = stats_;
  out.batched = batched_;
  return out;
}

std::vector<std::uint8_t> Hdf5Reader::read_blob(const BlobRecord& blob) {
  const std::lock_guard<std::mutex> lock(own_file_mutex_);
  const QuietErrors quiet;
  const hid_t file = own_file(blob.file, "blob \"" + blob.name + "\"");
  const std::string file_text = (dir_ / blob.file).string();
  const std::string path = blob_path(blob.rank, blob.name);
  const std::string where = "dataset " + path + " in " + file_text;
  Dataset dataset = open_dataset(
      file, path, H5P_DEFAULT, file_text,
      "blob \"" + blob.name + "\" of rank " + std::to_string(blob.rank));
  Type type(check_id(H5Dget_type(dataset.get()), "H5Dget_type (" + where + ")",
                     ErrorCode::kCorrupt));
  const Shape shape = extent_of(dataset.get(), where);
  if (!check_tri(H5Tequal(type.get(), H5T_STD_U8LE), "H5Tequal (" + where + ")",
                 ErrorCode::kCorrupt) ||
      shape.size() != 1) {
    throw Error(ErrorCode::kCorrupt, where + " is not a 1-d array of bytes");
  }
  if (shape[0] != blob.nbytes) {
    throw Error(ErrorCode::kCorrupt, where + " holds " +
                                         std::to_string(shape[0]) +
                                         " bytes but the manifest records " +
                                         std::to_string(blob.nbytes));
  }
  std::vector<std::uint8_t> bytes(blob.nbytes);
  if (!bytes.empty()) {
    independent_read_all(dataset.get(), H5T_STD_U8LE, bytes.data(), where,
                         ErrorCode::kCorrupt);
  }
  dataset.close("H5Dclose (" + where + ")");
  return bytes;
}

std::unique_ptr<CheckpointReader> open_hdf5_reader(const ReadContext& ctx) {
  return std::make_unique<Hdf5Reader>(ctx);
}

}  // namespace floe::h5
