// floe::load_weights: warm-starting model tensors from Hugging Face weights.
// Rank 0 validates the whole directory and sends the others a table of
// where each tensor lies; each rank then reads only its own regions' bytes.
#include <map>
#include <memory>

#include "core/comm.hpp"
#include "core/shape_text.hpp"
#include "core/wire.hpp"
#include "engines/hf/float_cast.hpp"
#include "engines/hf/safetensors_index.hpp"
#include "floe/error.hpp"
#include "floe/hf.hpp"
#include "floe/layout.hpp"

namespace floe {
namespace {

namespace fs = std::filesystem;

// What rank 0 learned, as every rank needs it.
struct Table {
  struct File {
    std::string path;
    std::uint64_t size = 0;
  };
  struct Tensor {
    std::size_t file = 0;
    DType dtype = DType::kF32;
    Shape shape;
    std::uint64_t offset = 0;  // absolute
  };
  std::vector<File> files;
  std::map<std::string, Tensor> tensors;
};

std::string encode(const hf::HfDirectory& dir) {
  WireWriter w;
  w.u64(dir.files().size());
  for (const auto& f : dir.files()) {
    w.str(f->path().string());
    w.u64(f->file().size());
  }
  w.u64(dir.tensors().size());
  for (const auto& [name, loc] : dir.tensors()) {
    w.str(name);
    w.u64(loc.file);
    w.u8(static_cast<std::uint8_t>(loc.tensor->dtype));
    w.u64(loc.tensor->shape.size());
    for (const auto d : loc.tensor->shape) w.u64(d);
    w.u64(loc.tensor->file_offset);
  }
  return w.bytes();
}

Table decode(const std::string& bytes) {
  WireReader r(bytes);
  Table table;
  table.files.resize(r.u64());
  for (auto& f : table.files) {
    f.path = r.str();
    f.size = r.u64();
  }
  for (std::uint64_t n = r.u64(); n > 0; --n) {
    std::string name = r.str();
    Table::Tensor t;
    t.file = r.u64();
    t.dtype = static_cast<DType>(r.u8());
    t.shape.resize(r.u64());
    for (auto& d : t.shape) d = r.u64();
    t.offset = r.u64();
    table.tensors.emplace(std::move(name), std::move(t));
  }
  return table;
}

// Checks every rank's model tensors against the files; the same verdict on
// every rank. Returns the file tensors no state asked for.
std::vector<std::string> check_names(const GlobalLayout& asked,
                                     const Table& table, const fs::path& path,
                                     const HfLoadOptions& options) {
  std::map<std::string, bool> used;
  for (const auto& [name, t] : table.tensors) used[name] = false;
  for (const auto& tensor : asked.tensors) {
    const TensorSpec& spec = tensor.spec;
    if (spec.group != TensorGroup::kModel) continue;
    const std::string name =
        options.rename ? options.rename(spec.name) : spec.name;
    const std::string called =
        name == spec.name ? "" : " (\"" + name + "\" in the files)";
    const auto it = table.tensors.find(name);
    if (it == table.tensors.end()) {
      throw Error(ErrorCode::kMismatch, "tensor \"" + spec.name + "\"" +
                                            called + " is not in " +
                                            path.string());
    }
    used[name] = true;
    const Table::Tensor& t = it->second;
    const bool dtype_ok = t.dtype == spec.dtype ||
                          (options.cast && hf::can_cast(t.dtype, spec.dtype));
    if (!dtype_ok || t.shape != spec.shape) {
      throw Error(ErrorCode::kMismatch,
                  "tensor \"" + spec.name + "\"" + called + ": " +
                      path.string() + " has " + shape_text(t.dtype, t.shape) +
                      ", the state has " + shape_text(spec.dtype, spec.shape) +
                      (t.shape == spec.shape && options.cast
                           ? " (only F64, F32, F16 and BF16 convert)"
                       : t.shape == spec.shape
                           ? " (HfLoadOptions::cast converts floats)"
                           : ""));
    }
  }
  std::vector<std::string> extra;
  for (const auto& [name, was_used] : used) {
    if (!was_used) extra.push_back(name);
  }
  if (!extra.empty() && !options.allow_extra_tensors) {
    throw Error(
        ErrorCode::kMismatch,
        path.string() + " has tensor \"" + extra.front() + "\"" +
            (extra.size() > 1
                 ? " (and " + std::to_string(extra.size() - 1) + " more)"
                 : "") +
            " that no rank's state has (HfLoadOptions::allow_extra_tensors "
            "skips them)");
  }
  return extra;
}

std::uint64_t read_own_regions(State& state, const Table& table,
                               const HfLoadOptions& options) {
  std::map<std::size_t, std::unique_ptr<ReadOnlyFile>> open;
  std::uint64_t bytes = 0;
  for (TensorShard& shard : state.tensors()) {
    const TensorSpec& spec = shard.spec();
    if (spec.group != TensorGroup::kModel) continue;
    const Table::Tensor& t = table.tensors.at(
        options.rename ? options.rename(spec.name) : spec.name);
    auto& file = open[t.file];
    if (!file) {
      const Table::File& f = table.files[t.file];
      file = std::make_unique<ReadOnlyFile>(f.path);
      if (file->size() != f.size) {
        throw Error(ErrorCode::kCorrupt,
                    f.path + " changed while loading: it was " +
                        std::to_string(f.size) + " bytes, now " +
                        std::to_string(file->size()));
      }
    }
    const std::size_t out_size = dtype_size(spec.dtype);
    std::uint64_t at = 0;  // elements into the shard's buffer
    for (const Box& box : shard.region().boxes(spec.shape)) {
      hf::read_tensor_box(*file, t.offset, t.shape, t.dtype, box,
                          shard.data() + at * out_size, spec.dtype);
      at += box.elements();
      bytes += box.elements() * dtype_size(t.dtype);
    }
  }
  return bytes;
}

}  // namespace

HfLoadSummary load_weights(const fs::path& path, State& state,
                           MPI_Comm mpi_comm, const HfLoadOptions& options) {
  const Comm comm(mpi_comm);
  const std::string described = collectively(comm, [&] {
    return comm.rank() == 0
               ? encode(hf::HfDirectory(path, options.follow_symlinks))
               : std::string();
  });
  const Table table = decode(comm.broadcast_bytes(described, 0));
  const GlobalLayout asked = gather_layout(state, mpi_comm);
  HfLoadSummary summary;
  summary.ignored = collectively(
      comm, [&] { return check_names(asked, table, path, options); });
  for (const auto& tensor : asked.tensors) {
    if (tensor.spec.group == TensorGroup::kModel) ++summary.tensors;
  }
  summary.bytes_read = collectively(
      comm, [&] { return read_own_regions(state, table, options); });
  return summary;
}

}  // namespace floe
