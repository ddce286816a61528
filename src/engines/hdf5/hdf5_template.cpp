#include "engines/hdf5/hdf5_template.hpp"

#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <utility>

#include "engines/hdf5/hdf5_format.hpp"
#include "io/checksum.hpp"
#include "io/read_only_file.hpp"

namespace floe::h5 {
namespace {

// The unit in which the image keeps or drops bytes: a block of zeros is
// left out (a new file reads zeros there).
constexpr std::uint64_t kBlock = 4096;
// The most bytes one pread brings in for the image (a multiple of kBlock).
// One read per block was ~2,000 preadv calls for the 35 MB file of 20 MiB
// in 20,000 tensors on every save from the template (file_image_xxh3),
// and the byte-by-byte zero test ~600 instructions a tensor.
constexpr std::uint64_t kReadChunk = 1ull << 20;
static_assert(kReadChunk % kBlock == 0);

struct Extent {
  std::uint64_t begin = 0, end = 0;
};

// Every dataset's storage, sorted, touching ones merged; nothing when an
// address is unknown.
std::optional<std::vector<Extent>> storage_extents(
    const GlobalLayout& layout, const std::vector<RankReport>& reports,
    const std::vector<std::uint64_t>& tensor_offsets,
    const std::vector<std::vector<std::uint64_t>>& blob_offsets) {
  std::vector<Extent> extents;
  const auto add = [&](std::uint64_t offset, std::uint64_t bytes) {
    if (bytes == 0) return true;
    if (offset == kNoStorage) return false;
    extents.push_back({offset, offset + bytes});
    return true;
  };
  if (tensor_offsets.size() != layout.tensors.size() ||
      blob_offsets.size() != reports.size()) {
    return std::nullopt;
  }
  for (std::size_t t = 0; t < layout.tensors.size(); ++t) {
    if (!add(tensor_offsets[t], layout.tensors[t].spec.nbytes()))
      return std::nullopt;
  }
  for (std::size_t r = 0; r < reports.size(); ++r) {
    if (blob_offsets[r].size() != reports[r].blobs.size()) return std::nullopt;
    for (std::size_t b = 0; b < reports[r].blobs.size(); ++b) {
      if (!add(blob_offsets[r][b], reports[r].blobs[b].nbytes))
        return std::nullopt;
    }
  }
  // Usually in order already (storage follows the datasets' creation).
  const auto by_begin = [](const Extent& a, const Extent& b) { return a.begin < b.begin; };
  if (!std::is_sorted(extents.begin(), extents.end(), by_begin)) {
    std::sort(extents.begin(), extents.end(), by_begin);
  }
  std::vector<Extent> merged;
  for (const Extent& e : extents) {
    if (!merged.empty() && e.begin <= merged.back().end) {
      merged.back().end = std::max(merged.back().end, e.end);
    } else {
      merged.push_back(e);
    }
  }
  return merged;
}

// Whether `n` bytes (at most kBlock) are all zero.
bool all_zero(const char* bytes, std::uint64_t n) {
  static const char kZeros[kBlock] = {};
  return std::memcmp(bytes, kZeros, n) == 0;
}

// Rank 0: the non-zero blocks of `file` outside `storage`, or nothing when
// they would exceed `max_bytes`. The bytes come in chunks of up to
// kReadChunk between storage extents, ending on block boundaries, and are
// kept or dropped block by block as they would be read one block at a
// time: the same image.
std::optional<std::vector<FileTemplate::Run>> read_image(
    const ReadOnlyFile& file, const std::vector<Extent>& storage,
    std::uint64_t max_bytes) {
  std::vector<FileTemplate::Run> image;
  std::uint64_t kept = 0;
  // Not zero-filled: every byte used is read first.
  const std::unique_ptr<char[]> chunk(new char[kReadChunk]);
  // Whether the last run kept ends where the next kept block starts.
  const auto append = [&](std::uint64_t offset, const char* bytes,
                          std::uint64_t n) {
    if (!image.empty() &&
        image.back().offset + image.back().bytes.size() == offset) {
      image.back().bytes.insert(image.back().bytes.end(), bytes, bytes + n);
    } else {
      image.push_back({offset, std::vector<char>(bytes, bytes + n)});
    }
    kept += n;
  };
  std::uint64_t at = 0;
  std::size_t next = 0;  // the first storage extent at or after `at`
  const std::uint64_t size = file.size();
  while (at < size) {
    while (next < storage.size() && storage[next].end <= at) ++next;
    if (next < storage.size() && storage[next].begin <= at) {
      at = storage[next].end;
      continue;
    }
    // Up to the next storage, the end, or a chunk's end on a block boundary.
    std::uint64_t stop = std::min(size, at / kBlock * kBlock + kReadChunk);
    if (next < storage.size()) stop = std::min(stop, storage[next].begin);
    file.read_exact(at, stop - at, chunk.get());
    for (std::uint64_t from = at; from < stop;) {
      // Up to the next block boundary or the chunk's end.
      const std::uint64_t end = std::min(stop, (from / kBlock + 1) * kBlock);
      const char* bytes = chunk.get() + (from - at);
      if (!all_zero(bytes, end - from)) {
        if (kept + (end - from) > max_bytes) return std::nullopt;
        append(from, bytes, end - from);
      }
      from = end;
    }
    at = stop;
  }
  return image;
}

void add_u64(Xxh3Stream& hash, std::uint64_t value) {
  unsigned char bytes[8];
  for (int i = 0; i < 8; ++i)
    bytes[i] = static_cast<unsigned char>(value >> (8 * i));
  hash.update(bytes, sizeof bytes);
}

}  // namespace

std::uint64_t image_xxh3(const std::vector<FileTemplate::Run>& image,
                         std::uint64_t file_size) {
  Xxh3Stream hash;
  for (const FileTemplate::Run& run : image) {
    add_u64(hash, run.offset);
    add_u64(hash, run.bytes.size());
    hash.update(run.bytes.data(), run.bytes.size());
  }
  add_u64(hash, file_size);
  return hash.digest();
}

std::string describe_structure(const GlobalLayout& layout,
                               const std::vector<RankReport>& reports,
                               const Hdf5Options& options) {
  std::string out = std::string(kFormatName) + ' ' +
                    std::to_string(kFormatVersion) + " hdf5 " +
                    hdf5_library_version() + " alignment " +
                    std::to_string(options.alignment) + ' ' +
                    std::to_string(options.alignment_threshold) + " ranks " +
                    std::to_string(reports.size()) + '\n';
  for (const auto& tensor : layout.tensors) {
    out += dataset_path(tensor.spec);
    out += '\0';
    out += dtype_name(tensor.spec.dtype);
    for (const std::uint64_t d : tensor.spec.shape) {
      out += ' ';
      out += std::to_string(d);
    }
    out += '\n';
  }
  for (std::size_t r = 0; r < reports.size(); ++r) {
    for (const auto& blob : reports[r].blobs) {
      out += blob_path(static_cast<int>(r), blob.name);
      out += '\0';
      out += std::to_string(blob.nbytes);
      out += '\n';
    }
  }
  return out;
}

std::optional<FileTemplate> capture_template(
    const Comm& comm, const std::filesystem::path& path, std::string structure,
    const GlobalLayout& layout, const std::vector<RankReport>& reports,
    std::vector<std::uint64_t> tensor_offsets,
    std::vector<std::vector<std::uint64_t>> blob_offsets,
    std::uint64_t max_image_bytes,
    std::optional<std::uint64_t> expected_image_xxh3) {
  // The same answer on every rank: the offsets are (every rank made the
  // same metadata calls), rank 0's reading is broadcast.
  const auto storage =
      storage_extents(layout, reports, tensor_offsets, blob_offsets);
  if (!storage) return std::nullopt;
  FileTemplate out;
  std::uint64_t ok = 0;
  if (comm.rank() == 0) {
    try {
      const ReadOnlyFile file(path);
      if (auto image = read_image(file, *storage, max_image_bytes)) {
        out.image = std::move(*image);
        out.file_size = file.size();
        out.image_xxh3 = image_xxh3(out.image, out.file_size);
        // A loaded checkpoint's file changed since its save (damaged,
        // replaced): not the structure its manifest describes.
        ok = !expected_image_xxh3 || *expected_image_xxh3 == out.image_xxh3;
      }
    } catch (const std::exception&) {
      // Unreadable now: the next save makes its file in full.
    }
  }
  const std::string shared = comm.broadcast_bytes(
      std::to_string(ok) + ' ' + std::to_string(out.file_size) + ' ' +
          std::to_string(out.image_xxh3),
      0);
  const auto space = shared.find(' ');
  const auto second = shared.find(' ', space + 1);
  if (shared.substr(0, space) != "1") return std::nullopt;
  out.file_size = std::stoull(shared.substr(space + 1, second - space - 1));
  out.image_xxh3 = std::stoull(shared.substr(second + 1));
  out.structure = std::move(structure);
  out.tensor_offsets = std::move(tensor_offsets);
  out.blob_offsets = std::move(blob_offsets);
  return out;
}

std::optional<std::uint64_t> file_image_xxh3(
    const std::filesystem::path& path, const GlobalLayout& layout,
    const std::vector<RankReport>& reports, const FileTemplate& file,
    std::uint64_t max_image_bytes) {
  const auto storage =
      storage_extents(layout, reports, file.tensor_offsets, file.blob_offsets);
  if (!storage) return std::nullopt;
  try {
    const ReadOnlyFile opened(path);
    const auto image = read_image(opened, *storage, max_image_bytes);
    if (!image) return std::nullopt;
    return image_xxh3(*image, opened.size());
  } catch (const std::exception&) {
    return std::nullopt;  // the manifest then offers no template
  }
}

void write_template(const Comm& comm, const std::filesystem::path& path,
                    const MpiInfo& hints, const FileTemplate& file) {
  MpiFile out(comm.get(), path, MpiFile::Mode::kCreate, hints);
  // Empty first: bytes the image leaves out must read as zeros.
  out.set_size(0);
  std::vector<IoRun> runs;
  for (const FileTemplate::Run& run : file.image) {
    runs.push_back(IoRun{run.offset, run.bytes.data(), run.bytes.size()});
  }
  std::exception_ptr error;
  try {
    out.write_all(comm.get(), std::move(runs));
  } catch (...) {
    error = std::current_exception();
  }
  agree_on_error(comm, error);
  // HDF5 refuses a file shorter than the end its superblock records.
  out.set_size(file.file_size);
  out.close();
}

}  // namespace floe::h5
