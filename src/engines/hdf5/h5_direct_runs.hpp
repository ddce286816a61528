// What the hdf5 reader's direct reads (pread at a dataset's storage
// offset) need per tensor, kept free of allocations: a load of 20,000 small
// tensors calls each once per tensor.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "floe/dtype.hpp"
#include "floe/region.hpp"
#include "floe/state.hpp"

namespace floe::h5 {

// Calls emit(file offset, memory, bytes) for each run of `boxes` (into
// `out`, box after box) of a tensor whose contiguous storage starts at file
// offset `storage`, in order; the caller merges runs that continue each
// other. `whole` is scratch for the tensor's full box, which a caller
// reading many tensors keeps from one to the next (its two lists are then
// not allocated per tensor).
template <typename Emit>
void each_run(const TensorSpec& spec, std::uint64_t storage, const std::vector<Box>& boxes,
              void* out, Box& whole, Emit&& emit) {
  const std::uint64_t element = dtype_size(spec.dtype);
  whole.offset.assign(spec.shape.size(), 0);
  whole.extent = spec.shape;
  auto* bytes = static_cast<char*>(out);
  std::uint64_t at = 0;  // elements of `out` before this box
  for (const Box& box : boxes) {
    for_each_overlap_run(whole, box, [&](std::uint64_t whole_at, std::uint64_t box_at,
                                         std::uint64_t n) {
      emit(storage + whole_at * element, bytes + (at + box_at) * element, n * element);
    });
    at += box.elements();
  }
}

// Appends spec.key() to `out`, in key_is()'s spelling, with no string of
// its own.
inline void append_key(std::string& out, const TensorSpec& spec) {
  if (spec.group == TensorGroup::kModel) {
    out += "model/";
    out += spec.name;
    return;
  }
  out += "optimizer/";
  out += spec.name;
  out += '/';
  out += spec.opt_key;
}

// Whether `key` is spec.key(), without building it (one allocation per
// tensor read): the same spelling, "model/<name>" or
// "optimizer/<name>/<opt_key>".
inline bool key_is(std::string_view key, const TensorSpec& spec) {
  const std::string_view name = spec.name;
  if (spec.group == TensorGroup::kModel) {
    constexpr std::string_view prefix = "model/";
    return key.size() == prefix.size() + name.size() &&
           key.substr(0, prefix.size()) == prefix && key.substr(prefix.size()) == name;
  }
  constexpr std::string_view prefix = "optimizer/";
  const std::string_view opt_key = spec.opt_key;
  return key.size() == prefix.size() + name.size() + 1 + opt_key.size() &&
         key.substr(0, prefix.size()) == prefix &&
         key.substr(prefix.size(), name.size()) == name &&
         key[prefix.size() + name.size()] == '/' &&
         key.substr(prefix.size() + name.size() + 1) == opt_key;
}

}  // namespace floe::h5
