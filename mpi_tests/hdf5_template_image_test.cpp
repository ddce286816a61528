// The structure image a template keeps of a file (hdf5_template.hpp) on a
// file made byte by byte, so that storage begins and ends off the 4 KiB
// blocks, the structure between storage spans more than one of the image's
// 1 MiB reads, and single non-zero bytes sit where a read, a block or a
// storage extent ends: capture_template and file_image_xxh3 must keep
// exactly the pieces reference_image works out from the bytes alone. The
// checkpoints the other template tests save leave these cases to chance:
// against them, reads ending off block boundaries, pieces cut a block from
// where a read began, a read rounded up into storage, a zero test that
// skips a piece's first or last byte and a limit off by one all passed.
#include <algorithm>
#include <fstream>
#include <optional>

#include "hdf5_test_support.hpp"

namespace floe::test {
namespace {

constexpr std::uint64_t kBlock = 4096;
constexpr std::uint64_t kRead = 1 << 20;  // hdf5_template.cpp's kReadChunk

// A file laid out piece by piece: structure (zeros but for single bytes)
// and storage (non-zero data), recording where the storage lies.
struct CraftedFile {
  std::string bytes;
  std::vector<bool> storage;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> extents;  // offset, bytes
  unsigned char fill = 0x80;  // the high bits of every data byte

  std::uint64_t size() const { return bytes.size(); }
  // `length` bytes of structure, zero but at `marks` (from its start).
  void structure(std::uint64_t length, std::vector<std::uint64_t> marks) {
    const std::uint64_t at = size();
    bytes.append(length, '\0');
    storage.resize(size(), false);
    for (const std::uint64_t m : marks)
      bytes.at(at + m) = static_cast<char>(1 + (at + m) % 251);
  }
  // `length` bytes of a dataset's storage (non-zero data).
  void data(std::uint64_t length) {
    extents.emplace_back(size(), length);
    for (std::uint64_t i = 0; i < length; ++i)
      bytes.push_back(static_cast<char>(fill | (i % 127 + 1)));
    storage.resize(size(), true);
  }
};

// Where each storage extent starts and ends relative to the blocks and the
// reads is said with it; the comments name the mistakes each one catches.
CraftedFile crafted_file(unsigned char fill = 0x80) {
  CraftedFile f;
  f.fill = fill;
  // Storage begins 1000 bytes into a block after a piece whose only
  // non-zero byte is its last (a zero test that skips the last byte, or a
  // piece before storage dropped, loses it; a read rounded up to the block
  // brings the storage's data in).
  f.structure(3 * kBlock + 1000, {0, 100, 3 * kBlock + 999});
  f.data(5000);  // ends 1904 bytes into a block
  // More than one read. Its first byte alone is non-zero up to the next
  // block (a storage end rounded up, or a zero test that skips the first
  // byte, drops it; pieces cut a block from the read's start keep the
  // zeros after it in the next block). The reads end on block boundaries:
  // one that ended a read's length after its start would cut the block
  // holding the byte at `kRead` into a zero part, dropped, and the rest.
  const std::uint64_t first_long = kRead + 2 * kBlock + 300;
  f.structure(first_long, {0, kRead, first_long - 1});
  f.data(2 * kBlock + 77);
  f.structure(50, {25});  // between two storage extents in one block
  f.data(1000);           // a blob of rank 0's ...
  f.data(3333);           // ... and one of rank 1's, touching it
  // Over two reads, ending on a block boundary. Zeros up to its first
  // block boundary, then a non-zero byte; non-zero bytes just before
  // `kRead` and 2 * `kRead` from its start with zeros after them to the
  // block's end (a read ending there would drop them); bytes either side
  // of the reads' real ends (a run continues across reads); 12 KiB all
  // non-zero.
  const std::uint64_t start = f.size();
  const std::uint64_t lead = kBlock - start % kBlock;
  const std::uint64_t second_long =
      (start + 2 * kRead + kBlock) / kBlock * kBlock - start;
  const std::uint64_t read_end = start / kBlock * kBlock + kRead - start;
  std::vector<std::uint64_t> marks = {lead, kRead - 1, 2 * kRead - 1,
                                      read_end - 1, read_end};
  for (std::uint64_t i = 0; i < 3 * kBlock; ++i)
    marks.push_back(300 * kBlock + i);
  f.structure(second_long, marks);
  f.data(3 * kBlock + 5);  // begins on a block boundary
  f.structure(700, {350});
  f.data(3 * kBlock - 705);  // ends on a block boundary
  // The file ends off a block boundary, its last byte non-zero, in a
  // second read that begins on the last (partial) block.
  const std::uint64_t tail = kRead + 123;
  f.structure(tail, {0, tail - 1});
  return f;
}

// The layout and reports whose storage is `file`'s extents: tensors of U8
// (one with no elements) out of file order, and extents 2 and 3 as the
// blobs of ranks 0 and 1.
struct Placement {
  GlobalLayout layout;
  std::vector<h5::RankReport> reports;
  std::vector<std::uint64_t> tensor_offsets;
  std::vector<std::vector<std::uint64_t>> blob_offsets;
};

Placement place(const CraftedFile& file) {
  Placement p;
  const auto tensor = [&](const std::string& name, std::uint64_t bytes,
                          std::uint64_t offset) {
    TensorLayout t;
    t.spec = TensorSpec{TensorGroup::kModel, name, "", DType::kU8, {bytes}};
    p.layout.tensors.push_back(std::move(t));
    p.tensor_offsets.push_back(offset);
  };
  for (const std::size_t e : {4, 0, 5, 1}) {
    tensor("t" + std::to_string(e), file.extents.at(e).second,
           file.extents.at(e).first);
    if (e == 0) tensor("empty", 0, h5::kNoStorage);
  }
  p.reports.resize(2);
  p.blob_offsets.resize(2);
  for (int r = 0; r < 2; ++r) {
    const auto& [offset, bytes] = file.extents.at(2 + r);
    p.reports[r].blobs.push_back({"rng", bytes, 0});
    p.blob_offsets[r].push_back(offset);
  }
  p.layout.world_size = 2;
  return p;
}

// Collective: rank 0 (re)writes `path` once no rank reads it.
void write_file(const fs::path& path, const std::string& bytes) {
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    EXPECT_TRUE(out.good()) << path;  // (no return before the barrier)
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// "offset+length" of each run: a readable difference.
std::string describe(const std::vector<h5::FileTemplate::Run>& runs) {
  std::string out;
  for (const auto& run : runs) {
    out += std::to_string(run.offset) + '+' + std::to_string(run.bytes.size()) +
           ' ';
  }
  return out;
}

std::uint64_t bytes_of(const std::vector<h5::FileTemplate::Run>& runs) {
  std::uint64_t total = 0;
  for (const auto& run : runs) total += run.bytes.size();
  return total;
}

std::optional<h5::FileTemplate> capture(const fs::path& path,
                                        const Placement& p,
                                        std::uint64_t max_bytes) {
  return h5::capture_template(Comm(MPI_COMM_WORLD), path, "structure",
                              p.layout, p.reports, p.tensor_offsets,
                              p.blob_offsets, max_bytes);
}

// The crafted file written to a fresh directory, where it lies, and the
// image reference_image() works out from its bytes alone.
struct OnDisk {
  TempDir dir;
  const fs::path path = dir / "checkpoint.h5";
  const CraftedFile file = crafted_file();
  const Placement placement = place(file);
  const std::vector<h5::FileTemplate::Run> expected =
      reference_image(file.bytes, file.storage);
  OnDisk() { write_file(path, file.bytes); }
};

TEST(Hdf5TemplateImage, KeepsTheNonZeroBlocksAroundOffBlockStorageAndReads) {
  const OnDisk disk;
  const fs::path& path = disk.path;
  const CraftedFile& file = disk.file;
  const Placement& placement = disk.placement;
  const auto& expected = disk.expected;
  const std::uint64_t expected_xxh3 =
      reference_image_xxh3(expected, file.size());
  ASSERT_GT(expected.size(), 10u);

  const auto captured = capture(path, placement, h5::kMaxTemplateBytes);
  ASSERT_TRUE(captured.has_value());
  EXPECT_EQ(captured->file_size, file.size());
  EXPECT_EQ(format_xxh3(captured->image_xxh3), format_xxh3(expected_xxh3));
  if (world_rank() == 0) {
    EXPECT_EQ(describe(captured->image), describe(expected));
    for (std::size_t i = 0; i < std::min(captured->image.size(), expected.size()); ++i)
      EXPECT_TRUE(captured->image[i].bytes == expected[i].bytes) << "run " << i;
  }
  // After a save from the template (any rank may be asked).
  const auto hashed = h5::file_image_xxh3(path, placement.layout,
                                          placement.reports, *captured,
                                          h5::kMaxTemplateBytes);
  ASSERT_TRUE(hashed.has_value());
  EXPECT_EQ(format_xxh3(*hashed), format_xxh3(expected_xxh3));

  // Other data in the storage: the same structure, the same hash.
  write_file(path, crafted_file(0x40).bytes);
  EXPECT_EQ(h5::file_image_xxh3(path, placement.layout, placement.reports,
                                *captured, h5::kMaxTemplateBytes),
            hashed);
}

TEST(Hdf5TemplateImage, AnImageOneByteOverTheLimitGivesNoTemplate) {
  const OnDisk disk;
  const fs::path& path = disk.path;
  const Placement& placement = disk.placement;
  const auto& expected = disk.expected;
  const std::uint64_t kept = bytes_of(expected);

  const auto at_limit = capture(path, placement, kept);
  ASSERT_TRUE(at_limit.has_value());
  if (world_rank() == 0) {
    EXPECT_EQ(bytes_of(at_limit->image), kept);
  }
  EXPECT_FALSE(capture(path, placement, kept - 1).has_value());
  EXPECT_TRUE(h5::file_image_xxh3(path, placement.layout, placement.reports,
                                  *at_limit, kept)
                  .has_value());
  EXPECT_FALSE(h5::file_image_xxh3(path, placement.layout, placement.reports,
                                   *at_limit, kept - 1)
                   .has_value());
}

}  // namespace
}  // namespace floe::test
