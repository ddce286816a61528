#include "engines/hdf5/hdf5_format.hpp"

#include <map>

#include <hdf5.h>

#include "floe/error.hpp"

namespace floe::h5 {

std::string hdf5_library_version() {
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  return std::to_string(major) + "." + std::to_string(minor) + "." +
         std::to_string(release);
}

std::string dataset_path(const TensorSpec& spec) {
  if (spec.group == TensorGroup::kModel) return "/model/" + spec.name;
  return "/optimizer/" + spec.name + "/" + spec.opt_key;
}

std::string blob_path(int rank, const std::string& name) {
  return "/ranks/" + std::to_string(rank) + "/" + name;
}

void check_dataset_paths(const std::vector<NamedPath>& paths) {
  std::map<std::string, const NamedPath*> by_path;
  for (const auto& p : paths) {
    auto bad = [&](const std::string& why) {
      throw Error(ErrorCode::kInvalidArgument,
                  p.owner + ": cannot be stored as HDF5 dataset \"" + p.path +
                      "\": " + why);
    };
    if (p.path.find('\0') != std::string::npos) bad("the name contains NUL");
    // Parts after the leading '/'.
    for (std::size_t start = 1; start <= p.path.size();) {
      std::size_t end = p.path.find('/', start);
      if (end == std::string::npos) end = p.path.size();
      const std::string part = p.path.substr(start, end - start);
      if (part.empty()) bad("a '/' in the name leaves an empty group name");
      if (part == "." || part == "..")
        bad("\"" + part + "\" cannot name a group");
      start = end + 1;
    }
    auto [it, added] = by_path.emplace(p.path, &p);
    if (!added) bad("so is " + it->second->owner);
  }
  // A path that is a group of another comes right before the paths it
  // prefixes in sorted order, though others may sit between: check each
  // path's group prefixes directly.
  for (const auto& [path, owner] : by_path) {
    for (std::size_t slash = path.find('/', 1); slash != std::string::npos;
         slash = path.find('/', slash + 1)) {
      auto it = by_path.find(path.substr(0, slash));
      if (it != by_path.end()) {
        throw Error(ErrorCode::kInvalidArgument,
                    owner->owner + ": cannot be stored as HDF5 dataset \"" +
                        path + "\": " + it->second->owner + " is stored at \"" +
                        it->first + "\", which this path needs as a group");
      }
    }
  }
}

}  // namespace floe::h5
