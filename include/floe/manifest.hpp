// manifest.json: what a committed checkpoint holds and how to read it. A
// checkpoint exists if and only if its directory has a complete manifest.
// docs/manifest.md describes the schema.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "floe/dtype.hpp"
#include "floe/file_system.hpp"
#include "floe/region.hpp"
#include "floe/state.hpp"

namespace floe {

// One saved piece of a tensor: who wrote it, which region, where its bytes
// are, and their checksum.
struct PieceRecord {
  int rank = 0;
  Region region;
  std::string file;          // relative to the checkpoint directory
  std::uint64_t offset = 0;  // byte offset in `file` (raw engines; 0 for hdf5)
  std::uint64_t nbytes = 0;
  std::uint64_t xxh3 = 0;    // XXH3-64 of the piece's bytes in region order
};

struct TensorRecord {
  TensorSpec spec;
  std::string dataset;  // HDF5 dataset path ("/model/<name>"); empty otherwise
  std::vector<PieceRecord> pieces;
  // Where the dataset's contiguous storage starts in the data file (hdf5
  // only; 0 for a tensor of no elements): its element i lies at
  // storage_offset + i * element size, row-major. Lets the reader read the
  // bytes without opening the dataset. Absent in checkpoints written before
  // Floe recorded it, whose datasets the reader opens and checks instead.
  std::optional<std::uint64_t> storage_offset;
};

// One rank's named blob.
struct BlobRecord {
  int rank = 0;
  std::string name;
  std::string file;
  std::uint64_t offset = 0;
  std::uint64_t nbytes = 0;
  std::uint64_t xxh3 = 0;
};

struct FileRecord {
  std::string path;  // relative to the checkpoint directory
  std::uint64_t size = 0;
};

struct Manifest {
  // Readers refuse a manifest whose format_version is greater. Version 2
  // added manifest_xxh3, a checksum of the manifest itself; version 1
  // manifests (no such field) are still read.
  static constexpr int kFormatVersion = 2;

  int format_version = kFormatVersion;
  std::string floe_version;
  std::string engine;
  std::string tag;  // "global_step_<N>"
  std::int64_t step = 0;
  std::int64_t epoch = 0;
  int world_size = 0;
  std::string created_utc;  // ISO 8601
  std::vector<TensorRecord> tensors;
  nlohmann::json scalars = nlohmann::json::object();
  std::vector<BlobRecord> blobs;
  std::vector<FileRecord> files;
  nlohmann::json metadata = nlohmann::json::object();
  nlohmann::json engine_info = nlohmann::json::object();

  // The record of tensor `key` (TensorSpec::key()), or nullptr.
  const TensorRecord* find(const std::string& key) const;

  // From format version 2 on, includes manifest_xxh3, the checksum of the
  // rest (docs/manifest.md: "Self-checksum").
  nlohmann::json to_json() const;
  // The manifest.json text Floe writes: exactly to_json().dump(), printed
  // straight from the fields (no JSON tree) with the checksum computed on
  // the way.
  std::string dump() const;
  // Validates while parsing: format version, known dtypes, shapes whose byte
  // size fits, regions inside their tensors, file names that stay inside the
  // checkpoint directory, and then manifest_xxh3 (required from version 2,
  // checked whenever present). Throws Error(kCorrupt) naming the field, or
  // Error(kUnsupported) for a newer format version.
  static Manifest from_json(const nlohmann::json& json);
  // Parses the text of a manifest.json as from_json does; errors name `path`.
  static Manifest parse(const std::string& text, const std::filesystem::path& path);
  // Reads and parses `<dir>/manifest.json`; errors name the file.
  static Manifest read(const std::filesystem::path& checkpoint_dir,
                       FileSystem& fs = *posix_file_system());
};

// Scalars <-> JSON (bool, integer, number, string).
nlohmann::json scalar_to_json(const Scalar& value);
Scalar scalar_from_json(const nlohmann::json& json);

}  // namespace floe
