// What a stored dataset must be for the hdf5 reader to read it, and where
// its bytes lie (see h5_dataset_check.hpp).
#include "engines/hdf5/h5_dataset_check.hpp"

#include "core/shape_text.hpp"
#include "engines/hdf5/h5_types.hpp"
#include "engines/hdf5/hdf5_format.hpp"
#include "floe/error.hpp"

namespace floe::h5 {
namespace {

// True when every link of `path` exists (H5Lexists checks only the last).
bool dataset_exists(hid_t file, const std::string& path, hid_t access,
                    const std::string& where) {
  if (path.empty() || path[0] != '/') return false;
  for (std::size_t slash = path.find('/', 1);;
       slash = path.find('/', slash + 1)) {
    const std::string prefix = path.substr(0, slash);
    if (!check_tri(H5Lexists(file, prefix.c_str(), access),
                   "H5Lexists (" + where + ")", ErrorCode::kCorrupt)) {
      return false;
    }
    if (slash == std::string::npos) return true;
  }
}

}  // namespace

Dataset open_dataset(hid_t file, const std::string& path, hid_t access,
                     const std::string& file_text, const std::string& owner) {
  const std::string where = "dataset " + path + " in " + file_text;
  // Open first; the link-by-link existence check (a few more metadata
  // lookups) only runs to explain a failed open.
  const hid_t id = H5Dopen2(file, path.c_str(), access);
  if (id >= 0) return Dataset(id);
  const std::string stack = error_stack();
  if (!dataset_exists(file, path, access, where)) {
    throw Error(ErrorCode::kCorrupt,
                file_text + " has no dataset " + path + " (" + owner + ")");
  }
  throw Error(ErrorCode::kCorrupt, "H5Dopen2 (" + where + "): " + stack);
}

Shape extent_of(hid_t dataset, const std::string& where) {
  Space space(check_id(H5Dget_space(dataset), "H5Dget_space (" + where + ")",
                       ErrorCode::kCorrupt));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0)
    throw Error(ErrorCode::kCorrupt, where + " has no simple dataspace");
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  check(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr),
        "H5Sget_simple_extent_dims (" + where + ")", ErrorCode::kCorrupt);
  return Shape(dims.begin(), dims.end());
}

void check_dataset(hid_t dataset, const TensorSpec& spec,
                   const std::string& where) {
  const std::string recorded(dtype_name(spec.dtype));
  const std::string stored = read_string_attribute(dataset, kDtypeAttribute,
                                                   where, ErrorCode::kCorrupt);
  if (stored != recorded) {
    throw Error(ErrorCode::kCorrupt,
                where + " holds " + kDtypeAttribute + " \"" + stored +
                    "\" but the manifest records " + recorded);
  }
  Type type(check_id(H5Dget_type(dataset), "H5Dget_type (" + where + ")",
                     ErrorCode::kCorrupt));
  if (!check_tri(H5Tequal(type.get(), stored_type(spec.dtype).get()),
                 "H5Tequal (" + where + ")", ErrorCode::kCorrupt)) {
    throw Error(ErrorCode::kCorrupt,
                where + " is not stored as Floe stores " + recorded);
  }
  const Shape shape = extent_of(dataset, where);
  if (shape != spec.shape) {
    throw Error(ErrorCode::kCorrupt, where + " has shape " + shape_text(shape) +
                                         " but the manifest records " +
                                         shape_text(spec.shape));
  }
}

namespace {

// Whether Region::box(box).validate(shape, ...) passes, without the copy
// of the box and the key it needs to word its error: a load of 20,000
// small tensors checks 20,000 boxes (~1,000 instructions each that way).
bool box_fits(const Box& box, const Shape& shape) {
  if (box.offset.size() != shape.size() || box.extent.size() != shape.size()) return false;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    std::uint64_t end = 0;
    if (__builtin_add_overflow(box.offset[d], box.extent[d], &end) || end > shape[d]) {
      return false;
    }
  }
  return true;
}

}  // namespace

void check_request(const TensorSpec& spec, const std::vector<Box>& boxes, const void* out) {
  std::uint64_t elements = 0;
  for (const Box& box : boxes) {
    // A box that does not fit gets validate()'s own error.
    if (!box_fits(box, spec.shape)) Region::box(box).validate(spec.shape, spec.key());
    elements += box.elements();
  }
  if (elements > 0 && out == nullptr) {
    throw Error(ErrorCode::kInvalidArgument,
                "tensor \"" + spec.key() + "\": read into a null buffer");
  }
}

std::optional<std::uint64_t> contiguous_storage(hid_t dataset, const TensorSpec& spec) {
  if (spec.nbytes() == 0) return 0;
  const hid_t create = H5Dget_create_plist(dataset);
  if (create < 0) {
    H5Eclear2(H5E_DEFAULT);
    return std::nullopt;
  }
  const Plist owned(create);
  const haddr_t offset = H5Dget_offset(dataset);
  if (H5Pget_layout(create) != H5D_CONTIGUOUS || offset == HADDR_UNDEF ||
      H5Dget_storage_size(dataset) != spec.nbytes()) {
    H5Eclear2(H5E_DEFAULT);
    return std::nullopt;
  }
  return offset;
}

}  // namespace floe::h5
