#include "engines/hf/write_runs.hpp"

#include <algorithm>

#include "engines/hf/box_runs.hpp"
#include "engines/hf/float_cast.hpp"
#include "floe/error.hpp"

namespace floe::hf {

std::vector<WriteRun> runs_for_file(const ExportPlan& plan, std::size_t file,
                                    const GlobalLayout& layout,
                                    const State& state, int rank) {
  const PlannedFile& f = plan.files[file];
  std::vector<WriteRun> runs;
  if (rank == 0) {
    runs.push_back(
        WriteRun{0, f.header.size(),
                 reinterpret_cast<const unsigned char*>(f.header.data()),
                 DType::kU8, DType::kU8});
  }
  for (const std::size_t i : f.tensors) {
    const PlannedTensor& t = plan.tensors[i];
    const TensorLayout& tensor = layout.tensors[t.source];
    for (const Piece& piece : tensor.pieces) {
      if (piece.rank != rank || !piece.writer) continue;
      const TensorShard* shard = state.find(tensor.spec.key());
      if (!shard) {
        throw Error(ErrorCode::kInternal, "tensor \"" + tensor.spec.key() +
                                              "\": in the layout for rank " +
                                              std::to_string(rank) +
                                              " but not in its state");
      }
      const auto* data = reinterpret_cast<const unsigned char*>(shard->data());
      const std::size_t in_size = dtype_size(t.source_dtype);
      const std::size_t out_size = dtype_size(t.dtype);
      std::uint64_t buffer_element = 0;
      for (const Box& box : piece.region.boxes(t.shape)) {
        for_each_run(t.shape, box, [&](const Run& run) {
          runs.push_back(
              WriteRun{t.file_offset + run.tensor_element * out_size, run.count,
                       data + (buffer_element + run.box_element) * in_size,
                       t.source_dtype, t.dtype});
        });
        buffer_element += box.elements();
      }
    }
  }
  // Tensors are laid out by element size, not in state order: sort.
  std::sort(runs.begin(), runs.end(), [](const WriteRun& a, const WriteRun& b) {
    return a.file_offset < b.file_offset;
  });
  return runs;
}

std::uint64_t run_bytes(const std::vector<WriteRun>& runs) {
  std::uint64_t total = 0;
  for (const auto& r : runs) total += r.bytes();
  return total;
}

std::uint64_t RunPacker::pack(unsigned char* out, std::uint64_t capacity) {
  std::uint64_t used = 0;
  while (run_ < runs_.size()) {
    const WriteRun& r = runs_[run_];
    const std::size_t in_size = dtype_size(r.from);
    const std::size_t out_size = dtype_size(r.to);
    const std::uint64_t n =
        std::min(r.count - element_, (capacity - used) / out_size);
    if (n == 0 && r.count > element_) break;  // the next element does not fit
    cast_elements(r.src + element_ * in_size, r.from, out + used, r.to, n);
    used += n * out_size;
    element_ += n;
    if (element_ == r.count) {
      ++run_;
      element_ = 0;
    }
  }
  return used;
}

std::uint64_t rounds_needed(std::uint64_t bytes, std::uint64_t capacity) {
  const std::uint64_t per_round = capacity - 7;  // whole elements of <= 8 bytes
  return (bytes + per_round - 1) / per_round;
}

}  // namespace floe::hf
