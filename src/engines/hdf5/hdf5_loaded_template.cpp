#include "engines/hdf5/hdf5_loaded_template.hpp"

#include <exception>
#include <utility>

#include "engines/hdf5/hdf5_format.hpp"
#include "io/checksum.hpp"

namespace floe::h5 {

void record_structure(
    nlohmann::json& engine_info, const std::string& structure,
    std::uint64_t image_xxh3,
    const std::vector<std::vector<std::uint64_t>>& blob_offsets) {
  nlohmann::json offsets = nlohmann::json::array();
  for (const auto& rank : blob_offsets) {
    // A blob of no bytes has no storage (kNoStorage): 0, as for tensors.
    for (const std::uint64_t offset : rank) {
      offsets.push_back(offset == kNoStorage ? 0 : offset);
    }
  }
  engine_info[kStructureXxh3Key] =
      format_xxh3(xxh3_64(structure.data(), structure.size()));
  engine_info[kTemplateXxh3Key] = format_xxh3(image_xxh3);
  engine_info[kBlobOffsetsKey] = std::move(offsets);
}

std::optional<LoadedFile> loaded_file_of(const std::filesystem::path& dir,
                                         const Manifest& manifest) {
  const nlohmann::json& info = manifest.engine_info;
  if (manifest.engine != "hdf5" || !info.contains(kStructureXxh3Key) ||
      !info.contains(kTemplateXxh3Key) || !info.contains(kBlobOffsetsKey)) {
    return std::nullopt;
  }
  try {
    LoadedFile out;
    std::error_code error;
    out.path = std::filesystem::absolute(dir / kFileName, error);
    if (error) return std::nullopt;
    out.structure_xxh3 =
        parse_xxh3(info.at(kStructureXxh3Key).get<std::string>());
    out.image_xxh3 = parse_xxh3(info.at(kTemplateXxh3Key).get<std::string>());
    const nlohmann::json& blobs = info.at(kBlobOffsetsKey);
    if (!blobs.is_array() || blobs.size() != manifest.blobs.size())
      return std::nullopt;
    for (const nlohmann::json& offset : blobs) {
      out.blob_offsets.push_back(offset.get<std::uint64_t>());
    }
    out.tensor_offsets.reserve(manifest.tensors.size());
    for (const TensorRecord& tensor : manifest.tensors) {
      out.tensor_offsets.push_back(
          tensor.storage_offset ? *tensor.storage_offset : kNoStorage);
    }
    return out;
  } catch (const std::exception&) {
    return std::nullopt;  // malformed: the next save is made in full
  }
}

std::optional<FileTemplate> template_from_loaded(
    const Comm& comm, const LoadedFile& loaded, const std::string& structure,
    const GlobalLayout& layout, const std::vector<RankReport>& reports) {
  // Local and the same on every rank: the structure, the layout and the
  // reports are, and so is the manifest each rank loaded.
  if (xxh3_64(structure.data(), structure.size()) != loaded.structure_xxh3 ||
      loaded.tensor_offsets.size() != layout.tensors.size()) {
    return std::nullopt;
  }
  // The same structure has the same datasets in the same order: the
  // manifest lists the tensors and blobs in the order they were created.
  std::vector<std::vector<std::uint64_t>> blob_offsets(reports.size());
  std::size_t next = 0;
  for (std::size_t r = 0; r < reports.size(); ++r) {
    for (std::size_t b = 0; b < reports[r].blobs.size(); ++b) {
      if (next == loaded.blob_offsets.size()) return std::nullopt;
      blob_offsets[r].push_back(loaded.blob_offsets[next++]);
    }
  }
  if (next != loaded.blob_offsets.size()) return std::nullopt;
  return capture_template(comm, loaded.path, structure, layout, reports,
                          loaded.tensor_offsets, std::move(blob_offsets),
                          kMaxTemplateBytes, loaded.image_xxh3);
}

}  // namespace floe::h5
