// Writing one rank's bytes of an export file on threads of their own, so
// that the rank's copying, reading and hashing overlap its writes.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "io/early_writeback.hpp"

namespace floe::hf {

// A ring of buffers: the caller fills one (copying, converting or reading
// the bytes of a stretch of the file into it), or queues a stretch of its
// own memory (write_from), while writer threads write the others,
// kBuffers - 1 at a time. So the caller's CPU work (copying, casting,
// reading the next slice, hashing) overlaps the writes.
//
// Writes go through the page cache, and each stretch of >= 1 MiB has its
// writeback started at once (EarlyWriteback on the writer's descriptor), so
// the caller's final sync finds little left. With `direct`, a buffer's
// 4 KiB-aligned middle is written with O_DIRECT from the buffer itself
// (acquire() places the bytes so that buffer and file alignment agree), its
// unaligned head and tail buffered; a page written directly lies wholly
// inside one buffer's stretch, and an export's writes never overlap, so no
// page is written both ways. On the test VM's virtio disk direct writes were
// not faster than buffered ones with early writeback (BENCHMARKS.md, HF
// export), so the export does not use them (nor would several run in
// parallel unless the file's blocks were allocated first: ext4 serializes
// direct writes that allocate). Where O_DIRECT cannot be opened, or a direct
// write fails with EINVAL (an alignment the file system refuses), the writer
// falls back to buffered writes for the rest.
//
// The threads make no MPI calls. Nothing is durable until the caller syncs
// the file (MPI_File_sync or fsync: both flush the inode, whichever
// descriptor wrote). Errors do not throw: the first is kept (naming the
// file, offset and errno), later buffers are dropped, and finish() returns
// it, so a collective caller can agree on it.
class FileWriter {
 public:
  // The O_DIRECT alignment of buffers, offsets and lengths.
  static constexpr std::uint64_t kAlign = 4096;
  // Buffers in the ring.
  static constexpr int kBuffers = 4;

  // Opens `path`, an existing file, for writing; kBuffers buffers of
  // `capacity` (> 0) bytes each are mapped now and touched only as they are
  // used. `direct`: write the buffers' aligned middles with O_DIRECT.
  FileWriter(const std::filesystem::path& path, std::uint64_t capacity,
             bool direct = false);
  // Writes what was submitted, then stops the threads.
  ~FileWriter();
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;

  // Waits for a free buffer and returns it for bytes that go to file offset
  // `offset`; room(offset) bytes of it may be filled. Then submit() (before
  // the next acquire() or write_from()).
  unsigned char* acquire(std::uint64_t offset);
  // Bytes acquire(offset) offers: the capacity, less what makes a stretch
  // that starts unaligned end on an aligned offset (so the next one starts
  // aligned and only the first and last page of a long stretch are
  // written through the page cache).
  std::uint64_t room(std::uint64_t offset) const;
  // Hands the first `bytes` of the acquired buffer to the writer threads
  // (none: the buffer is just released).
  void submit(std::uint64_t bytes);
  // Queues `bytes` at `data` for file offset `offset`, written from there
  // (buffered: no alignment is promised) by a writer thread; `data` must
  // stay valid and unchanged until finish(). Waits while every buffer slot
  // is in flight.
  void write_from(std::uint64_t offset, const unsigned char* data,
                  std::uint64_t bytes);
  // Waits until everything submitted is written. Returns the first error,
  // empty if none.
  std::string finish();
  // Whether a write has failed (later buffers are not written).
  bool failed() const;
  // Whether the O_DIRECT path is (still) in use.
  bool direct() const;

 private:
  struct Slot {
    unsigned char* memory = nullptr;  // kAlign-aligned, capacity + kAlign
    std::uint64_t offset = 0, bytes = 0;
    bool full = false;     // submitted, not yet written
    bool writing = false;  // taken by a writer thread
    const unsigned char* external = nullptr;  // write_from's memory
  };

  void run();
  void write_slot(const Slot& slot);
  void start_writeback(std::uint64_t offset, std::uint64_t bytes);
  void write_buffered(std::uint64_t offset, const unsigned char* data,
                      std::uint64_t n);
  void write_direct(std::uint64_t offset, const unsigned char* data,
                    std::uint64_t n);
  void fail(const std::string& why);
  // Stops and joins the threads, closes the files, unmaps the buffers:
  // the destructor, and the constructor when a thread cannot start.
  void release() noexcept;

  std::filesystem::path path_;
  std::uint64_t capacity_;
  int buffered_fd_ = -1, direct_fd_ = -1;
  std::optional<EarlyWriteback> writeback_;  // on buffered_fd_, once open
  bool direct_refused_ = false;  // a direct write failed with EINVAL
  bool idle() const;  // nothing submitted is left unwritten

  std::vector<Slot> slots_;
  int fill_ = 0;   // the slot acquire() hands out next
  int drain_ = 0;  // the slot a writer thread takes next
  bool acquired_ = false, stop_ = false;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string error_;
  std::vector<std::thread> threads_;  // last: start once the rest exists
};

}  // namespace floe::hf
