// Reads mpiio checkpoints: each requested box is assembled from the saved
// pieces it overlaps, reading only the overlapping bytes. Reads are
// independent, so they go through plain bounds-checked pread: every run is
// a large contiguous one when layouts match, and MPI-IO adds nothing there.
// Being independent and thread-safe, they let load() read on a thread of
// its own (reads_independently), which hands over many tensors at a time
// (read_some: one preadv for runs that follow each other in the file).
#include <map>
#include <mutex>
#include <vector>

#include "commit/paths.hpp"
#include "engines/mpiio/mpiio_engine.hpp"
#include "floe/error.hpp"
#include "io/gathered_read.hpp"
#include "io/read_only_file.hpp"
#include "io/run_planner.hpp"

namespace floe {
namespace {

// The file every piece of `manifest` lies in; empty when they lie in
// several (or there are none).
std::string single_data_file(const Manifest& manifest) {
  const std::string* name = nullptr;
  for (const auto& tensor : manifest.tensors) {
    for (const auto& piece : tensor.pieces) {
      if (!name) {
        name = &piece.file;
      } else if (piece.file != *name) {
        return "";
      }
    }
  }
  return name ? *name : "";
}

class MpiioReader : public CheckpointReader, public RunPlanner {
 public:
  MpiioReader(std::filesystem::path dir, std::string single_file, bool direct_io)
      : dir_(std::move(dir)), single_file_(std::move(single_file)), direct_io_(direct_io) {}

  void read(const TensorRecord& tensor, const std::vector<Box>& boxes,
            void* out) override {
    Pending pending;
    OpenFile file;
    for_each_run(tensor, boxes, out, file,
                 [&](const ReadOnlyFile& file, std::uint64_t at, char* into,
                     std::uint64_t n) { pending.add(file, at, into, n); });
    pending.flush();
  }

  // Gathers the runs of every request, sorts them by place in the file and
  // reads each stretch of runs that lie one after the other (small gaps
  // included, read into scratch) with one preadv: where read() makes one
  // pread per tensor, 20,000 small tensors saved back to back take ~20
  // preadv calls. A failure is not pinned to a request here, so the
  // requests are then read one by one as read() reads them: the first to
  // fail ends the prefix (or throws, if it is the first), with read()'s own
  // error.
  // Counted in stats() (read_some of one request is read() alone, counted
  // in neither).
  std::size_t read_some(const ReadRequest* requests, std::size_t count) override {
    if (count == 1) return read_each(requests, 1);
    std::size_t gathered_reads = 0;
    try {
      std::vector<FileRun> runs;
      OpenFile file;  // tensors saved together share a file: one lookup
      for (std::size_t i = 0; i < count; ++i) {
        const ReadRequest& r = requests[i];
        for_each_run(*r.tensor, r.boxes, r.out, file,
                     [&](const ReadOnlyFile& file, std::uint64_t at, char* into,
                         std::uint64_t n) { append_run(runs, file, at, into, n); });
      }
      gathered_reads = read_gathered(runs);
    } catch (...) {
      counter_.count_fallback(count);
      return read_each(requests, count);
    }
    counter_.count_batch(count, gathered_reads);
    return count;
  }

  GatheredReadStats stats() const { return counter_.stats(); }

  const ReadOnlyFile* exchange_file() override {
    return single_file_.empty() ? nullptr : &open(single_file_);
  }

  bool append_runs(const ReadRequest& request, std::vector<FileRun>& runs) override {
    OpenFile file;
    for_each_run(*request.tensor, request.boxes, request.out, file,
                 [&](const ReadOnlyFile& file, std::uint64_t at, char* into,
                     std::uint64_t n) { append_run(runs, file, at, into, n); });
    return true;
  }

  bool reads_independently() const override { return true; }

  std::vector<std::uint8_t> read_blob(const BlobRecord& blob) override {
    std::vector<std::uint8_t> bytes(blob.nbytes);
    open(blob.file).read_exact(blob.offset, blob.nbytes, bytes.data());
    return bytes;
  }

 private:
  // The file of the piece last read, by its name in the manifest (which
  // outlives a read): one for the pieces of one call.
  struct OpenFile {
    const ReadOnlyFile* file = nullptr;
    const std::string* name = nullptr;
  };

  // Calls sink(file, offset, memory, bytes) for each run of `tensor`'s
  // saved pieces that the elements of `boxes` need, `out` being where those
  // elements go (box after box, row-major in each). `open_file` carries
  // the last piece's file from one call to the next.
  template <typename Sink>
  void for_each_run(const TensorRecord& tensor, const std::vector<Box>& boxes, void* out,
                    OpenFile& open_file, Sink&& sink) {
    const std::size_t element = dtype_size(tensor.spec.dtype);
    auto* bytes = static_cast<char*>(out);
    std::uint64_t out_at = 0;  // elements
    const ReadOnlyFile*& file = open_file.file;
    for (const Box& want : boxes) {
      for (const auto& piece : tensor.pieces) {
        // Pieces of a tensor usually share one file: one lookup for them.
        if (!file || piece.file != *open_file.name) {
          file = &open(piece.file);
          open_file.name = &piece.file;
        }
        std::uint64_t piece_at = 0;
        const auto read_overlap = [&](const Box& have) {
          for_each_overlap_run(have, want, [&](std::uint64_t have_at,
                                               std::uint64_t want_at,
                                               std::uint64_t n) {
            sink(*file, piece.offset + (piece_at + have_at) * element,
                 bytes + (out_at + want_at) * element, n * element);
          });
          piece_at += have.elements();
        };
        // A box piece (the usual kind) is used as it is, without a list.
        if (piece.region.kind() == Region::Kind::kBox) {
          read_overlap(piece.region.as_box());
        } else {
          for (const Box& have : piece.region.boxes(tensor.spec.shape)) read_overlap(have);
        }
      }
      out_at += want.elements();
    }
  }

  // Merges runs adjacent in both the file and memory into one read.
  struct Pending {
    const ReadOnlyFile* file = nullptr;
    std::uint64_t offset = 0;
    char* memory = nullptr;
    std::uint64_t length = 0;

    void add(const ReadOnlyFile& f, std::uint64_t at, char* into, std::uint64_t n) {
      if (file == &f && offset + length == at && memory + length == into) {
        length += n;
        return;
      }
      flush();
      file = &f;
      offset = at;
      memory = into;
      length = n;
    }
    void flush() {
      if (length > 0) file->read_exact(offset, length, memory);
      length = 0;
    }
  };

  // Thread-safe; a file stays open (and its reference valid) until the
  // reader is destroyed.
  const ReadOnlyFile& open(const std::string& name) {
    std::lock_guard<std::mutex> lock(files_mutex_);
    auto it = files_.find(name);
    if (it == files_.end()) {
      const auto path = resolve_inside(dir_, name, "mpiio checkpoint");
      it = files_.emplace(name, ReadOnlyFile(path, direct_io_)).first;
    }
    return it->second;
  }

  std::filesystem::path dir_;
  std::string single_file_;  // see single_data_file()
  bool direct_io_;           // ReadContext::direct_io
  std::mutex files_mutex_;
  std::map<std::string, ReadOnlyFile> files_;
  GatheredReadCounter counter_;
};

}  // namespace

std::unique_ptr<CheckpointReader> open_mpiio_reader(const ReadContext& ctx) {
  return std::make_unique<MpiioReader>(ctx.dir, single_data_file(ctx.manifest), ctx.direct_io);
}

GatheredReadStats mpiio_read_stats(const CheckpointReader& reader) {
  const auto* mpiio = dynamic_cast<const MpiioReader*>(&reader);
  if (!mpiio) {
    throw Error(ErrorCode::kInvalidArgument,
                "mpiio_read_stats: the reader is not one of open_mpiio_reader");
  }
  return mpiio->stats();
}

}  // namespace floe
