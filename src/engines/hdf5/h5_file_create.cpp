#include "engines/hdf5/h5_file_create.hpp"

#include <vector>

#include "engines/hdf5/h5_types.hpp"
#include "engines/hdf5/hdf5_format.hpp"
#include "io/mpi_file.hpp"

namespace floe::h5 {

CreateLists create_lists() {
  CreateLists lists;
  lists.link = Plist(check_id(H5Pcreate(H5P_LINK_CREATE), "H5Pcreate (link)"));
  check(H5Pset_create_intermediate_group(lists.link.get(), 1),
        "H5Pset_create_intermediate_group");
  check(H5Pset_char_encoding(lists.link.get(), H5T_CSET_UTF8),
        "H5Pset_char_encoding");
  lists.dataset =
      Plist(check_id(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate (dataset)"));
  check(H5Pset_layout(lists.dataset.get(), H5D_CONTIGUOUS), "H5Pset_layout");
  // Parallel HDF5 allocates early anyway; fill values would be one more
  // collective write of every byte.
  check(H5Pset_alloc_time(lists.dataset.get(), H5D_ALLOC_TIME_EARLY),
        "H5Pset_alloc_time");
  check(H5Pset_fill_time(lists.dataset.get(), H5D_FILL_TIME_NEVER),
        "H5Pset_fill_time");
  // No modification-time message in each dataset's object header: one
  // message less to build and write per tensor (h5py never needs it).
  check(H5Pset_obj_track_times(lists.dataset.get(), false),
        "H5Pset_obj_track_times");
  return lists;
}

Dataset create_dataset(hid_t file, const CreateLists& lists,
                       const std::string& path, hid_t type, const Shape& shape,
                       const std::string& where) {
  Space space;
  if (shape.empty()) {
    space = Space(check_id(H5Screate(H5S_SCALAR), "H5Screate (" + where + ")"));
  } else {
    const std::vector<hsize_t> dims(shape.begin(), shape.end());
    space = Space(check_id(
        H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
        "H5Screate_simple (" + where + ")"));
  }
  return Dataset(
      check_id(H5Dcreate2(file, path.c_str(), type, space.get(),
                          lists.link.get(), lists.dataset.get(), H5P_DEFAULT),
               "H5Dcreate2 (" + where + ")"));
}

// /model and /optimizer list their members in creation (state-dict) order
// for h5py; /scalars holds the scalars as attributes; /ranks the blobs.
// Creation order is tracked but not indexed: an index is one more B-tree
// insert per tensor on save, and HDF5 iterates a group in creation order
// without one (it sorts the links, as h5py's list(group) asks).
void create_top_groups(hid_t file, const std::string& where) {
  Plist ordered(check_id(H5Pcreate(H5P_GROUP_CREATE), "H5Pcreate (group)"));
  check(H5Pset_link_creation_order(ordered.get(), H5P_CRT_ORDER_TRACKED),
        "H5Pset_link_creation_order");
  for (const char* name : {"/model", "/optimizer", "/scalars", "/ranks"}) {
    const bool tensors = name[1] == 'm' || name[1] == 'o';
    Group group(
        check_id(H5Gcreate2(file, name, H5P_DEFAULT,
                            tensors ? ordered.get() : H5P_DEFAULT, H5P_DEFAULT),
                 std::string("H5Gcreate2 ") + name + " (" + where + ")"));
    group.close(std::string("H5Gclose ") + name);
  }
}

namespace {

void write_scalars(hid_t file, const RankReport& root, const std::string& where) {
  Group scalars(
      check_id(H5Gopen2(file, "/scalars", H5P_DEFAULT), "H5Gopen2 /scalars"));
  for (const auto& [name, value] : root.scalars) {
    write_scalar_attribute(scalars.get(), name, value, "/scalars in " + where);
  }
  scalars.close("H5Gclose /scalars");
}

}  // namespace

void write_root_attributes(hid_t file, const GlobalLayout& layout,
                           const RankReport& root, const std::string& where) {
  write_string_attribute(file, kFormatAttribute, kFormatName, where);
  write_scalar_attribute(file, kFormatVersionAttribute,
                         static_cast<std::int64_t>(kFormatVersion), where);
  write_scalar_attribute(file, kWorldSizeAttribute,
                         static_cast<std::int64_t>(layout.world_size), where);
  write_string_attribute(file, kMetadataAttribute, root.metadata, where);
  write_scalars(file, root, where);
}

void rewrite_root_attributes(hid_t file, const RankReport& root,
                             const std::string& where) {
  check(H5Adelete(file, kMetadataAttribute),
        std::string("H5Adelete ") + kMetadataAttribute + " (" + where + ")");
  write_string_attribute(file, kMetadataAttribute, root.metadata, where);
  {
    Group scalars(check_id(H5Gopen2(file, "/scalars", H5P_DEFAULT),
                           "H5Gopen2 /scalars (" + where + ")"));
    H5O_info_t info;
    check(H5Oget_info2(scalars.get(), &info, H5O_INFO_NUM_ATTRS),
          "H5Oget_info2 /scalars (" + where + ")");
    for (hsize_t i = 0; i < info.num_attrs; ++i) {
      check(H5Adelete_by_idx(scalars.get(), ".", H5_INDEX_NAME, H5_ITER_INC, 0,
                             H5P_DEFAULT),
            "H5Adelete_by_idx /scalars (" + where + ")");
    }
    scalars.close("H5Gclose /scalars");
  }
  write_scalars(file, root, where);
}

hsize_t metadata_block_bytes(std::uint64_t objects) {
  // An object header with its floe_dtype attribute, its link in the group's
  // heap and index: ~350 bytes in a file of 20,000 small tensors.
  constexpr std::uint64_t kPerObject = 512;
  constexpr hsize_t kLeast = 2048, kMost = 1 << 20;
  const std::uint64_t wanted = objects * kPerObject / 8;
  hsize_t block = kLeast;
  while (block < kMost && block < wanted) block *= 2;
  return block;
}

File create_file(const std::filesystem::path& path, MPI_Comm comm,
                 const Hdf5Options& options, std::uint64_t objects) {
  check_open_on_every_rank(comm, path, MpiFile::Mode::kCreate);
  const Plist fapl = file_access(comm, options, /*for_writing=*/true);
  check(H5Pset_meta_block_size(fapl.get(), metadata_block_bytes(objects)),
        "H5Pset_meta_block_size");
  return File(
      check_id(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()),
               "H5Fcreate " + path.string()));
}

File open_file_to_write(const std::filesystem::path& path, MPI_Comm comm,
                        const Hdf5Options& options) {
  check_open_on_every_rank(comm, path, MpiFile::Mode::kWrite);
  const Plist fapl = file_access(comm, options, /*for_writing=*/true);
  return File(check_id(H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl.get()),
                       "H5Fopen " + path.string()));
}

}  // namespace floe::h5
