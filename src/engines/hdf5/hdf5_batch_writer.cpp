#include "engines/hdf5/hdf5_batch_writer.hpp"

#include <algorithm>
#include <exception>

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

std::vector<IoRun> batch_runs(const std::vector<BatchPiece>& pieces) {
  std::vector<IoRun> runs;
  for (const BatchPiece& piece : pieces) {
    const std::uint64_t element = piece.element_size;
    const Box whole = full_box(*piece.shape);
    const auto* buffer = static_cast<const char*>(piece.buffer);
    std::uint64_t at = 0;  // elements of the buffer before this box
    for (const Box& box : *piece.boxes) {
      for_each_overlap_run(whole, box, [&](std::uint64_t whole_at,
                                           std::uint64_t box_at,
                                           std::uint64_t n) {
        runs.push_back(IoRun{piece.offset + whole_at * element,
                             buffer + (at + box_at) * element, n * element});
      });
      at += box.elements();
    }
  }
  std::sort(runs.begin(), runs.end(), [](const IoRun& a, const IoRun& b) {
    return a.offset < b.offset;
  });
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
