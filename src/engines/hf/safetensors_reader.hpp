// Reading safetensors files safely: open and validate one file, then read
// any box of any tensor with pread, touching only the bytes it needs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "io/read_only_file.hpp"
#include "engines/hf/safetensors_header.hpp"
#include "floe/dtype.hpp"
#include "floe/region.hpp"

namespace floe::hf {

// Reads the elements of `box` of a tensor of `shape` and dtype `stored`,
// held row-major at byte `file_offset` of `file`, into `out`: row-major over
// the box, converted to `out_dtype` (see float_cast.hpp; `stored` when no
// conversion is wanted). Nearby rows are read together in bounded chunks;
// memory beyond `out` stays under a few MiB. The box must lie inside
// `shape`. Throws Error(kCorrupt)/kIo as ReadOnlyFile::read_exact does.
void read_tensor_box(const ReadOnlyFile& file, std::uint64_t file_offset,
                     const Shape& shape, DType stored, const Box& box,
                     void* out, DType out_dtype);

// One safetensors file, validated when opened (safetensors_header.hpp):
// reading its tensors afterwards cannot leave the file.
class SafetensorsFile {
 public:
  // Opens and validates `path`. Reads and allocates at most the 8-byte
  // prefix plus the header length, and only once that length is known to
  // fit the file and kMaxHeaderBytes. Throws Error(kNotFound) for a missing
  // file, kCorrupt naming the file and the rule for a malformed one, kIo
  // when it cannot be read.
  explicit SafetensorsFile(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return file_.path(); }
  const SafetensorsHeader& header() const { return header_; }
  const ReadOnlyFile& file() const { return file_; }

  // Reads `box` of `tensor` (one of header().tensors) into `out` as
  // read_tensor_box does. Throws Error(kInvalidArgument) when the box does
  // not lie inside the tensor.
  void read_box(const SafetensorsTensor& tensor, const Box& box, void* out,
                DType out_dtype) const;

 private:
  ReadOnlyFile file_;
  SafetensorsHeader header_;
};

}  // namespace floe::hf
