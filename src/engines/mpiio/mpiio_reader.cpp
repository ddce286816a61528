// Reads mpiio checkpoints: each requested box is assembled from the saved
// pieces it overlaps, reading only the overlapping bytes. Reads are
// independent, so they go through plain bounds-checked pread: every run is
// a large contiguous one when layouts match, and MPI-IO adds nothing there.
// Being independent and thread-safe, they let load() read on a thread of
// its own (reads_independently).
#include <map>
#include <mutex>

#include "commit/paths.hpp"
#include "engines/mpiio/mpiio_engine.hpp"
#include "floe/error.hpp"
#include "io/read_only_file.hpp"

namespace floe {
namespace {

class MpiioReader : public CheckpointReader {
 public:
  explicit MpiioReader(std::filesystem::path dir) : dir_(std::move(dir)) {}

  void read(const TensorRecord& tensor, const std::vector<Box>& boxes,
            void* out) override {
    const std::size_t element = dtype_size(tensor.spec.dtype);
    auto* bytes = static_cast<char*>(out);
    Pending pending;
    std::uint64_t out_at = 0;  // elements
    const ReadOnlyFile* file = nullptr;
    const std::string* file_name = nullptr;
    for (const Box& want : boxes) {
      for (const auto& piece : tensor.pieces) {
        // Pieces of a tensor usually share one file: one lookup for them.
        if (!file || piece.file != *file_name) {
          file = &open(piece.file);
          file_name = &piece.file;
        }
        std::uint64_t piece_at = 0;
        const auto read_overlap = [&](const Box& have) {
          for_each_overlap_run(have, want, [&](std::uint64_t have_at,
                                               std::uint64_t want_at,
                                               std::uint64_t n) {
            pending.add(*file, piece.offset + (piece_at + have_at) * element,
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
    pending.flush();
  }

  bool reads_independently() const override { return true; }

  std::vector<std::uint8_t> read_blob(const BlobRecord& blob) override {
    std::vector<std::uint8_t> bytes(blob.nbytes);
    open(blob.file).read_exact(blob.offset, blob.nbytes, bytes.data());
    return bytes;
  }

 private:
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
      it = files_.emplace(name, ReadOnlyFile(path)).first;
    }
    return it->second;
  }

  std::filesystem::path dir_;
  std::mutex files_mutex_;
  std::map<std::string, ReadOnlyFile> files_;
};

}  // namespace

std::unique_ptr<CheckpointReader> open_mpiio_reader(const ReadContext& ctx) {
  return std::make_unique<MpiioReader>(ctx.dir);
}

}  // namespace floe
