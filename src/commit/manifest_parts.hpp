// Reading one manifest.json on many ranks at once, the scan split between
// them: each rank scans about 1/N of the tensor records, and the ranks
// exchange what they read in a compact binary form that is much cheaper to
// decode than the text is to scan.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string_view>

#include "core/comm.hpp"
#include "floe/manifest.hpp"

namespace floe {

// Below this many bytes of text, every rank scans all of it: the exchange
// would cost about as much as it saves.
constexpr std::size_t kSplitScanFromBytes = 256 * 1024;

// Collective over `comm`. The manifest in `text`, which must be the same
// bytes on every rank (followed by a NUL byte): Manifest::parse's result
// and errors (naming `path`), the same on every rank. When the text is as
// Manifest::dump() writes it and at least `split_from` bytes long, each
// rank scans a part of the records (parse_part_as_written) and the ranks
// allgather the parts; when any part is not as written, every rank reads
// the text with the general parser, which names the problem. A rank whose
// scan throws (out of memory) fails the call on every rank with its error,
// as agree_on_error reports it. `split_from` is the same on every rank
// (tests pass 0 to split small manifests).
Manifest parse_manifest_on_ranks(std::string_view text,
                                 const std::filesystem::path& path,
                                 const Comm& comm,
                                 std::size_t split_from = kSplitScanFromBytes);

}  // namespace floe
