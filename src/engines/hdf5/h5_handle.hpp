// Owners for HDF5 identifiers and the one place an HDF5 return code is
// checked: a failed call becomes a floe::Error carrying HDF5's error stack.
#pragma once

#include <string>
#include <utility>

#include <hdf5.h>

#include "floe/error.hpp"

namespace floe::h5 {

// Move-only owner of one HDF5 identifier, closed with `Close`. The destructor
// never throws: a close that fails while unwinding cannot be reported, and
// the error that caused the unwinding is the one that matters. Use close()
// where a failed close must be seen (H5Fclose flushes the file).
template <herr_t (*Close)(hid_t)>
class Owner {
 public:
  Owner() = default;
  explicit Owner(hid_t id) : id_(id) {}
  ~Owner() { reset(); }
  Owner(Owner&& other) noexcept
      : id_(std::exchange(other.id_, H5I_INVALID_HID)) {}
  Owner& operator=(Owner&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
    }
    return *this;
  }
  Owner(const Owner&) = delete;
  Owner& operator=(const Owner&) = delete;

  hid_t get() const { return id_; }
  explicit operator bool() const { return id_ >= 0; }

  void reset() noexcept {
    if (id_ >= 0) Close(std::exchange(id_, H5I_INVALID_HID));
  }
  // Closes now and throws Error(kIo) naming `what` if HDF5 refuses.
  void close(const std::string& what);

 private:
  hid_t id_ = H5I_INVALID_HID;
};

using File = Owner<H5Fclose>;
using Group = Owner<H5Gclose>;
using Dataset = Owner<H5Dclose>;
using Space = Owner<H5Sclose>;
using Type = Owner<H5Tclose>;
using Attribute = Owner<H5Aclose>;
using Plist = Owner<H5Pclose>;

// HDF5's error stack of this thread as one line (innermost call last), and
// cleared. Empty when the stack is empty.
std::string error_stack();

// The checks: each HDF5 call's result goes through exactly one of them.
// On failure they throw Error(code) with "<what>: <HDF5 error stack>".
[[nodiscard]] hid_t check_id(hid_t id, const std::string& what,
                             ErrorCode code = ErrorCode::kIo);
void check(herr_t status, const std::string& what,
           ErrorCode code = ErrorCode::kIo);
// For calls returning htri_t (true, false or a negative error).
[[nodiscard]] bool check_tri(htri_t result, const std::string& what,
                             ErrorCode code = ErrorCode::kIo);
// The checks' Error, for a caller that took the stack (error_stack()) to
// act on it before throwing.
[[noreturn]] void throw_error(const std::string& what, const std::string& stack,
                              ErrorCode code);

// Turns off HDF5's printing of error stacks to stderr for its lifetime (the
// stack goes into Error messages instead) and restores the previous handler.
class QuietErrors {
 public:
  QuietErrors();
  ~QuietErrors();
  QuietErrors(const QuietErrors&) = delete;
  QuietErrors& operator=(const QuietErrors&) = delete;

 private:
  H5E_auto2_t saved_func_ = nullptr;
  void* saved_data_ = nullptr;
};

template <herr_t (*Close)(hid_t)>
void Owner<Close>::close(const std::string& what) {
  if (id_ < 0) return;
  check(Close(std::exchange(id_, H5I_INVALID_HID)), what);
}

}  // namespace floe::h5
