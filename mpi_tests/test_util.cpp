#include "test_util.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <vector>

#include <stdlib.h>
#include <unistd.h>

namespace floe::test {

int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

int world_size() {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

std::vector<std::string> allgather_text(const std::string& text,
                                        MPI_Comm comm) {
  int size = 1;
  MPI_Comm_size(comm, &size);
  const int mine = static_cast<int>(text.size());
  std::vector<int> counts(size), displs(size);
  MPI_Allgather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, comm);
  int total = 0;
  for (int r = 0; r < size; ++r) {
    displs[r] = total;
    total += counts[r];
  }
  std::string all(static_cast<std::size_t>(total), '\0');
  MPI_Allgatherv(text.data(), mine, MPI_CHAR, all.data(), counts.data(),
                 displs.data(), MPI_CHAR, comm);
  std::vector<std::string> out(size);
  for (int r = 0; r < size; ++r) out[r] = all.substr(displs[r], counts[r]);
  return out;
}

::testing::AssertionResult same_on_all_ranks(const std::string& text,
                                             MPI_Comm comm) {
  const auto all = allgather_text(text, comm);
  auto failure = ::testing::AssertionFailure();
  bool same = true;
  for (std::size_t r = 1; r < all.size(); ++r) {
    if (all[r] == all[0]) continue;
    same = false;
    failure << "rank " << r << " has:\n  " << all[r] << "\n";
  }
  if (same) return ::testing::AssertionSuccess();
  return failure << "but rank 0 has:\n  " << all[0];
}

void on_rank0_then_barrier(const std::function<void()>& fn) {
  if (world_rank() == 0) fn();
  MPI_Barrier(MPI_COMM_WORLD);
}

void run_within(std::chrono::seconds limit, const std::function<void()>& fn) {
  auto done = std::async(std::launch::async, fn);
  if (done.wait_for(limit) == std::future_status::timeout) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::fprintf(stderr,
                 "[rank %d] %s%s%s: still running after %lld s; a collective "
                 "hung. Aborting the job.\n",
                 world_rank(), info ? info->test_suite_name() : "",
                 info ? "." : "", info ? info->name() : "",
                 static_cast<long long>(limit.count()));
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 3);
  }
  done.get();  // rethrows fn's exception
}

namespace {

// "Suite.Test" with characters a file name should not hold replaced
// (TEST_P names contain '/').
std::string current_test_name() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name =
      info ? std::string(info->test_suite_name()) + "." + info->name()
           : std::string("floe_test");
  for (auto& c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) c = '_';
  }
  return name.substr(0, 120);
}

}  // namespace

std::string slurp(const std::filesystem::path& path) {
  // Copied a buffer at a time (streambuf to stringbuf), not a character
  // at a time through istreambuf_iterator: the sanitizer stages check
  // every access of a per-character loop, which made a test that slurps
  // a few data files spend most of its time here under ThreadSanitizer.
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream out;
  out << in.rdbuf();  // an empty file sets out's failbit; its str() is ""
  return out.str();
}

void flip_byte(const std::filesystem::path& file, std::uint64_t at) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  char c = 0;
  f.seekg(static_cast<std::streamoff>(at));
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5A);
  f.seekp(static_cast<std::streamoff>(at));
  f.write(&c, 1);
  f.flush();
  if (!f) throw std::runtime_error("flip_byte: cannot flip byte " + std::to_string(at) + " of " + file.string());
}

std::string listing(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename());
  }
  std::sort(names.begin(), names.end());
  std::string out;
  for (const auto& n : names) out += n + " ";
  return out;
}

std::string tree_listing(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    names.push_back(e.path().lexically_relative(dir).string() + ":" +
                    (e.is_regular_file() ? std::to_string(e.file_size()) : "d"));
  }
  std::sort(names.begin(), names.end());
  std::string out;
  for (const auto& n : names) out += n + " ";
  return out;
}

TempDir::TempDir(MPI_Comm comm) : comm_(comm) {
  int rank = 0;
  MPI_Comm_rank(comm_, &rank);
  std::string made;  // the path on success, or "!" + why on failure
  if (rank == 0) {
    const char* env = std::getenv("FLOE_TEST_TMPDIR");
    const std::filesystem::path base = env && *env ? env : "/tmp";
    std::error_code ec;
    std::filesystem::create_directories(base, ec);
    std::string pattern = (base / (current_test_name() + "-XXXXXX")).string();
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    if (::mkdtemp(buffer.data()) != nullptr) {
      made = buffer.data();
    } else {
      made = "!cannot create a directory like " + pattern + ": " +
             std::system_category().message(errno);
    }
  }
  unsigned long length = made.size();
  MPI_Bcast(&length, 1, MPI_UNSIGNED_LONG, 0, comm_);
  made.resize(length);
  MPI_Bcast(made.data(), static_cast<int>(length), MPI_CHAR, 0, comm_);
  if (!made.empty() && made[0] == '!') throw std::runtime_error(made.substr(1));
  path_ = made;
}

TempDir::~TempDir() {
  // Nobody may still be writing into it when rank 0 removes it.
  MPI_Barrier(comm_);
  int rank = 0;
  MPI_Comm_rank(comm_, &rank);
  const char* keep = std::getenv("FLOE_TEST_KEEP_TMPDIR");
  if (rank == 0 && !(keep && *keep && std::string(keep) != "0")) {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  MPI_Barrier(comm_);
}

::testing::AssertionResult is_error(const Caught& caught, ErrorCode code,
                                    std::initializer_list<std::string> parts) {
  if (!caught.thrown) {
    return ::testing::AssertionFailure()
           << "expected floe::Error(" << error_code_name(code)
           << ") but nothing was thrown";
  }
  if (!caught.floe_error) {
    return ::testing::AssertionFailure()
           << "expected floe::Error(" << error_code_name(code)
           << ") but another exception was thrown: " << caught.message;
  }
  if (caught.code != code) {
    return ::testing::AssertionFailure()
           << "expected floe::Error(" << error_code_name(code) << ") but got ("
           << error_code_name(caught.code) << "): " << caught.message;
  }
  for (const auto& part : parts) {
    if (caught.message.find(part) == std::string::npos) {
      return ::testing::AssertionFailure()
             << "the message lacks \"" << part << "\": " << caught.message;
    }
  }
  return ::testing::AssertionSuccess() << caught.message;
}

std::uint64_t key_hash(const std::string& key) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the key
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::uint64_t element_hash_after(std::uint64_t key_hash, std::uint64_t global_index) {
  // splitmix64 finalizer over (key hash, index)
  std::uint64_t z = key_hash ^ (global_index + 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::uint64_t element_hash(const std::string& key, std::uint64_t global_index) {
  return element_hash_after(key_hash(key), global_index);
}

namespace {

// expected_element for the element whose element_hash is `h`.
void expected_element_of_hash(DType dtype, std::uint64_t h, void* out) {
  auto put = [out](auto value) { std::memcpy(out, &value, sizeof(value)); };
  switch (dtype) {
    case DType::kF32:
      put(expected_value_of_hash<float>(h));
      return;
    case DType::kF64:
      put(expected_value_of_hash<double>(h));
      return;
    case DType::kI64:
      put(expected_value_of_hash<std::int64_t>(h));
      return;
    case DType::kU64:
      put(expected_value_of_hash<std::uint64_t>(h));
      return;
    case DType::kI32:
      put(expected_value_of_hash<std::int32_t>(h));
      return;
    case DType::kU32:
      put(expected_value_of_hash<std::uint32_t>(h));
      return;
    case DType::kI16:
      put(expected_value_of_hash<std::int16_t>(h));
      return;
    case DType::kU16:
    case DType::kF16:
    case DType::kBF16:
      put(expected_value_of_hash<std::uint16_t>(h));
      return;
    case DType::kI8:
      put(expected_value_of_hash<std::int8_t>(h));
      return;
    case DType::kU8:
    case DType::kF8E4M3:
    case DType::kF8E5M2:
      put(expected_value_of_hash<std::uint8_t>(h));
      return;
    case DType::kBool:
      put(static_cast<std::uint8_t>(expected_value_of_hash<bool>(h)));
      return;
  }
  throw std::logic_error("expected_element: unknown dtype");
}

}  // namespace

void expected_element(DType dtype, const std::string& key,
                      std::uint64_t global_index, void* out) {
  expected_element_of_hash(dtype, element_hash(key, global_index), out);
}

void for_each_element(
    const Shape& shape, const Region& region,
    const std::function<void(std::uint64_t global, std::uint64_t local)>& fn) {
  const std::size_t rank = shape.size();
  std::vector<std::uint64_t> stride(rank, 1);  // row-major, in elements
  for (std::size_t d = rank; d-- > 1;) stride[d - 1] = stride[d] * shape[d];
  std::uint64_t local = 0;
  for (const Box& box : region.boxes(shape)) {
    const std::uint64_t count = box.elements();
    std::vector<std::uint64_t> index(rank, 0);  // odometer inside the box
    for (std::uint64_t i = 0; i < count; ++i) {
      std::uint64_t global = 0;
      for (std::size_t d = 0; d < rank; ++d) {
        global += (box.offset[d] + index[d]) * stride[d];
      }
      fn(global, local++);
      for (std::size_t d = rank; d-- > 0;) {
        if (++index[d] < box.extent[d]) break;
        index[d] = 0;
      }
    }
  }
}

void fill_expected(TensorShard& shard, const std::string& key) {
  const std::string k = key.empty() ? shard.spec().key() : key;
  const DType dtype = shard.spec().dtype;
  const std::size_t size = dtype_size(dtype);
  std::byte* data = shard.data();
  const std::uint64_t kh = key_hash(k);
  for_each_element(shard.spec().shape, shard.region(),
                   [&](std::uint64_t global, std::uint64_t local) {
                     expected_element_of_hash(dtype, element_hash_after(kh, global),
                                              data + local * size);
                   });
}

::testing::AssertionResult holds_expected(const TensorShard& shard,
                                          const std::string& key) {
  const std::string k = key.empty() ? shard.spec().key() : key;
  const DType dtype = shard.spec().dtype;
  const std::size_t size = dtype_size(dtype);
  const std::byte* data = shard.data();
  std::uint64_t wrong = 0;
  std::uint64_t first_global = 0;
  std::uint64_t checked = 0;
  std::byte want[8];
  const std::uint64_t kh = key_hash(k);
  for_each_element(shard.spec().shape, shard.region(),
                   [&](std::uint64_t global, std::uint64_t local) {
                     ++checked;
                     expected_element_of_hash(dtype, element_hash_after(kh, global), want);
                     if (std::memcmp(want, data + local * size, size) != 0) {
                       if (wrong++ == 0) first_global = global;
                     }
                   });
  if (wrong == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "tensor \"" << k << "\" region " << shard.region().to_string()
         << ": " << wrong << " of " << checked
         << " elements differ from the expected values; the first at global "
            "flat index "
         << first_global;
}

std::pair<std::uint64_t, std::uint64_t> even_split(std::uint64_t n, int rank,
                                                   int parts) {
  const auto p = static_cast<std::uint64_t>(parts);
  const auto r = static_cast<std::uint64_t>(rank);
  const std::uint64_t base = n / p;
  const std::uint64_t extra = n % p;
  const std::uint64_t begin = r * base + std::min(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

Region dim0_shard(const Shape& shape, int rank, int parts) {
  if (shape.empty()) {
    throw std::invalid_argument(
        "dim0_shard: a rank-0 tensor has no dimension 0");
  }
  const auto [begin, end] = even_split(shape[0], rank, parts);
  Box box = full_box(shape);
  box.offset[0] = begin;
  box.extent[0] = end - begin;
  return Region::box(std::move(box));
}

Region zero_flat_shard(const Shape& shape, int rank, int parts) {
  const std::uint64_t n = num_elements(shape);
  const auto p = static_cast<std::uint64_t>(parts);
  const std::uint64_t slice = (n + p - 1) / p;
  const std::uint64_t begin =
      std::min(n, slice * static_cast<std::uint64_t>(rank));
  const std::uint64_t end = std::min(n, begin + slice);
  return Region::flat(FlatRange{begin, end});
}

Region replicated_whole(const Shape& shape) {
  return Region::whole(shape).replicated();
}

}  // namespace floe::test
