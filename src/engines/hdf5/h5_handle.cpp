#include "engines/hdf5/h5_handle.hpp"

namespace floe::h5 {
namespace {

// Appends "function(): description" for each entry, outermost first.
herr_t append_entry(unsigned /*n*/, const H5E_error2_t* entry, void* data) {
  auto& out = *static_cast<std::string*>(data);
  if (!out.empty()) out += "; ";
  out += entry->func_name ? entry->func_name : "?";
  out += "(): ";
  out += entry->desc ? entry->desc : "";
  char minor[128];
  if (H5Eget_msg(entry->min_num, nullptr, minor, sizeof minor) > 0) {
    out += std::string(" (") + minor + ")";
  }
  return 0;
}

[[noreturn]] void fail(const std::string& what, ErrorCode code) {
  throw_error(what, error_stack(), code);
}

}  // namespace

std::string error_stack() {
  std::string out;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, append_entry, &out);
  H5Eclear2(H5E_DEFAULT);
  return out;
}

void throw_error(const std::string& what, const std::string& stack,
                 ErrorCode code) {
  throw Error(
      code,
      what + ": " + (stack.empty() ? std::string("HDF5 call failed") : stack));
}

hid_t check_id(hid_t id, const std::string& what, ErrorCode code) {
  if (id < 0) fail(what, code);
  return id;
}

void check(herr_t status, const std::string& what, ErrorCode code) {
  if (status < 0) fail(what, code);
}

bool check_tri(htri_t result, const std::string& what, ErrorCode code) {
  if (result < 0) fail(what, code);
  return result > 0;
}

QuietErrors::QuietErrors() {
  if (H5Eget_auto2(H5E_DEFAULT, &saved_func_, &saved_data_) < 0) {
    saved_func_ = nullptr;
    saved_data_ = nullptr;
  }
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

QuietErrors::~QuietErrors() {
  H5Eset_auto2(H5E_DEFAULT, saved_func_, saved_data_);
}

}  // namespace floe::h5
