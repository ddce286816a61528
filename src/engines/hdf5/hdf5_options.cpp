#include "engines/hdf5/hdf5_options.hpp"

#include <climits>

#include "core/comm.hpp"
#include "core/config_schema.hpp"

namespace floe::h5 {
namespace {

std::string power_of_two_or_off(const nlohmann::json& value) {
  const auto v = value.get<std::uint64_t>();
  if (v > 1 && (v & (v - 1)) != 0) return "must be a power of two (or 0: off)";
  return "";
}

std::string fits_int(const nlohmann::json& value) {
  if (value.get<std::uint64_t>() > static_cast<std::uint64_t>(INT_MAX)) {
    return "must be at most " + std::to_string(INT_MAX) + " (an MPI-IO hint)";
  }
  return "";
}

std::string cb_mode(const nlohmann::json& value) {
  const auto v = value.get<std::string>();
  if (v == "automatic" || v == "enable" || v == "disable") return "";
  return "must be \"automatic\", \"enable\" or \"disable\"";
}

}  // namespace

std::vector<OptionSpec> hdf5_option_specs() {
  // Counts as unsigned JSON numbers: the form validated options take.
  constexpr std::uint64_t kMiB = 1 << 20, kGiB = 1 << 30, kZero = 0;
  return {
      {"alignment", OptionKind::kBytes, kMiB,
       "align datasets of at least alignment_threshold bytes to this many "
       "bytes, e.g. the file system's stripe size (power of two; 0: off; "
       "default 1MiB)",
       power_of_two_or_off},
      {"alignment_threshold", OptionKind::kBytes, kMiB,
       "smallest dataset that is aligned (default 1MiB)"},
      {"collective_metadata", OptionKind::kBool, true,
       "collective HDF5 metadata writes on save and collective metadata "
       "reads of tensors on load (default true)"},
      {"cb_buffer_size", OptionKind::kBytes, kZero,
       "MPI-IO hint: collective buffer size per aggregator (0: MPI-IO's "
       "default)",
       fits_int},
      {"romio_cb_write", OptionKind::kString, "automatic",
       "MPI-IO hint: collective buffering of writes: automatic, enable or "
       "disable (default automatic: left to MPI-IO)",
       cb_mode},
      {"striping_factor", OptionKind::kCount, kZero,
       "MPI-IO hint: stripe count of the new file, e.g. on Lustre (0: the "
       "directory's default)",
       fits_int},
      {"striping_unit", OptionKind::kBytes, kZero,
       "MPI-IO hint: stripe size of the new file (0: the directory's default)",
       fits_int},
      {"max_transfer_bytes", OptionKind::kBytes, kGiB,
       "most bytes a rank moves in one collective write; larger pieces take "
       "several (0: no limit; default 1GiB)"},
      {"small_tensor_bytes", OptionKind::kBytes, kMiB,
       "tensors smaller than this are written together by one collective "
       "MPI-IO write into their datasets instead of one collective H5Dwrite "
       "each (0: none; default 1MiB)"},
      {"reuse_structure", OptionKind::kBool, true,
       "a save of the same tensors, shapes, dtypes and blobs as the engine's "
       "previous save copies that file's HDF5 structure instead of creating "
       "every dataset again (default true)"},
  };
}

Hdf5Options Hdf5Options::from(const EngineOptions& options) {
  nlohmann::json values = nlohmann::json::object();
  for (const auto& spec : hdf5_option_specs()) {
    auto it = options.json().find(spec.key);
    values[spec.key] = normalize_option(
        spec, it == options.json().end() ? spec.default_value : *it);
  }
  Hdf5Options out;
  out.alignment = values["alignment"].get<std::uint64_t>();
  out.alignment_threshold = values["alignment_threshold"].get<std::uint64_t>();
  out.collective_metadata = values["collective_metadata"].get<bool>();
  out.cb_buffer_size = values["cb_buffer_size"].get<std::uint64_t>();
  out.romio_cb_write = values["romio_cb_write"].get<std::string>();
  out.striping_factor = values["striping_factor"].get<std::uint64_t>();
  out.striping_unit = values["striping_unit"].get<std::uint64_t>();
  out.max_transfer_bytes = values["max_transfer_bytes"].get<std::uint64_t>();
  out.small_tensor_bytes = values["small_tensor_bytes"].get<std::uint64_t>();
  out.reuse_structure = values["reuse_structure"].get<bool>();
  return out;
}

namespace {

MpiInfo hints(const Hdf5Options& options, bool for_writing) {
  MpiInfo info;
  if (options.cb_buffer_size > 0) {
    info.set("cb_buffer_size", std::to_string(options.cb_buffer_size));
  }
  if (for_writing && options.romio_cb_write != "automatic") {
    info.set("romio_cb_write", options.romio_cb_write);
  }
  if (for_writing && options.striping_factor > 0) {
    info.set("striping_factor", std::to_string(options.striping_factor));
  }
  if (for_writing && options.striping_unit > 0) {
    info.set("striping_unit", std::to_string(options.striping_unit));
  }
  return info;
}

}  // namespace

MpiInfo write_hints(const Hdf5Options& options) { return hints(options, true); }

Plist file_access(MPI_Comm comm, const Hdf5Options& options, bool for_writing) {
  const MpiInfo info = hints(options, for_writing);
  Plist fapl(check_id(H5Pcreate(H5P_FILE_ACCESS), "H5Pcreate (file access)"));
  check(H5Pset_fapl_mpio(fapl.get(), comm, info.get()), "H5Pset_fapl_mpio");
  if (for_writing) {
    // Format 1.8 objects: readable by every HDF5 >= 1.8 (and h5py built on
    // it), with compact/dense link storage and attributes over 64 KiB.
    check(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_V18),
          "H5Pset_libver_bounds");
    if (options.alignment > 1) {
      check(H5Pset_alignment(fapl.get(), options.alignment_threshold,
                             options.alignment),
            "H5Pset_alignment");
    }
    if (options.collective_metadata) {
      check(H5Pset_coll_metadata_write(fapl.get(), true),
            "H5Pset_coll_metadata_write");
      // Every metadata operation of a save is made by all ranks. (As a
      // file-wide setting this is a no-op in HDF5 1.10.5 to 1.10.8,
      // HDFFV-11260; it takes effect where HDF5 fixed it.)
      check(H5Pset_all_coll_metadata_ops(fapl.get(), true),
            "H5Pset_all_coll_metadata_ops");
    }
  }
  return fapl;
}

}  // namespace floe::h5
