// read_patterns: how the order of a rank's reads in a shared file changes a
// cold read's time and the requests the device gets, apart from Floe
// (BENCHMARKS.md, "Huge pages for the loads' read-ahead").
//
//   mpicc -O2 -pthread -o read_patterns scripts/read_patterns.c
//   STAT=vda mpirun -x STAT -np N ./read_patterns DIR REPS PATTERNS
//
// Each repetition writes a fresh 1 GiB file DIR/f<k> tensor-major (16
// tensors, each rank its rows of each, as the hdf5 engine lays them out),
// fsyncs it, then reads it once in every pattern of PATTERNS, page cache
// dropped (fdatasync + POSIX_FADV_DONTNEED) before each, the order rotated by
// one per repetition. Prints each pattern's slowest-rank time per
// repetition; with STAT=<block device>, rank 0 prints the requests, merges,
// MiB and busy ms that /sys/block/<device>/stat counted during each read
// (the whole device, to stderr). A pattern is one character, '0' + code:
//   0 contiguous share (mpiio, raw@)     1 hdf5 order, 2 MiB preads
//   2 hdf5 order, one pread per piece    3 hdf5 order, staggered by rank
//   4 hdf5 order, O_DIRECT 2 MiB         5 hdf5 order, O_DIRECT 8 MiB
//   6 hdf5 order, FADV_SEQUENTIAL        7 hdf5 order, readahead() per piece
//   8 hdf5 order, FADV_RANDOM            9 contiguous, FADV_SEQUENTIAL
//   : hdf5 order, two threads (alternate pieces)  ; two threads, alternate chunks
//   = hdf5 order, O_DIRECT whole pieces  > memcpy from a MADV_HUGEPAGE mapping
//   ? memcpy from a plain mapping        @ contiguous from a MADV_HUGEPAGE mapping
//   B hdf5 order, MADV_POPULATE_READ of a MADV_HUGEPAGE mapping, then pread
//   C the same, contiguous               D as B, MADV_DONTNEED after each read
//   E as C, MADV_DONTNEED after each     G contiguous sweep into scratch, barrier,
//                                          then the hdf5 order from the cache
#define _GNU_SOURCE
#include <fcntl.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
static double now(void) { return MPI_Wtime(); }
static void drop(int fd) { fdatasync(fd); posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); }
static size_t S, T, N, R, piece, CH = 2u << 20;
static char* buf;
static void rd(int fd, size_t off, size_t len, size_t dst, size_t ch) {
  while (len) { size_t n = len < ch ? len : ch; ssize_t g = pread(fd, buf + dst, n, off);
    if (g != (ssize_t)n) { perror("pread"); MPI_Abort(MPI_COMM_WORLD, 1); } off += n; dst += n; len -= n; }
}
#include <pthread.h>
struct job { int fd, mode, id; };
static void* worker(void* a) {
  struct job* j = a;
  if (j->mode == 0) { for (size_t t = j->id; t < T; t += 2) rd(j->fd, t * (S / T) + R * piece, piece, t * piece, CH); }
  else { for (size_t t = 0; t < T; ++t) for (size_t c = j->id * CH; c < piece; c += 2 * CH) rd(j->fd, t * (S / T) + R * piece + c, CH < piece - c ? CH : piece - c, t * piece + c, CH); }
  return 0;
}
static void two(int fd, int mode) {
  pthread_t th[2]; struct job j[2] = {{fd, mode, 0}, {fd, mode, 1}};
  for (int i = 0; i < 2; ++i) pthread_create(&th[i], 0, worker, &j[i]);
  for (int i = 0; i < 2; ++i) pthread_join(th[i], 0);
}
static void mcp(const char* m, size_t off, size_t len, size_t dst) {
  while (len) { size_t n = len < CH ? len : CH; memcpy(buf + dst, m + off, n); off += n; dst += n; len -= n; }
}
static void mm(int fd, int huge, int contig) {
  char* m = mmap(0, S, PROT_READ, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) { perror("mmap"); MPI_Abort(MPI_COMM_WORLD, 1); }
  if (huge && madvise(m, S, MADV_HUGEPAGE)) perror("madvise");
  if (contig) mcp(m, R * (S / N), S / N, 0);
  else for (size_t t = 0; t < T; ++t) mcp(m, t * (S / T) + R * piece, piece, t * piece);
  munmap(m, S);
}
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
static int zap;
static void rdp(const char* m, int fd, size_t off, size_t len, size_t dst) {
  while (len) { size_t n = len < CH ? len : CH;
    size_t a = off & ~(size_t)4095, e = (off + n + 4095) & ~(size_t)4095;
    if (madvise((void*)(m + a), e - a, MADV_POPULATE_READ)) { perror("populate"); MPI_Abort(MPI_COMM_WORLD, 1); }
    ssize_t g = pread(fd, buf + dst, n, off); if (g != (ssize_t)n) { perror("pread"); MPI_Abort(MPI_COMM_WORLD, 1); }
    if (zap) madvise((void*)(m + a), e - a, MADV_DONTNEED);
    off += n; dst += n; len -= n; }
}
static void pp(int fd, int contig) {
  char* m = mmap(0, S, PROT_READ, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) { perror("mmap"); MPI_Abort(MPI_COMM_WORLD, 1); }
  if (madvise(m, S, MADV_HUGEPAGE)) perror("madvise");
  if (contig) rdp(m, fd, R * (S / N), S / N, 0);
  else for (size_t t = 0; t < T; ++t) rdp(m, fd, t * (S / T) + R * piece, piece, t * piece);
  munmap(m, S);
}
static void sweep(int fd) {
  static char* scratch; if (!scratch) posix_memalign((void**)&scratch, 4096, CH);
  size_t share = S / N;
  for (size_t off = R * share; off < (R + 1) * share; off += CH) if (pread(fd, scratch, CH, off) != (ssize_t)CH) { perror("sweep"); MPI_Abort(MPI_COMM_WORLD, 1); }
  MPI_Barrier(MPI_COMM_WORLD);
  for (size_t t = 0; t < T; ++t) rd(fd, t * (S / T) + R * piece, piece, t * piece, CH);
}
static void pattern(int p, int fd, int fdd) {
  size_t share = S / N;
  switch (p) {
    case 0: rd(fd, R * share, share, 0, CH); break;                      // contiguous share
    case 1: for (size_t t = 0; t < T; ++t) rd(fd, t * (S / T) + R * piece, piece, t * piece, CH); break;  // hdf5 order
    case 2: for (size_t t = 0; t < T; ++t) rd(fd, t * (S / T) + R * piece, piece, t * piece, piece); break; // one pread/piece
    case 3: for (size_t k = 0; k < T; ++k) { size_t t = (k + R * T / N) % T; rd(fd, t * (S / T) + R * piece, piece, t * piece, CH); } break;
    case 4: for (size_t t = 0; t < T; ++t) rd(fdd, t * (S / T) + R * piece, piece, t * piece, CH); break; // O_DIRECT
    case 6: posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL); for (size_t t = 0; t < T; ++t) rd(fd, t * (S / T) + R * piece, piece, t * piece, CH); posix_fadvise(fd, 0, 0, POSIX_FADV_NORMAL); break;
    case 7: for (size_t t = 0; t < T; ++t) { readahead(fd, t * (S / T) + R * piece, piece); rd(fd, t * (S / T) + R * piece, piece, t * piece, CH); } break;
    case 8: posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM); for (size_t t = 0; t < T; ++t) rd(fd, t * (S / T) + R * piece, piece, t * piece, CH); posix_fadvise(fd, 0, 0, POSIX_FADV_NORMAL); break;
    case 9: posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL); rd(fd, R * share, share, 0, CH); posix_fadvise(fd, 0, 0, POSIX_FADV_NORMAL); break;
    case 10: two(fd, 0); break;
    case 11: two(fd, 1); break;
    case 13: for (size_t t = 0; t < T; ++t) rd(fdd, t * (S / T) + R * piece, piece, t * piece, piece); break;
    case 14: mm(fd, 1, 0); break;
    case 15: mm(fd, 0, 0); break;
    case 16: mm(fd, 1, 1); break;
    case 18: pp(fd, 0); break;
    case 20: zap = 1; pp(fd, 0); zap = 0; break;
    case 21: zap = 1; pp(fd, 1); zap = 0; break;
    case 19: pp(fd, 1); break;
    case 23: sweep(fd); break;
    case 5: for (size_t t = 0; t < T; ++t) rd(fdd, t * (S / T) + R * piece, piece, t * piece, 8u << 20); break; // O_DIRECT 8M
  }
}
int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int r, n; MPI_Comm_rank(MPI_COMM_WORLD, &r); MPI_Comm_size(MPI_COMM_WORLD, &n); R = r; N = n;
  const char* dir = argv[1]; int reps = atoi(argv[2]); const char* pats = argv[3];
  S = 1ull << 30; T = 16; piece = S / T / N;
  posix_memalign((void**)&buf, 4096, S / N); memset(buf, r + 1, S / N);
  int np = strlen(pats); double* tm = calloc(reps * np, sizeof(double));
  char path[512], prev[512] = "";
  for (int k = 0; k < reps; ++k) {
    snprintf(path, sizeof path, "%s/f%d", dir, k);
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (r == 0) ftruncate(fd, S);
    MPI_Barrier(MPI_COMM_WORLD);
    for (size_t t = 0; t < T; ++t) pwrite(fd, buf + t * piece, piece, t * (S / T) + R * piece);
    fsync(fd); MPI_Barrier(MPI_COMM_WORLD);
    if (r == 0 && prev[0]) unlink(prev);
    strcpy(prev, path);
    int fdd = open(path, O_RDONLY | O_DIRECT);
    for (int j = 0; j < np; ++j) {
      int p = pats[(j + k) % np] - '0';
      drop(fd); MPI_Barrier(MPI_COMM_WORLD);
      unsigned long long a0[4] = {0}, a1[4] = {0};
      char dev[128]; snprintf(dev, sizeof dev, "/sys/block/%s/stat", getenv("STAT") ? getenv("STAT") : "vda");
      FILE* st = fopen(dev, "r"); if (!st) { perror(dev); MPI_Abort(MPI_COMM_WORLD, 1); } fscanf(st, "%llu %llu %llu %llu", &a0[0], &a0[1], &a0[2], &a0[3]); fclose(st);
      double t0 = now(); pattern(p, fd, fdd); double t1 = now() - t0, mx;
      MPI_Barrier(MPI_COMM_WORLD);
      st = fopen(dev, "r"); fscanf(st, "%llu %llu %llu %llu", &a1[0], &a1[1], &a1[2], &a1[3]); fclose(st);
      if (r == 0 && getenv("STAT")) fprintf(stderr, "pat %d: ios %llu merges %llu MiB %.1f ticks %llu  avg KiB %.0f\n", p, a1[0]-a0[0], a1[1]-a0[1], (a1[2]-a0[2])/2048.0, a1[3]-a0[3], (a1[2]-a0[2])/2.0/(a1[0]-a0[0]+1e-9));
      MPI_Reduce(&t1, &mx, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
      tm[k * np + (j + k) % np] = mx;
    }
    close(fdd); close(fd);
  }
  if (r == 0) {
    unlink(prev);
    for (int j = 0; j < np; ++j) { printf("pattern %c:", pats[j]); for (int k = 0; k < reps; ++k) printf(" %.3f", tm[k * np + j]); printf("\n"); }
  }
  MPI_Finalize();
}
