// manifest.json as text: facts of the format shared by its writer
// (Manifest::dump, manifest_text.cpp) and its readers (manifest.cpp, and
// the fast path for the text as Floe writes it, manifest_scan.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "floe/manifest.hpp"

namespace floe {

// The self-checksum's member (docs/manifest.md, "Self-checksum"), required
// from format version 2.
constexpr const char* kSelfChecksumKey = "manifest_xxh3";
constexpr int kFirstVersionWithSelfChecksum = 2;

// Why tensor `t`'s storage_offset cannot be right, or "" when it can (or
// it has none): the offset plus the tensor's byte size overflows, or ends
// beyond the size `files` records for a file its pieces name (or that file
// is not listed). Both readers check every tensor with it once `files` is
// read.
std::string storage_problem(const TensorRecord& t, const std::vector<FileRecord>& files);

// True when `text` holds the bytes Manifest::dump() wrote: the canonical
// form with the member spliced in at its sorted place, so that the text
// without the member hashes to `recorded` (the member's own value). Any
// other text (reformatted, or damaged) gives false, and the canonical check
// decides.
bool text_is_as_written(std::string_view text, std::uint64_t recorded);

// The manifest in `text` when `text` is exactly as Manifest::dump() writes
// it (compact, members in their written order, plain ASCII strings in the
// records) and passes every check Manifest::from_json makes, including the
// self-checksum; nullopt for anything else, which the general parser then
// reads (and names what is wrong). A fast path only: it never throws for
// bad input and never accepts what the general parser would refuse.
// `text` must be followed by a NUL byte (as a std::string's is).
std::optional<Manifest> parse_as_written(std::string_view text);

// Manifest::parse of text held elsewhere than in a std::string (a window
// the ranks of a node share); `text` must be followed by a NUL byte.
Manifest parse_manifest_text(std::string_view text, const std::filesystem::path& path);

}  // namespace floe
