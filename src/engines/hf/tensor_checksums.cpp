#include "engines/hf/tensor_checksums.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/page_memory.hpp"
#include "core/wire.hpp"
#include "engines/hf/box_runs.hpp"
#include "engines/hf/float_cast.hpp"
#include "floe/error.hpp"
#include "io/checksum.hpp"
#include "io/read_only_file.hpp"

namespace floe::hf {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kReadChunk = 8u << 20;
// Elements converted per step when a hashed tensor is cast on export.
constexpr std::uint64_t kCastChunk = 1u << 20;
// The tag of the messages that carry a stream's state from rank to rank.
constexpr int kStateTag = 0x4846;

// The writer pieces of `tensor` as stretches in tensor order, if each is
// contiguous and together they tile the tensor exactly; nullopt otherwise.
std::optional<std::vector<Stretch>> stretches_of(const TensorLayout& tensor,
                                                 const Shape& shape) {
  std::vector<Stretch> out;
  std::vector<int> ranks;  // a rank hashes its buffer from the start: once
  for (const Piece& piece : tensor.pieces) {
    if (!piece.writer) continue;
    if (std::find(ranks.begin(), ranks.end(), piece.rank) != ranks.end())
      return std::nullopt;
    ranks.push_back(piece.rank);
    Stretch s{0, 0, piece.rank};
    if (piece.region.kind() == Region::Kind::kFlatRange) {
      s.begin = piece.region.as_flat().begin;
      s.end = piece.region.as_flat().end;
    } else {
      const Box& box = piece.region.as_box();
      if (count_runs(shape, box) > 1) return std::nullopt;
      for_each_run(shape, box, [&](const Run& run) {
        s.begin = run.tensor_element;
        s.end = run.tensor_element + run.count;
      });
    }
    if (s.end > s.begin) out.push_back(s);
  }
  std::sort(out.begin(), out.end(), [](const Stretch& a, const Stretch& b) {
    return a.begin < b.begin;
  });
  std::uint64_t next = 0;
  for (const Stretch& s : out) {
    if (s.begin != next) return std::nullopt;
    next = s.end;
  }
  if (next != num_elements(shape)) return std::nullopt;
  return out;
}

// Adds `count` elements at `data` (dtype `from`) to `hash` as dtype `to`.
void hash_elements(Xxh3Stream& hash, const unsigned char* data, DType from,
                   DType to, std::uint64_t count,
                   std::vector<unsigned char>& converted) {
  if (from == to) {
    hash.update(data, count * dtype_size(from));
    return;
  }
  const std::uint64_t step = std::min(count, kCastChunk);
  converted.resize(step * dtype_size(to));
  for (std::uint64_t done = 0; done < count;) {
    const std::uint64_t n = std::min(step, count - done);
    cast_elements(data + done * dtype_size(from), from, converted.data(), to,
                  n);
    hash.update(converted.data(), n * dtype_size(to));
    done += n;
  }
}

// The chained hashing of the tensors with stretches: this rank's (tensor,
// digest) pairs, for the tensors whose last stretch it wrote.
void hash_from_buffers(
    const ExportPlan& plan, const GlobalLayout& layout, const State& state,
    const std::vector<std::optional<std::vector<Stretch>>>& chains,
    const Comm& comm, WireWriter& mine) {
  const int me = comm.rank();
  // Every buffer this rank hashes, found before any message moves, so a
  // missing one fails on every rank (collectively) instead of leaving a
  // neighbour waiting for a state.
  std::vector<const unsigned char*> data(plan.tensors.size(), nullptr);
  collectively(comm, [&] {
    for (std::size_t i = 0; i < plan.tensors.size(); ++i) {
      if (!chains[i]) continue;
      for (const Stretch& s : *chains[i]) {
        if (s.rank != me) continue;
        const std::string key =
            layout.tensors[plan.tensors[i].source].spec.key();
        const TensorShard* shard = state.find(key);
        if (!shard || shard->region().elements() < s.end - s.begin) {
          throw Error(ErrorCode::kInternal,
                      "tensor \"" + key + "\": rank " + std::to_string(me) +
                          " writes part of it but holds no such buffer");
        }
        data[i] = reinterpret_cast<const unsigned char*>(shard->data());
      }
    }
  });
  std::vector<unsigned char> converted;
  std::string received;
  for (std::size_t i = 0; i < plan.tensors.size(); ++i) {
    if (!chains[i]) continue;
    const std::vector<Stretch>& chain = *chains[i];
    const PlannedTensor& t = plan.tensors[i];
    if (chain.empty()) {  // no elements: rank 0 records the empty digest
      if (me == 0) {
        mine.u64(i);
        mine.u64(Xxh3Stream().digest());
      }
      continue;
    }
    std::optional<Xxh3Stream> hash;
    for (std::size_t k = 0; k < chain.size(); ++k) {
      if (chain[k].rank != me) continue;
      if (k == 0) {
        hash.emplace();
      } else if (chain[k - 1].rank != me) {
        MPI_Status status;
        check_mpi(MPI_Probe(chain[k - 1].rank, kStateTag, comm.get(), &status),
                  "MPI_Probe");
        int size = 0;
        MPI_Get_count(&status, MPI_BYTE, &size);
        received.resize(static_cast<std::size_t>(size));
        check_mpi(MPI_Recv(received.data(), size, MPI_BYTE, chain[k - 1].rank,
                           kStateTag, comm.get(), MPI_STATUS_IGNORE),
                  "MPI_Recv");
        hash = Xxh3Stream::from_state_bytes(received);
      }
      hash_elements(*hash, data[i], t.source_dtype, t.dtype,
                    chain[k].end - chain[k].begin, converted);
      if (k + 1 == chain.size()) {
        mine.u64(i);
        mine.u64(hash->digest());
      } else if (chain[k + 1].rank != me) {
        const std::string bytes = hash->state_bytes();
        check_mpi(MPI_Send(bytes.data(), static_cast<int>(bytes.size()),
                           MPI_BYTE, chain[k + 1].rank, kStateTag, comm.get()),
                  "MPI_Send");
      }
    }
  }
}

// Tensor indices each rank reads back: largest first, to the least loaded
// rank; -1 for the tensors hashed from buffers.
std::vector<int> read_back_owners(
    const ExportPlan& plan,
    const std::vector<std::optional<std::vector<Stretch>>>& chains, int ranks) {
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < plan.tensors.size(); ++i) {
    if (!chains[i]) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) {
                     return plan.tensors[a].nbytes > plan.tensors[b].nbytes;
                   });
  std::vector<std::uint64_t> load(static_cast<std::size_t>(ranks), 0);
  std::vector<int> owner(plan.tensors.size(), -1);
  for (const std::size_t i : order) {
    const auto least =
        std::min_element(load.begin(), load.end()) - load.begin();
    owner[i] = static_cast<int>(least);
    load[static_cast<std::size_t>(least)] += plan.tensors[i].nbytes + 1;
  }
  return owner;
}

// Reads back this rank's share of the other tensors from their files.
void hash_from_files(const ExportPlan& plan, const std::vector<int>& owner,
                     const fs::path& dir, const Comm& comm, WireWriter& mine) {
  collectively(comm, [&] {
    std::map<std::size_t, std::unique_ptr<ReadOnlyFile>> open;
    PageBytes buffer;  // filled by reads: on a page, not zeroed
    for (std::size_t i = 0; i < plan.tensors.size(); ++i) {
      if (owner[i] != comm.rank()) continue;
      const PlannedTensor& t = plan.tensors[i];
      auto& file = open[t.file];
      if (!file) {
        file = std::make_unique<ReadOnlyFile>(dir / plan.files[t.file].name);
        if (file->size() != plan.files[t.file].size) {
          throw Error(ErrorCode::kIo,
                      file->path().string() + " is " +
                          std::to_string(file->size()) +
                          " bytes after writing, not " +
                          std::to_string(plan.files[t.file].size));
        }
      }
      Xxh3Stream hash;
      buffer.resize(std::min(t.nbytes, kReadChunk));
      for (std::uint64_t done = 0; done < t.nbytes; done += buffer.size()) {
        const std::uint64_t n =
            std::min<std::uint64_t>(buffer.size(), t.nbytes - done);
        file->read_exact(t.file_offset + done, n, buffer.data());
        hash.update(buffer.data(), n);
      }
      mine.u64(i);
      mine.u64(hash.digest());
    }
  });
}

}  // namespace

TensorChecksums::TensorChecksums(const ExportPlan& plan,
                                 const GlobalLayout& layout, const State& state,
                                 const Comm& comm)
    : plan_(plan), layout_(layout), state_(state), comm_(comm) {
  // The same on every rank: computed from the layout alone.
  for (const PlannedTensor& t : plan.tensors) {
    chains_.push_back(stretches_of(layout.tensors[t.source], t.shape));
  }
}

void TensorChecksums::hash_buffers() {
  hash_from_buffers(plan_, layout_, state_, chains_, comm_, mine_);
}

std::vector<std::uint64_t> TensorChecksums::finish(const fs::path& dir) {
  hash_from_files(plan_, read_back_owners(plan_, chains_, comm_.size()), dir,
                  comm_, mine_);
  std::vector<std::uint64_t> out(plan_.tensors.size(), 0);
  for (const std::string& part : comm_.allgather_bytes(mine_.bytes())) {
    WireReader r(part);
    while (!r.done()) {
      const std::uint64_t i = r.u64();
      out.at(i) = r.u64();
    }
  }
  return out;
}

}  // namespace floe::hf
