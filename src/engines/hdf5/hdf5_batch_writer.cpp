#include "engines/hdf5/hdf5_batch_writer.hpp"

#include <algorithm>
#include <exception>
#include <optional>

namespace floe::h5 {

bool is_batched(const TensorSpec& spec, const Hdf5Options& options) {
  return spec.nbytes() < options.small_tensor_bytes;
}

haddr_t storage_offset(hid_t dataset, const std::string& where) {
  const haddr_t offset = H5Dget_offset(dataset);
  if (offset == HADDR_UNDEF) {
    throw Error(ErrorCode::kInternal,
                "H5Dget_offset (" + where + "): no contiguous storage "
                "allocated: " + error_stack());
  }
  return offset;
}

namespace {

// Where `box` lies in its tensor of `shape` when it is one contiguous run
// there (it spans every dimension after the first in full, as every dim-0
// shard does): the run's first element, or nothing. The general walk gives
// the same single run at ~1,700 instructions a tensor, which at 20,000
// small tensors was a tenth of a save made from the template.
std::optional<std::uint64_t> contiguous_start(const Shape& shape, const Box& box) {
  if (box.offset.size() != shape.size() || box.extent.size() != shape.size()) {
    return std::nullopt;
  }
  if (shape.empty()) return 0;
  if (box.offset[0] + box.extent[0] > shape[0]) return std::nullopt;
  std::uint64_t row = 1;  // elements per index of dimension 0
  for (std::size_t d = 1; d < shape.size(); ++d) {
    if (box.offset[d] != 0 || box.extent[d] != shape[d]) return std::nullopt;
    row *= shape[d];
  }
  return box.offset[0] * row;
}

}  // namespace

std::vector<IoRun> batch_runs(const std::vector<BatchPiece>& pieces) {
  std::vector<IoRun> runs;
  runs.reserve(pieces.size());
  for (const BatchPiece& piece : pieces) {
    const std::uint64_t element = piece.element_size;
    const auto* buffer = static_cast<const char*>(piece.buffer);
    if (piece.box_count == 1) {
      const Box& box = piece.boxes[0];
      if (const auto start = contiguous_start(*piece.shape, box)) {
        const std::uint64_t n = box.elements();
        if (n > 0) {
          runs.push_back(IoRun{piece.offset + *start * element, buffer, n * element});
        }
        continue;
      }
    }
    const Box whole = full_box(*piece.shape);
    std::uint64_t at = 0;  // elements of the buffer before this box
    for (std::size_t b = 0; b < piece.box_count; ++b) {
      const Box& box = piece.boxes[b];
      for_each_overlap_run(whole, box, [&](std::uint64_t whole_at,
                                           std::uint64_t box_at,
                                           std::uint64_t n) {
        runs.push_back(IoRun{piece.offset + whole_at * element,
                             buffer + (at + box_at) * element, n * element});
      });
      at += box.elements();
    }
  }
  // Usually in order already (tensors' storage follows their creation
  // order): checking costs less than sorting sorted runs.
  const auto by_offset = [](const IoRun& a, const IoRun& b) { return a.offset < b.offset; };
  if (!std::is_sorted(runs.begin(), runs.end(), by_offset)) {
    std::sort(runs.begin(), runs.end(), by_offset);
  }
  return runs;
}

void write_batch(const Comm& comm, const std::filesystem::path& path,
                 const Hdf5Options& options, const std::vector<IoRun>& runs) {
  MpiFile file(comm.get(), path, MpiFile::Mode::kWrite, write_hints(options));
  std::exception_ptr error;
  try {
    file.write_scattered_all(comm.get(), runs);
  } catch (...) {
    error = std::current_exception();
  }
  // Agreed on before the collective sync and close.
  agree_on_error(comm, error);
  file.sync();
  file.close();
}

}  // namespace floe::h5
