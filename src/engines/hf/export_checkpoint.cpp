// floe::export_checkpoint_hf: a committed checkpoint to a Hugging Face
// export, offline and streamed. The plan (files, headers, offsets) is the one
// export_hf makes from the saved state, so the bytes are the same; the data
// moves in rounds where each rank reads one bounded slice of the file's data
// section from the checkpoint (converting dtypes if asked) into a FileWriter
// buffer, which the writer's threads write while the rank reads its next
// slices into the other buffers. No rank holds more than
// FileWriter::kBuffers slices.
#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "core/comm.hpp"
#include "core/page_memory.hpp"
#include "engines/hf/export_dir.hpp"
#include "engines/hf/file_writer.hpp"
#include "engines/hf/float_cast.hpp"
#include "engines/hf/safetensors_index.hpp"
#include "engines/hf/shard_plan.hpp"
#include "engines/hf/write_hints.hpp"
#include "floe/checkpoint.hpp"
#include "floe/error.hpp"
#include "floe/hf.hpp"
#include "floe/registry.hpp"
#include "io/mpi_file.hpp"

namespace floe {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kMinSlice = 64;
constexpr std::uint64_t kMaxSlice = 1ull << 30;

// What agree_mpi names when `call` on `path` failed.
std::string failed(const fs::path& path, const char* call) {
  return path.string() + ": " + call + " failed";
}

// Streams one planned file from the checkpoint into `path`.
class FileStreamer {
 public:
  FileStreamer(const Comm& comm, CheckpointReader& reader,
               const std::vector<const TensorRecord*>& sources,
               const hf::ExportPlan& plan, std::size_t file,
               std::uint64_t slice)
      : comm_(comm),
        reader_(reader),
        sources_(sources),
        plan_(plan),
        file_(plan.files[file]),
        slice_(slice) {
    // The file's tensors by where their data lies (they tile the section).
    order_ = file_.tensors;
    std::sort(order_.begin(), order_.end(), [&](std::size_t a, std::size_t b) {
      return plan_.tensors[a].begin < plan_.tensors[b].begin;
    });
  }

  void write(const fs::path& path, PageBytes& source) {
    MPI_File fh = MPI_FILE_NULL;
    // One contiguous slice per rank per round.
    const std::uint64_t ranks = static_cast<std::uint64_t>(comm_.size());
    const MpiInfo info = hf::write_hints(slice_ * ranks, ranks);
    check_open_on_every_rank(comm_.get(), path, MpiFile::Mode::kCreate);
    agree_mpi(comm_,
              MPI_File_open(comm_.get(), path.c_str(),
                            MPI_MODE_CREATE | MPI_MODE_WRONLY, info.get(), &fh),
              failed(path, "MPI_File_open"));
    try {
      agree_mpi(comm_,
                MPI_File_set_size(fh, static_cast<MPI_Offset>(file_.size)),
                failed(path, "MPI_File_set_size"));
      int rc = MPI_SUCCESS;
      if (comm_.rank() == 0) {
        MPI_Status status;
        rc = MPI_File_write_at(fh, 0, file_.header.data(),
                               static_cast<int>(file_.header.size()), MPI_BYTE,
                               &status);
        if (rc == MPI_SUCCESS &&
            bytes_written(status, file_.header.size()) != file_.header.size()) {
          rc = MPI_ERR_IO;
        }
      }
      agree_mpi(comm_, rc, failed(path, "MPI_File_write_at (header)"));
      std::string written;  // the writer's error, if any
      {
        // A slice fits a buffer wherever it starts (room() >= slice). Made
        // under agreement: a rank whose writer cannot start (no memory for
        // its buffers, no thread) must not leave the others in stream().
        std::optional<hf::FileWriter> writer;
        collectively(comm_, [&] {
          writer.emplace(path, slice_ + hf::FileWriter::kAlign);
        });
        stream(*writer, source);
        written = writer->finish();
      }
      agree_on_error(comm_, written.empty() ? nullptr
                                            : std::make_exception_ptr(Error(
                                                  ErrorCode::kIo, written)));
      agree_mpi(comm_, MPI_File_sync(fh), failed(path, "MPI_File_sync"));
    } catch (...) {
      // Every rank is here: each step above agrees on its failure.
      MPI_File_close(&fh);
      throw;
    }
    agree_mpi(comm_, MPI_File_close(&fh), failed(path, "MPI_File_close"));
  }

 private:
  // The rounds: this rank's slice of each read into a writer buffer and
  // handed over, so the writer's threads write it while the next is read.
  void stream(hf::FileWriter& writer, PageBytes& source) {
    const std::uint64_t data_start = file_.header.size();
    const std::uint64_t data_bytes = file_.size - data_start;
    const auto ranks = static_cast<std::uint64_t>(comm_.size());
    const auto rank = static_cast<std::uint64_t>(comm_.rank());
    const std::uint64_t per_round = slice_ * ranks;
    const std::uint64_t rounds = (data_bytes + per_round - 1) / per_round;
    std::size_t next = 0;  // first tensor of order_ not yet finished
    for (std::uint64_t round = 0; round < rounds; ++round) {
      const std::uint64_t round_begin = round * per_round;
      const std::uint64_t round_end =
          std::min(round_begin + per_round, data_bytes);
      const std::uint64_t mine_begin =
          std::min(round_begin + rank * slice_, round_end);
      const std::uint64_t mine_end = std::min(mine_begin + slice_, round_end);
      unsigned char* const slice = writer.acquire(data_start + mine_begin);
      // Every tensor whose data meets this round, in the same order on every
      // rank (the reads are collective); each rank asks for its part only.
      for (std::size_t k = next; k < order_.size(); ++k) {
        const hf::PlannedTensor& t = plan_.tensors[order_[k]];
        if (t.begin >= round_end) break;
        if (t.nbytes == 0 || t.begin + t.nbytes <= round_begin) continue;
        read_part(t, mine_begin, mine_end, slice, source);
        if (t.begin + t.nbytes <= round_end) next = k + 1;
      }
      writer.submit(mine_end - mine_begin);
    }
  }

  // Collective: fills this rank's bytes [begin, end) of the data section
  // that tensor `t` covers (possibly none) from the checkpoint.
  void read_part(const hf::PlannedTensor& t, std::uint64_t begin,
                 std::uint64_t end, unsigned char* slice,
                 PageBytes& source) {
    const std::uint64_t lo = std::max(begin, t.begin);
    const std::uint64_t hi = std::max(lo, std::min(end, t.begin + t.nbytes));
    const std::size_t out_size = dtype_size(t.dtype);
    const std::size_t in_size = dtype_size(t.source_dtype);
    // Slices start at multiples of 8 bytes and every tensor at a multiple of
    // its element size (plan_export), so these divide exactly.
    const std::uint64_t count = (hi - lo) / out_size;
    std::vector<Box> boxes;  // none when this rank's slice misses the tensor
    if (count > 0) {
      const std::uint64_t first = (lo - t.begin) / out_size;
      boxes = flat_range_to_boxes(t.shape, FlatRange{first, first + count});
    }
    unsigned char* out = slice + (count > 0 ? lo - begin : 0);
    const TensorRecord& record = *sources_[t.source];
    const bool cast = t.dtype != t.source_dtype;
    // Without room to cast from, this rank still joins the (collective)
    // read, reading nothing, and the failure is agreed on after it.
    std::exception_ptr no_room;
    if (cast && source.size() < count * in_size) {
      try {
        source.resize(count * in_size);
      } catch (...) {
        no_room = std::current_exception();
        boxes.clear();
      }
    }
    collectively(comm_, [&] {
      reader_.read(record, boxes, cast ? source.data() : out);
      if (no_room) std::rethrow_exception(no_room);
      if (cast) {
        hf::cast_elements(source.data(), t.source_dtype, out, t.dtype, count);
      }
    });
  }

  const Comm& comm_;
  CheckpointReader& reader_;
  const std::vector<const TensorRecord*>& sources_;
  const hf::ExportPlan& plan_;
  const hf::PlannedFile& file_;
  std::uint64_t slice_;
  std::vector<std::size_t> order_;
};

}  // namespace

HfExportSummary export_checkpoint_hf(const fs::path& checkpoint,
                                     const fs::path& dir, MPI_Comm mpi_comm,
                                     const HfExportOptions& options) {
  const Comm comm(mpi_comm);
  const auto fs = posix_file_system();
  OpenCheckpoint ckpt = open_checkpoint(checkpoint, mpi_comm, *fs);
  std::vector<TensorSpec> specs;
  std::vector<const TensorRecord*> sources;
  for (const TensorRecord& t : ckpt.manifest.tensors) {
    if (t.spec.group != TensorGroup::kModel) continue;
    specs.push_back(t.spec);
    sources.push_back(&t);
  }
  const hf::ExportPlan plan =
      collectively(comm, [&] { return hf::plan_export(specs, options); });
  hf::prepare_export_dir(comm, dir, options.overwrite, *fs);
  const std::vector<std::string> copied =
      hf::copy_files_on_rank0(comm, options.copy_files, dir, plan, *fs);

  // The writer's buffers (one being read into, the others written) share
  // round_bytes. A multiple of 8 bytes, so every slice starts on an element
  // boundary; of 4 KiB when large, so consecutive slices keep the same
  // alignment.
  std::uint64_t slice = std::clamp(options.round_bytes, kMinSlice, kMaxSlice) /
                        hf::FileWriter::kBuffers;
  slice = slice >= 2 * hf::FileWriter::kAlign
              ? slice / hf::FileWriter::kAlign * hf::FileWriter::kAlign
              : slice / 8 * 8;
  PageBytes source;  // what a read fills before a cast
  HfExportSummary summary;
  for (std::size_t f = 0; f < plan.files.size(); ++f) {
    FileStreamer(comm, *ckpt.reader, sources, plan, f, slice)
        .write(dir / plan.files[f].name, source);
    summary.files.push_back(plan.files[f].name);
  }
  if (!plan.index_json.empty()) {
    collectively(comm, [&] {
      if (comm.rank() == 0)
        fs->write_file(dir / hf::kIndexFileName, plan.index_json);
    });
    summary.files.push_back(hf::kIndexFileName);
  }
  summary.files.insert(summary.files.end(), copied.begin(), copied.end());
  summary.total_size = plan.total_size;
  summary.tensors = plan.tensors.size();
  return summary;
}

}  // namespace floe
