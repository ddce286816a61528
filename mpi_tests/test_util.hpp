// Helpers shared by Floe's test suites: per-test temporary directories,
// deterministic tensor contents any rank can recompute, and the partitions
// trainers use (dim-0 shards, ZeRO-style flat ranges, replicated tensors).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <mpi.h>

#include "floe/dtype.hpp"
#include "floe/error.hpp"
#include "floe/region.hpp"
#include "floe/state.hpp"

namespace floe::test {

int world_rank();
int world_size();

// Collective over `comm`: every rank's `text`, by rank.
std::vector<std::string> allgather_text(const std::string& text,
                                        MPI_Comm comm = MPI_COMM_WORLD);

// Collective over `comm`: success when every rank passed the same `text`;
// otherwise names the ranks whose text differs from rank 0's and shows both.
::testing::AssertionResult same_on_all_ranks(const std::string& text,
                                             MPI_Comm comm = MPI_COMM_WORLD);

// Runs `fn` (which may be collective) and rethrows what it throws. If it has
// not returned after `limit`, the rank prints that it hung and aborts the
// job, so a deadlocked collective fails fast and says where instead of
// waiting for the CTest timeout.
void run_within(std::chrono::seconds limit, const std::function<void()>& fn);

// Runs `fn` on rank 0 of MPI_COMM_WORLD only, then waits at a barrier for
// every rank. A failed ASSERT_* in `fn` ends `fn`, not the test, so rank 0
// still reaches the barrier the others wait in (a test that returned there
// left them waiting in it). `fn` must not be collective.
void on_rank0_then_barrier(const std::function<void()>& fn);

// A fresh, empty directory for one test, unique across tests and processes:
// $FLOE_TEST_TMPDIR (or /tmp) / <Suite.Test>-XXXXXX. Collective over `comm`
// in construction and destruction: rank 0 creates it and broadcasts its path
// (a failure to create it throws std::runtime_error on every rank), and
// rank 0 removes it after every rank is done with it. Set
// FLOE_TEST_KEEP_TMPDIR=1 to keep it for a post-mortem.
// The whole content of `path` ("" when it cannot be read).
std::string slurp(const std::filesystem::path& path);

// Flips bits of byte `at` of `file` (XOR 0x5A), in place; throws
// std::runtime_error when the byte cannot be read or written.
void flip_byte(const std::filesystem::path& file, std::uint64_t at);

// The names in `dir` (not recursive), sorted, each followed by a space: one
// line that every rank should agree on.
std::string listing(const std::filesystem::path& dir);

// Every file and folder under `dir` (recursive) with its size, sorted:
// what a refused operation must leave unchanged.
std::string tree_listing(const std::filesystem::path& dir);

class TempDir {
 public:
  explicit TempDir(MPI_Comm comm = MPI_COMM_WORLD);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const {
    return path_ / name;
  }

 private:
  MPI_Comm comm_;
  std::filesystem::path path_;
};

// ---- Errors ------------------------------------------------------------

// What a call threw: `thrown` is false when it returned; `floe_error` is
// false for an exception that is not a floe::Error.
struct Caught {
  bool thrown = false;
  bool floe_error = false;
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

template <typename Fn>
Caught catch_error(Fn&& fn) {
  Caught out;
  try {
    std::forward<Fn>(fn)();
  } catch (const Error& e) {
    out = Caught{true, true, e.code(), e.what()};
  } catch (const std::exception& e) {
    out = Caught{true, false, ErrorCode::kInternal, e.what()};
  } catch (...) {
    out = Caught{true, false, ErrorCode::kInternal, "(not a std::exception)"};
  }
  return out;
}

// Success when `caught` is a floe::Error with `code` whose message contains
// every one of `parts`.
::testing::AssertionResult is_error(
    const Caught& caught, ErrorCode code,
    std::initializer_list<std::string> parts = {});

// is_error(catch_error(fn), code, parts):
//   EXPECT_TRUE(throws_error([&] { parse_config(j); },
//                            ErrorCode::kInvalidConfig, {"\"keep_last_n\""}));
template <typename Fn>
::testing::AssertionResult throws_error(
    Fn&& fn, ErrorCode code, std::initializer_list<std::string> parts = {}) {
  return is_error(catch_error(std::forward<Fn>(fn)), code, parts);
}

// ---- Deterministic contents --------------------------------------------

// A well-mixed 64-bit hash of (tensor key, global flat index):
// element_hash_after(key_hash(key), global_index). Loops over a tensor's
// elements hash the key once (key_hash) and call element_hash_after.
std::uint64_t element_hash(const std::string& key, std::uint64_t global_index);
std::uint64_t key_hash(const std::string& key);
std::uint64_t element_hash_after(std::uint64_t key_hash, std::uint64_t global_index);

// The value of the element whose element_hash is `h` (see expected_value).
template <typename T>
T expected_value_of_hash(std::uint64_t h) {
  if constexpr (std::is_same_v<T, bool>) {
    return (h & 1) != 0;
  } else if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(static_cast<double>(h % 65536) / 256.0 - 128.0);
  } else {
    static_assert(std::is_integral_v<T>,
                  "expected_value: arithmetic types only");
    return static_cast<T>(h);
  }
}

// The value element `global_index` (row-major over the tensor's global
// shape) of tensor `key` holds in tests. Floating types get values exactly
// representable in F32 and F64 (multiples of 1/256 in [-128, 128)); integer
// types get the hash's low bits; bool gets one bit.
template <typename T>
T expected_value(const std::string& key, std::uint64_t global_index) {
  return expected_value_of_hash<T>(element_hash(key, global_index));
}

// Writes the expected element of `dtype` at `out` (dtype_size bytes): the
// typed expected_value for F32/F64 and the integer types, a 0/1 byte for
// BOOL, and hash bits for F16/BF16/F8 (compared as raw bytes).
void expected_element(DType dtype, const std::string& key,
                      std::uint64_t global_index, void* out);

// Calls fn(global_flat_index, position_in_buffer) for each element of
// `region` of a tensor of `shape`, in the holder's buffer order
// (Region::boxes order, row-major within each box).
void for_each_element(
    const Shape& shape, const Region& region,
    const std::function<void(std::uint64_t global, std::uint64_t local)>& fn);

// Fills `shard`'s buffer with the expected values of its region, keyed by
// `key` (default: the shard's TensorSpec::key()).
void fill_expected(TensorShard& shard, const std::string& key = "");

// Success when every element of `shard`'s buffer holds its expected value;
// otherwise names the tensor, the count of wrong elements and the first.
::testing::AssertionResult holds_expected(const TensorShard& shard,
                                          const std::string& key = "");

// ---- Partitions ----------------------------------------------------------

// [begin, end) of part `rank` when `n` items are split into `parts` nearly
// equal contiguous parts; the first n % parts parts get one item more
// (numpy.array_split). A part may be empty.
std::pair<std::uint64_t, std::uint64_t> even_split(std::uint64_t n, int rank,
                                                   int parts);

// Rank `rank`'s dim-0 shard (FSDP / row-parallel) of a tensor of `shape`:
// the rows even_split gives it, all of every other dimension. `shape` must
// have rank >= 1. Rows may run out: later ranks then hold empty boxes.
Region dim0_shard(const Shape& shape, int rank, int parts);

// Rank `rank`'s ZeRO-style flat range of a tensor of `shape`: the flattened
// tensor is cut into `parts` slices of ceil(n / parts) elements, the last
// ones short or empty (DeepSpeed pads; Floe's regions simply stop at n).
Region zero_flat_shard(const Shape& shape, int rank, int parts);

// The whole tensor, held identically by every rank that adds it.
Region replicated_whole(const Shape& shape);

}  // namespace floe::test
