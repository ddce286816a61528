#include "engines/hdf5/h5_transfer.hpp"

#include <vector>

namespace floe::h5 {
namespace {

std::string cause_text(std::uint32_t cause) {
  static const std::pair<std::uint32_t, const char*> kCauses[] = {
      {H5D_MPIO_SET_INDEPENDENT, "independent I/O was requested"},
      {H5D_MPIO_DATATYPE_CONVERSION, "a datatype conversion"},
      {H5D_MPIO_DATA_TRANSFORMS, "a data transform"},
      {H5D_MPIO_MPI_OPT_TYPES_ENV_VAR_DISABLED,
       "HDF5_MPI_OPT_TYPES disables MPI derived types"},
      {H5D_MPIO_NOT_SIMPLE_OR_SCALAR_DATASPACES,
       "a dataspace that is not simple or scalar"},
      {H5D_MPIO_NOT_CONTIGUOUS_OR_CHUNKED_DATASET,
       "a dataset neither contiguous nor chunked"},
      {H5D_MPIO_PARALLEL_FILTERED_WRITES_DISABLED,
       "filtered writes in parallel are disabled"},
      {H5D_MPIO_ERROR_WHILE_CHECKING_COLLECTIVE_POSSIBLE,
       "an error while checking whether collective I/O is possible"},
  };
  std::string out;
  for (const auto& [bit, text] : kCauses) {
    if (cause & bit) out += (out.empty() ? "" : ", ") + std::string(text);
  }
  return out.empty() ? "no cause reported" : out;
}

// HDF5's MPI-IO driver (1.10 to 1.14, H5FD_mpio_write/read) sets a file
// view for a collective transfer and, after the collective write or read,
// resets it with a collective MPI_File_set_view. When the transfer fails on
// this rank only (a failed pwrite on one node, reported by ROMIO), the
// driver returns before that reset, and every other rank waits in it: the
// job hangs. An error stack naming the failed call means exactly that:
// make the reset HDF5 skipped, on its file handle.
void finish_skipped_view_reset(hid_t dataset, const std::string& stack) {
  if (stack.find("MPI_File_write_at_all failed") == std::string::npos &&
      stack.find("MPI_File_read_at_all failed") == std::string::npos) {
    return;
  }
  const hid_t file = H5Iget_file_id(dataset);
  if (file < 0) return;
  void* handle = nullptr;
  if (H5Fget_vfd_handle(file, H5P_DEFAULT, &handle) >= 0 && handle != nullptr) {
    MPI_File_set_view(*static_cast<MPI_File*>(handle), 0, MPI_BYTE, MPI_BYTE,
                      "native", MPI_INFO_NULL);
  }
  H5Fclose(file);  // the id's reference only; the file stays open
  H5Eclear2(H5E_DEFAULT);
}

void record(hid_t dxpl, TransferStats& stats) {
  ++stats.transfers;
  H5D_mpio_actual_io_mode_t mode = H5D_MPIO_NO_COLLECTIVE;
  check(H5Pget_mpio_actual_io_mode(dxpl, &mode), "H5Pget_mpio_actual_io_mode");
  if (mode == H5D_MPIO_CONTIGUOUS_COLLECTIVE ||
      mode == H5D_MPIO_CHUNK_COLLECTIVE) {
    ++stats.collective;
    return;
  }
  if (!stats.first_cause.empty()) return;
  std::uint32_t local = 0, global = 0;
  check(H5Pget_mpio_no_collective_cause(dxpl, &local, &global),
        "H5Pget_mpio_no_collective_cause");
  stats.first_cause = cause_text(local | global);
}

}  // namespace

PreparedTransfer prepare_transfer(const Shape& shape, const Transfer* transfer,
                                  void* buffer, std::size_t element_size,
                                  const std::string& what, ErrorCode code) {
  PreparedTransfer out;
  if (shape.empty()) {
    out.file_space =
        Space(check_id(H5Screate(H5S_SCALAR), "H5Screate (" + what + ")", code));
  } else {
    const std::vector<hsize_t> dims(shape.begin(), shape.end());
    out.file_space = Space(check_id(
        H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
        "H5Screate_simple (" + what + ")", code));
  }
  if (transfer) {
    select_boxes(out.file_space.get(), shape, transfer->boxes);
    const hsize_t count = transfer->elements;
    out.memory_space = Space(check_id(H5Screate_simple(1, &count, nullptr),
                                      "H5Screate_simple (" + what + ")"));
    out.at = static_cast<unsigned char*>(buffer) +
             transfer->buffer_offset * element_size;
  } else {
    check(H5Sselect_none(out.file_space.get()),
          "H5Sselect_none (" + what + ")");
    out.memory_space = Space(
        check_id(H5Scopy(out.file_space.get()), "H5Scopy (" + what + ")"));
  }
  return out;
}

Plist collective_dxpl() {
  Plist dxpl(check_id(H5Pcreate(H5P_DATASET_XFER), "H5Pcreate (transfer)"));
  check(H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_COLLECTIVE), "H5Pset_dxpl_mpio");
  return dxpl;
}

void run_transfer(Direction direction, hid_t dataset, hid_t type, hid_t dxpl,
                  const PreparedTransfer& prepared, TransferStats& stats,
                  const std::string& what, ErrorCode code) {
  const bool write = direction == Direction::kWrite;
  const herr_t status =
      write ? H5Dwrite(dataset, type, prepared.memory_space.get(),
                       prepared.file_space.get(), dxpl, prepared.at)
            : H5Dread(dataset, type, prepared.memory_space.get(),
                      prepared.file_space.get(), dxpl, prepared.at);
  if (status < 0) {
    const std::string stack = error_stack();
    finish_skipped_view_reset(dataset, stack);
    throw_error(std::string(write ? "H5Dwrite (" : "H5Dread (") + what + ")", stack,
                code);
  }
  record(dxpl, stats);
}

void collective_transfer(Direction direction, hid_t dataset, hid_t type,
                         const Shape& shape, const Transfer* transfer,
                         void* buffer, std::size_t element_size,
                         TransferStats& stats, const std::string& what,
                         ErrorCode code) {
  const PreparedTransfer prepared =
      prepare_transfer(shape, transfer, buffer, element_size, what, code);
  const Plist dxpl = collective_dxpl();
  run_transfer(direction, dataset, type, dxpl.get(), prepared, stats, what,
               code);
}

void independent_read_all(hid_t dataset, hid_t type, void* buffer,
                          const std::string& what, ErrorCode code) {
  Plist dxpl(check_id(H5Pcreate(H5P_DATASET_XFER), "H5Pcreate (transfer)"));
  check(H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_INDEPENDENT),
        "H5Pset_dxpl_mpio");
  check(H5Dread(dataset, type, H5S_ALL, H5S_ALL, dxpl.get(), buffer),
        "H5Dread (" + what + ")", code);
}

}  // namespace floe::h5
