#include "cli/hf_dir.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "cli/cli_common.hpp"
#include "cli/cli_format.hpp"
#include "core/page_memory.hpp"
#include "core/wire.hpp"
#include "engines/hf/float_cast.hpp"
#include "engines/hf/safetensors_index.hpp"
#include "floe/error.hpp"
#include "floe/registry.hpp"

namespace floe::cli {
namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string read_index_text(const fs::path& path) {
  const ReadOnlyFile file(path);
  if (file.size() > hf::kMaxIndexBytes) {
    throw Error(ErrorCode::kCorrupt,
                path.string() + ": the index is " +
                    std::to_string(file.size()) + " bytes, over the " +
                    std::to_string(hf::kMaxIndexBytes) + "-byte limit");
  }
  std::string text(file.size(), '\0');
  file.read_exact(0, text.size(), text.data());
  return text;
}

// The index `index` names files inside `dir`; checks each alone.
void verify_index(const fs::path& index_path, HfVerifyReport& report) {
  hf::HfIndex index;
  try {
    index = hf::parse_index(read_index_text(index_path), index_path.string());
  } catch (const Error& e) {
    report.problems.push_back(e.what());
    return;
  }
  const fs::path dir = index_path.parent_path().empty()
                           ? fs::path(".")
                           : index_path.parent_path();
  std::set<std::string> named;
  for (const auto& [tensor, file] : index.weight_map) named.insert(file);
  for (const auto& file : named) {
    const fs::path rel(file);
    if (file.empty() || rel.is_absolute() ||
        std::any_of(rel.begin(), rel.end(),
                    [](const fs::path& p) { return p == ".."; })) {
      report.problems.push_back(index_path.string() + ": weight_map names \"" +
                                file +
                                "\", which is not a plain file name inside "
                                "the directory");
      continue;
    }
    try {
      const hf::SafetensorsFile f(dir / rel);
      ++report.files;
      report.tensors += f.header().tensors.size();
      for (const auto& t : f.header().tensors) report.bytes += t.nbytes();
    } catch (const Error& e) {
      report.problems.push_back(e.what());
    }
  }
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (ends_with(name, ".safetensors") && !named.count(name) &&
        name != hf::kSingleFileName) {
      report.notes.push_back(name + " is not named by " +
                             index_path.filename().string() +
                             " (transformers ignores it)");
    }
  }
}

void verify_single(const fs::path& file, HfVerifyReport& report) {
  try {
    const hf::SafetensorsFile f(file);
    ++report.files;
    report.tensors += f.header().tensors.size();
    for (const auto& t : f.header().tensors) report.bytes += t.nbytes();
  } catch (const Error& e) {
    report.problems.push_back(e.what());
  }
}

HfVerifyReport verify_on_rank0(const fs::path& path) {
  HfVerifyReport report;
  std::error_code ec;
  fs::path index;
  if (fs::is_directory(path, ec)) {
    const bool single = fs::exists(path / hf::kSingleFileName, ec);
    const bool indexed = fs::exists(path / hf::kIndexFileName, ec);
    if (single) {
      verify_single(path / hf::kSingleFileName, report);
      if (indexed) {
        report.notes.push_back(
            std::string("both ") + hf::kSingleFileName + " and " +
            hf::kIndexFileName + " are present; loaders read " +
            hf::kSingleFileName + " (the index is not checked)");
      }
    } else if (indexed) {
      index = path / hf::kIndexFileName;
      verify_index(index, report);
    } else {
      report.problems.push_back("no Hugging Face weights in " + path.string() +
                                ": neither " + hf::kSingleFileName + " nor " +
                                hf::kIndexFileName);
      return report;
    }
  } else if (path.extension() == ".json") {
    index = path;
    verify_index(index, report);
  } else {
    verify_single(path, report);
  }
  // The whole, once every file is sound on its own: each tensor where the
  // index says, no tensor twice, total_size.
  if (report.problems.empty() && !index.empty()) {
    try {
      hf::HfDirectory whole(index);
    } catch (const Error& e) {
      report.problems.push_back(e.what());
    }
  }
  return report;
}

std::string encode(const HfVerifyReport& r) {
  WireWriter w;
  w.u64(r.files);
  w.u64(r.tensors);
  w.u64(r.bytes);
  w.u64(r.problems.size());
  for (const auto& p : r.problems) w.str(p);
  w.u64(r.notes.size());
  for (const auto& n : r.notes) w.str(n);
  return w.bytes();
}

HfVerifyReport decode(const std::string& bytes) {
  WireReader r(bytes);
  HfVerifyReport report;
  report.files = r.u64();
  report.tensors = r.u64();
  report.bytes = r.u64();
  for (std::uint64_t n = r.u64(); n > 0; --n) report.problems.push_back(r.str());
  for (std::uint64_t n = r.u64(); n > 0; --n) report.notes.push_back(r.str());
  return report;
}

// Reads boxes of the tensors of an HF directory with the safe reader. Not
// collective inside: each rank reads only its own boxes.
class HfReader final : public CheckpointReader {
 public:
  explicit HfReader(const fs::path& path) : dir_(path) {}

  void read(const TensorRecord& tensor, const std::vector<Box>& boxes,
            void* out) override {
    const auto* at = dir_.find(tensor.spec.name);
    if (!at) {
      throw Error(ErrorCode::kInternal,
                  "no tensor \"" + tensor.spec.name + "\" in the HF weights");
    }
    const std::size_t size = dtype_size(at->tensor->dtype);
    auto* bytes = static_cast<unsigned char*>(out);
    for (const Box& box : boxes) {
      dir_.files()[at->file]->read_box(*at->tensor, box, bytes,
                                       at->tensor->dtype);
      bytes += box.elements() * size;
    }
  }

  std::vector<std::uint8_t> read_blob(const BlobRecord& blob) override {
    throw Error(ErrorCode::kNotFound,
                "HF weights hold no blobs (asked for \"" + blob.name + "\")");
  }

  const hf::HfDirectory& directory() const { return dir_; }

 private:
  hf::HfDirectory dir_;
};

// Reads a checkpoint's tensors under new records: renamed, and cast where
// the record's dtype differs from the saved one.
class AlignedReader final : public CheckpointReader {
 public:
  AlignedReader(std::unique_ptr<CheckpointReader> inner,
                std::vector<TensorRecord> saved)
      : inner_(std::move(inner)), saved_(std::move(saved)) {}

  // The record under `key` reads the saved record `saved_index`.
  void map(const std::string& key, std::size_t saved_index) {
    by_key_[key] = saved_index;
  }

  void read(const TensorRecord& tensor, const std::vector<Box>& boxes,
            void* out) override {
    const TensorRecord& saved = saved_.at(by_key_.at(tensor.spec.key()));
    if (saved.spec.dtype == tensor.spec.dtype) {
      inner_->read(saved, boxes, out);
      return;
    }
    std::uint64_t n = 0;
    for (const Box& b : boxes) n += b.elements();
    buffer_.resize(n * dtype_size(saved.spec.dtype));
    inner_->read(saved, boxes, buffer_.data());
    hf::cast_elements(buffer_.data(), saved.spec.dtype, out, tensor.spec.dtype,
                      n);
  }

  std::vector<std::uint8_t> read_blob(const BlobRecord& blob) override {
    return inner_->read_blob(blob);
  }

 private:
  std::unique_ptr<CheckpointReader> inner_;
  std::vector<TensorRecord> saved_;
  std::map<std::string, std::size_t> by_key_;
  PageBytes buffer_;  // filled by reads: on a page, not zeroed
};

}  // namespace

bool is_hf_weights(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    return !fs::exists(path / "manifest.json", ec) &&
           (fs::exists(path / hf::kSingleFileName, ec) ||
            fs::exists(path / hf::kIndexFileName, ec));
  }
  const std::string name = path.filename().string();
  return fs::is_regular_file(path, ec) &&
         (ends_with(name, ".safetensors") || ends_with(name, ".index.json"));
}

HfVerifyReport verify_hf_weights(const fs::path& path, const Comm& comm) {
  const std::string mine = collectively(comm, [&] {
    return comm.rank() == 0 ? encode(verify_on_rank0(path)) : std::string();
  });
  return decode(comm.broadcast_bytes(mine, 0));
}

OpenCheckpoint open_hf_weights(const fs::path& path, const Comm& comm) {
  auto reader = collectively(
      comm, [&] { return std::make_shared<HfReader>(path); });
  OpenCheckpoint out;
  out.dir = path;
  out.manifest.engine = kHfWeightsEngine;
  out.manifest.world_size = 0;
  // In the files' order: index order of files, header order within.
  const hf::HfDirectory& dir = reader->directory();
  for (const auto& file : dir.files()) {
    for (const auto& t : file->header().tensors) {
      TensorRecord record;
      record.spec = TensorSpec{TensorGroup::kModel, t.name, "", t.dtype,
                               t.shape};
      record.pieces.push_back(PieceRecord{
          0, Region::whole(t.shape), file->path().filename().string(),
          t.file_offset, t.nbytes(), 0});
      out.manifest.tensors.push_back(std::move(record));
    }
    out.manifest.files.push_back(
        FileRecord{file->path().filename().string(), file->file().size()});
  }
  // The reader owns the directory the records were read from.
  struct Owner final : CheckpointReader {
    explicit Owner(std::shared_ptr<HfReader> r) : r_(std::move(r)) {}
    void read(const TensorRecord& t, const std::vector<Box>& b,
              void* out) override {
      r_->read(t, b, out);
    }
    std::vector<std::uint8_t> read_blob(const BlobRecord& blob) override {
      return r_->read_blob(blob);
    }
    std::shared_ptr<HfReader> r_;
  };
  out.reader = std::make_unique<Owner>(std::move(reader));
  return out;
}

std::vector<std::string> align_with_hf(
    OpenCheckpoint& ckpt, const Manifest& hf,
    const std::function<std::string(const std::string&)>& rename) {
  std::vector<TensorRecord> saved = ckpt.manifest.tensors;
  std::vector<TensorRecord> aligned;
  std::vector<std::string> cast;
  auto reader =
      std::make_unique<AlignedReader>(std::move(ckpt.reader), saved);
  for (std::size_t i = 0; i < saved.size(); ++i) {
    const TensorSpec& spec = saved[i].spec;
    if (spec.group != TensorGroup::kModel) continue;
    TensorRecord record = saved[i];
    record.spec.name = rename ? rename(spec.name) : spec.name;
    const TensorRecord* theirs = hf.find(record.spec.key());
    if (theirs && theirs->spec.dtype != spec.dtype &&
        theirs->spec.shape == spec.shape && dtype_is_float(spec.dtype) &&
        hf::can_cast(spec.dtype, theirs->spec.dtype)) {
      record.spec.dtype = theirs->spec.dtype;
      cast.push_back(record.spec.name);
    }
    reader->map(record.spec.key(), i);
    aligned.push_back(std::move(record));
  }
  ckpt.manifest.tensors = std::move(aligned);
  ckpt.manifest.scalars = nlohmann::json::object();
  ckpt.manifest.metadata = nlohmann::json::object();
  ckpt.manifest.blobs.clear();
  ckpt.reader = std::move(reader);
  return cast;
}

int run_verify_hf(const fs::path& path) {
  const Comm comm(MPI_COMM_WORLD);
  const auto start = std::chrono::steady_clock::now();
  const HfVerifyReport report = verify_hf_weights(path, comm);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  for (const auto& problem : report.problems) out() << problem << "\n";
  for (const auto& note : report.notes) out() << "note: " << note << "\n";
  char took[32];
  std::snprintf(took, sizeof took, "%.2f s", seconds);
  out() << "verify " << path.string() << ": "
        << (report.problems.empty() ? "ok" : "FAILED")
        << " (Hugging Face safetensors)\n  " << counted(report.files, "file")
        << ", " << counted(report.tensors, "tensor") << ", "
        << human_bytes(report.bytes) << " (" << report.bytes
        << " bytes); headers, offsets and the index checked in " << took
        << " (safetensors has no checksums)\n";
  if (report.problems.empty()) return 0;
  err() << "floe: verify: " << counted(report.problems.size(), "problem")
        << "\n";
  return 1;
}

DiffSides open_diff_sides(const fs::path& a, const fs::path& b,
                          const Comm& comm, const std::string& strip_prefix) {
  // Rank 0 decides what each side is, so every rank opens it the same way.
  const std::string kinds = comm.broadcast_bytes(
      std::string{is_hf_weights(a) ? 'h' : 'c', is_hf_weights(b) ? 'h' : 'c'},
      0);
  auto open = [&](const fs::path& path, char kind) {
    return kind == 'h' ? open_hf_weights(path, comm)
                       : open_checkpoint(path, comm.get());
  };
  DiffSides sides{open(a, kinds[0]), open(b, kinds[1])};
  // A checkpoint of an export-only engine (hf) is an export with a
  // manifest: compared with a training checkpoint as bare weights are. (Its
  // engine is registered: open_checkpoint found its reader.)
  const auto is_export = [](char kind, const OpenCheckpoint& side) {
    return kind == 'h' || !engine_info(side.manifest.engine).resumable;
  };
  const bool export_a = is_export(kinds[0], sides.a);
  const bool export_b = is_export(kinds[1], sides.b);
  sides.hf = export_a || export_b;
  if (export_a != export_b) {
    OpenCheckpoint& ckpt = export_a ? sides.b : sides.a;
    const Manifest& hf = export_a ? sides.a.manifest : sides.b.manifest;
    std::function<std::string(const std::string&)> rename;
    if (!strip_prefix.empty()) {
      rename = [strip_prefix](const std::string& name) {
        return name.compare(0, strip_prefix.size(), strip_prefix) == 0
                   ? name.substr(strip_prefix.size())
                   : name;
      };
    }
    const auto cast = align_with_hf(ckpt, hf, rename);
    // Weights only on both sides: an hf engine's manifest also records the
    // trainer's scalars and metadata, which bare weights do not have.
    OpenCheckpoint& weights = export_a ? sides.a : sides.b;
    weights.manifest.scalars = nlohmann::json::object();
    weights.manifest.metadata = nlohmann::json::object();
    sides.notes.push_back(
        std::string("comparing the checkpoint's model tensors only") +
        (strip_prefix.empty() ? ""
                              : " (names without \"" + strip_prefix + "\")"));
    if (!cast.empty()) {
      sides.notes.push_back(
          counted(cast.size(), "checkpoint tensor") +
          " cast to the export's dtype first, as export-hf --dtype does (e.g. " +
          cast.front() + ")");
    }
  }
  return sides;
}

}  // namespace floe::cli
