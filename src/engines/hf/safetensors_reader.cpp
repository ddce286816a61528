#include "engines/hf/safetensors_reader.hpp"

#include <algorithm>
#include <vector>

#include "core/page_memory.hpp"
#include "engines/hf/box_runs.hpp"
#include "engines/hf/float_cast.hpp"
#include "floe/error.hpp"

namespace floe::hf {
namespace {

constexpr std::uint64_t kChunkBytes = 8u << 20;  // one coalesced read at most
constexpr std::uint64_t kGapBytes =
    64u << 10;  // bytes read and dropped to join rows

// Runs of a box, read in coalesced groups: one pread per group of runs whose
// gaps are small, through a bounce buffer, converting on the way out.
class BoxReader {
 public:
  BoxReader(const ReadOnlyFile& file, std::uint64_t base, DType stored,
            void* out, DType out_dtype)
      : file_(file),
        base_(base),
        stored_(stored),
        out_dtype_(out_dtype),
        in_size_(dtype_size(stored)),
        out_size_(dtype_size(out_dtype)),
        out_(static_cast<unsigned char*>(out)) {}

  void add(const Run& run) {
    const std::uint64_t first = base_ + run.tensor_element * in_size_;
    const std::uint64_t bytes = run.count * in_size_;
    if (!group_.empty() && (first - group_end_ > kGapBytes ||
                            first + bytes - group_first_ > kChunkBytes)) {
      flush();
    }
    if (bytes > kChunkBytes) {  // too big to bounce in one piece
      flush();
      read_large(first, run);
      return;
    }
    if (group_.empty()) group_first_ = first;
    group_.push_back(run);
    group_end_ = first + bytes;
  }

  void flush() {
    if (group_.empty()) return;
    if (group_.size() == 1 && stored_ == out_dtype_) {
      file_.read_exact(group_first_, group_end_ - group_first_,
                       dest(group_[0]));
    } else {
      bounce_.resize(group_end_ - group_first_);
      file_.read_exact(group_first_, bounce_.size(), bounce_.data());
      for (const Run& r : group_) {
        const std::uint64_t at =
            base_ + r.tensor_element * in_size_ - group_first_;
        cast_elements(bounce_.data() + at, stored_, dest(r), out_dtype_,
                      r.count);
      }
    }
    group_.clear();
  }

 private:
  unsigned char* dest(const Run& r) const {
    return out_ + r.box_element * out_size_;
  }

  void read_large(std::uint64_t first, const Run& run) {
    if (stored_ == out_dtype_) {
      file_.read_exact(first, run.count * in_size_, dest(run));
      return;
    }
    const std::uint64_t per_chunk = kChunkBytes / in_size_;
    bounce_.resize(per_chunk * in_size_);
    for (std::uint64_t done = 0; done < run.count; done += per_chunk) {
      const std::uint64_t n = std::min(per_chunk, run.count - done);
      file_.read_exact(first + done * in_size_, n * in_size_, bounce_.data());
      cast_elements(bounce_.data(), stored_, dest(run) + done * out_size_,
                    out_dtype_, n);
    }
  }

  const ReadOnlyFile& file_;
  std::uint64_t base_;
  DType stored_, out_dtype_;
  std::size_t in_size_, out_size_;
  unsigned char* out_;
  std::vector<Run> group_;
  std::uint64_t group_first_ = 0, group_end_ = 0;
  PageBytes bounce_;  // filled by reads: on a page, not zeroed
};

std::string read_header_text(const ReadOnlyFile& file, std::uint64_t& length) {
  const std::string what = file.path().string();
  unsigned char prefix[8] = {};
  if (file.size() >= 8) file.read_exact(0, 8, prefix);
  length = parse_header_length(prefix, file.size(),
                               what);  // bounded before allocating
  std::string text(length, '\0');
  file.read_exact(8, length, text.data());
  return text;
}

}  // namespace

void read_tensor_box(const ReadOnlyFile& file, std::uint64_t file_offset,
                     const Shape& shape, DType stored, const Box& box,
                     void* out, DType out_dtype) {
  if (!can_cast(stored, out_dtype)) {
    throw Error(ErrorCode::kInvalidArgument,
                file.path().string() + ": cannot convert " +
                    std::string(dtype_name(stored)) + " to " +
                    std::string(dtype_name(out_dtype)));
  }
  BoxReader reader(file, file_offset, stored, out, out_dtype);
  for_each_run(shape, box, [&](const Run& run) { reader.add(run); });
  reader.flush();
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path)
    : file_(path) {
  std::uint64_t length = 0;
  const std::string text = read_header_text(file_, length);
  header_ = parse_header(text, file_.size(), path.string());
}

void SafetensorsFile::read_box(const SafetensorsTensor& tensor, const Box& box,
                               void* out, DType out_dtype) const {
  bool inside = box.offset.size() == tensor.shape.size() &&
                box.extent.size() == tensor.shape.size();
  for (std::size_t d = 0; inside && d < tensor.shape.size(); ++d) {
    inside = box.offset[d] <= tensor.shape[d] &&
             box.extent[d] <= tensor.shape[d] - box.offset[d];
  }
  if (!inside) {
    throw Error(ErrorCode::kInvalidArgument,
                path().string() + ": tensor \"" + tensor.name +
                    "\": the box read is " + "not inside the tensor");
  }
  read_tensor_box(file_, tensor.file_offset, tensor.shape, tensor.dtype, box,
                  out, out_dtype);
}

}  // namespace floe::hf
