/*
 * A small CUDA emulator for the CPU tests that run the kernels' device code (native/tests/
 * test_*_emulated.cpp, one per kernels/<op>_kernels.cuh): fragment plumbing (ldmatrix / mma.sync
 * layouts, swizzled shared-memory tiles), cp.async pipelines, warp and block reductions, scans,
 * ballots and block-level schedules are checked on a machine without a GPU.
 *
 * Each CUDA thread of a block is a ucontext fiber (1-, 2- or 3-D blocks of up to 1024 threads;
 * blocks run one after another on one OS thread). __syncthreads and the warp-collective operations
 * are barriers: a fiber publishes its operands, waits for its warp (or block), computes its own
 * result from everyone's operands, and waits again before the exchange slots are reused. The
 * collectives follow the PTX ISA definitions, written here independently of the kernels:
 *   ldmatrix.x4: lanes 8j..8j+7 give the row addresses of matrix j; lane l receives row l/4,
 *     elements 2(l%4), 2(l%4)+1 of each matrix (.trans: column l/4, rows 2(l%4), 2(l%4)+1);
 *   mma.m16n8k16 bf16: A element (r, k) sits in lane (r%8)*4 + (k%8)/2, register (r/8) + 2(k/8),
 *     half k%2; B (k, n) in lane n*4 + (k%8)/2, register k/8, half k%2; C/D (r, n) in lane
 *     (r%8)*4 + n/2, register 2(r/8) + n%2; D = C + sum_k A B in f32, k ascending;
 *   shfl.xor / .up / .idx of 4- and 8-byte values, ballot, any; atomics are plain
 *     read-modify-writes (fibers switch only at barriers and collectives);
 *   cp.async as a 16-byte copy (zero fill when invalid) that lands either at issue or, in the late
 *     mode (g_late_cp_async), only at the cp.async.wait_group covering its commit group; the
 *     dynamic shared memory is poisoned (0xff bytes: bf16 NaN) before every block, so reading a
 *     tile before it landed shows up as NaN.
 * The fibers run in order or (default) in a shuffled order with random per-warp speeds
 * (g_shuffled_schedule, below), so a missing barrier shows up as a wrong result.
 * Kernels name their dynamic shared memory `extern __shared__ unsigned char smem[]` at block scope
 * inside namespace moe4j's anonymous namespace (it resolves to the array below), and block-scope
 * static shared arrays MOE4J_STATIC_SHARED (a function-local static here).
 * Not emulated: timing, occupancy, bank conflicts, memory ordering between blocks, cp.async
 * landing times between the two extremes, and device math (expf, ex2.approx: glibc here).
 * Include once, before the kernels under test, in a test's translation unit.
 */
#pragma once
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <algorithm>
#include <functional>
#include <random>
#include <vector>

#include "numerics.h"

/* ---- CUDA surface of the emulator --------------------------------------------------------- */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __grid_constant__
#define __shared__
#define __align__(n) __attribute__((aligned(n)))
/* a kernel's block-scope static shared array: one per block, and the blocks run one after another
 * (hd.h's default is __shared__) */
#undef MOE4J_STATIC_SHARED
#define MOE4J_STATIC_SHARED static

struct dim3 {
  unsigned int x = 1, y = 1, z = 1;
};
struct alignas(16) uint4 {
  uint32_t x, y, z, w;
};
inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return uint4{x, y, z, w}; }
struct alignas(8) uint2 {
  uint32_t x, y;
};
inline uint2 make_uint2(uint32_t x, uint32_t y) { return uint2{x, y}; }
struct float2 {
  float x, y;
};
inline float2 make_float2(float x, float y) { return float2{x, y}; }
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }

dim3 blockIdx, gridDim, blockDim;

namespace emu {

constexpr int kMaxThreads = 1024, kStack = 1 << 16;
constexpr size_t kSmemBytes = 100 * 1024;

struct Barrier {
  int arrived = 0;
  unsigned gen = 0;
};

struct WarpExchange {
  uint32_t addr[32];
  uint32_t a[32][4], b[32][2];
  float c[32][4];
  uint64_t bits[32];
  bool pred[32];
};

/* A cp.async copy not yet landed in shared memory (late mode). */
struct PendingCopy {
  uint32_t dst;
  unsigned char data[16];
  long group; /* commit group it belongs to; -1 until committed */
};

struct Fiber {
  std::vector<PendingCopy> pending;
  long committed = 0; /* groups committed so far */
  ucontext_t ctx;
  dim3 tid;   /* threadIdx */
  int linear; /* x + blockDim.x * (y + blockDim.y * z): lane and warp */
  bool done;
  const Barrier *wait_on; /* blocked until wait_on->gen != wait_gen */
  unsigned wait_gen;
  std::vector<char> stack;
};

struct Block {
  ucontext_t sched;
  Fiber fibers[kMaxThreads];
  int threads = 0, cur = 0;
  Barrier warp_bar[kMaxThreads / 32], block_bar;
  WarpExchange wx[kMaxThreads / 32];
  std::function<void()> body;
};

Block *g_block = nullptr;
/* cp.async landing: eager (at issue: catches a prefetch that overwrites a stage still being read)
 * or late (at the cp.async.wait_group that must cover it: catches reading a tile before its wait
 * and barrier). The data is the source as of the issue, as on the GPU. */
bool g_late_cp_async = false;
/* Fiber order: in order (every runnable fiber in every pass, thread 0 first; the last fiber to
 * reach a barrier runs on), or shuffled (default): a fresh random order every pass, every warp of
 * a block given a random speed (its runnable fibers run in a pass with probability 1/16, 1/4 or
 * 1), and the fiber that completes a barrier yields too. Warps then run far ahead of one another
 * between barriers, which exposes a missing barrier (a shared slot or pipeline stage rewritten
 * before every warp has read it) that the in-order schedule hides. Fixed seed: reproducible. */
bool g_shuffled_schedule = true;
std::mt19937 g_schedule_rng(20261208);
extern unsigned char *const g_smem; /* the kernels' `extern __shared__ smem[]`, below */

inline Fiber &me() { return g_block->fibers[g_block->cur]; }
inline int tid() { return me().linear; }

inline void yield() { swapcontext(&me().ctx, &g_block->sched); }

inline void wait(Barrier &b, int n) {
  if (++b.arrived == n) {
    b.arrived = 0;
    b.gen++;
    if (g_shuffled_schedule) yield();
    return;
  }
  me().wait_on = &b; /* the scheduler skips this fiber until the last one arrives */
  me().wait_gen = b.gen;
  yield();
  me().wait_on = nullptr;
}

inline void warp_wait() { wait(g_block->warp_bar[tid() / 32], 32); }

void fiber_entry() {
  g_block->body();
  me().done = true;
}

/* Runs `body` as the `threads` threads (blockDim's product: a multiple of 32, at most
 * kMaxThreads) of the block blockIdx. */
void run_block(const std::function<void()> &body, int threads) {
  if (threads <= 0 || threads % 32 != 0 || threads > kMaxThreads) {
    fprintf(stderr, "emulator: %d threads per block, expected a multiple of 32 up to %d\n", threads,
            kMaxThreads);
    abort();
  }
  static Block *const b = new Block(); /* fiber stacks allocated once */
  g_block = b;
  b->body = body;
  b->threads = threads;
  b->cur = 0;
  b->block_bar = Barrier{};
  for (Barrier &w : b->warp_bar) w = Barrier{};
  memset(g_smem, 0xff, kSmemBytes);
  for (int t = 0; t < threads; t++) {
    Fiber &f = b->fibers[t];
    f.linear = t;
    f.tid = dim3{(unsigned)t % blockDim.x, (unsigned)t / blockDim.x % blockDim.y,
                 (unsigned)t / (blockDim.x * blockDim.y)};
    f.done = false;
    f.wait_on = nullptr;
    f.pending.clear();
    f.committed = 0;
    if (f.stack.empty()) f.stack.resize(kStack);
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.data();
    f.ctx.uc_stack.ss_size = f.stack.size();
    f.ctx.uc_link = &b->sched;
    makecontext(&f.ctx, fiber_entry, 0);
  }
  std::vector<int> order(threads);
  for (int t = 0; t < threads; t++) order[t] = t;
  /* shuffled: warp w runs in a pass with probability speed[w] / 16, drawn per block from 1, 4, 16 */
  unsigned speed[kMaxThreads / 32];
  for (unsigned &s : speed) s = 1u << (2 * (g_schedule_rng() % 3));
  for (;;) {
    bool live = false, ran = false;
    if (g_shuffled_schedule) std::shuffle(order.begin(), order.end(), g_schedule_rng);
    int skipped = -1; /* a runnable fiber the shuffled schedule left out of this pass */
    for (int t : order) {
      Fiber &f = b->fibers[t];
      if (f.done) continue;
      live = true;
      if (f.wait_on != nullptr && f.wait_on->gen == f.wait_gen) continue;
      if (g_shuffled_schedule && g_schedule_rng() % 16 >= speed[t / 32]) {
        skipped = t;
        continue;
      }
      ran = true;
      b->cur = t;
      swapcontext(&b->sched, &f.ctx);
    }
    if (!live) break;
    if (!ran && skipped >= 0) {
      b->cur = skipped;
      swapcontext(&b->sched, &b->fibers[skipped].ctx);
      ran = true;
    }
    if (!ran) { /* every live fiber waits and no barrier can complete */
      fprintf(stderr, "emulator: deadlock in block (%u, %u, %u)\n", blockIdx.x, blockIdx.y, blockIdx.z);
      abort();
    }
  }
  g_block = nullptr;
}

/* A launch <<<grid, block>>>: the blocks run one after another. */
template <typename F>
void run_grid(dim3 grid, dim3 block, F kernel) {
  const int threads = (int)(block.x * block.y * block.z);
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z; z++)
    for (unsigned y = 0; y < grid.y; y++)
      for (unsigned x = 0; x < grid.x; x++) {
        blockIdx = dim3{x, y, z};
        run_block(kernel, threads);
      }
}

template <typename F>
void run_grid(dim3 grid, int threads, F kernel) {
  run_grid(grid, dim3{(unsigned)threads, 1, 1}, kernel);
}

}  // namespace emu

#define threadIdx (emu::me().tid)

inline void __syncthreads() { emu::wait(emu::g_block->block_bar, emu::g_block->threads); }

namespace emu {
/* The value of lane src(lane) of this thread's warp, for every lane: a shuffle of any 4- or
 * 8-byte type. */
template <typename T, typename F>
inline T warp_shuffle(T v, F src) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "4- or 8-byte shuffles");
  WarpExchange &x = g_block->wx[tid() / 32];
  const int lane = tid() & 31;
  memcpy(&x.bits[lane], &v, sizeof(T));
  warp_wait();
  T r;
  memcpy(&r, &x.bits[src(lane) & 31], sizeof(T));
  warp_wait();
  return r;
}
}  // namespace emu

template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int mask) {
  return emu::warp_shuffle(v, [&](int lane) { return lane ^ mask; });
}
template <typename T>
inline T __shfl_sync(unsigned, T v, int src_lane) {
  return emu::warp_shuffle(v, [&](int) { return src_lane; });
}
template <typename T>
inline T __shfl_up_sync(unsigned, T v, int delta) {
  return emu::warp_shuffle(v, [&](int lane) { return lane >= delta ? lane - delta : lane; });
}

inline unsigned __ballot_sync(unsigned, bool pred) {
  emu::WarpExchange &x = emu::g_block->wx[emu::tid() / 32];
  x.pred[emu::tid() & 31] = pred;
  emu::warp_wait();
  unsigned r = 0;
  for (int l = 0; l < 32; l++) r |= (unsigned)x.pred[l] << l;
  emu::warp_wait();
  return r;
}

inline bool __any_sync(unsigned mask, bool pred) { return __ballot_sync(mask, pred) != 0; }

inline int __popc(unsigned v) { return __builtin_popcount(v); }
template <typename T>
inline void __stwb(T *p, T v) { *p = v; }
inline int __ffs(unsigned v) { return __builtin_ffs((int)v); }

inline float __int_as_float(int i) {
  float f;
  memcpy(&f, &i, 4);
  return f;
}

inline float __uint_as_float(unsigned u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

inline unsigned __float_as_uint(float f) {
  unsigned u;
  memcpy(&u, &f, 4);
  return u;
}

/* Fibers switch only at barriers and collectives, so a plain read-modify-write is atomic here. */
template <typename T>
inline T atomicAdd(T *p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}


namespace moe4j {
namespace {
/* what the kernels' block-scope `extern __shared__ unsigned char smem[]` names: one array, since
 * the blocks run one after another */
alignas(128) unsigned char smem[emu::kSmemBytes];
}  // namespace
}  // namespace moe4j
unsigned char *const emu::g_smem = moe4j::smem;

namespace moe4j {

inline uint32_t smem_addr(const void *p) {
  return (uint32_t)((const unsigned char *)p - emu::g_smem);
}

inline void cp_async_16(uint32_t dst, const void *src, bool valid) {
  if (!(dst + 16 <= emu::kSmemBytes)) {
    fprintf(stderr, "emulator: cp.async to smem offset %u out of range\n", dst);
    abort();
  }
  emu::PendingCopy c;
  c.dst = dst;
  c.group = -1;
  if (valid) memcpy(c.data, src, 16);
  else memset(c.data, 0, 16);
  if (emu::g_late_cp_async) emu::me().pending.push_back(c);
  else memcpy(emu::g_smem + dst, c.data, 16);
}
inline void cp_async_commit() {
  emu::Fiber &f = emu::me();
  for (emu::PendingCopy &c : f.pending)
    if (c.group < 0) c.group = f.committed;
  f.committed++;
}
/* cp.async.wait_group N: all but the N most recent committed groups have landed. */
template <int N>
inline void cp_async_wait() {
  emu::Fiber &f = emu::me();
  std::vector<emu::PendingCopy> keep;
  for (const emu::PendingCopy &c : f.pending) {
    if (c.group >= 0 && c.group < f.committed - N) memcpy(emu::g_smem + c.dst, c.data, 16);
    else keep.push_back(c);
  }
  f.pending.swap(keep);
}

inline uint16_t smem_u16(uint32_t addr, int elem) {
  uint16_t v;
  memcpy(&v, emu::g_smem + addr + 2 * elem, 2);
  return v;
}

inline void ldmatrix_common(uint32_t (&r)[4], uint32_t addr, bool trans) {
  emu::WarpExchange &x = emu::g_block->wx[emu::tid() / 32];
  const int lane = emu::tid() & 31;
  if (addr % 16 != 0 || addr + 16 > emu::kSmemBytes) {
    fprintf(stderr, "emulator: ldmatrix row address %u misaligned or out of range\n", addr);
    abort();
  }
  x.addr[lane] = addr;
  emu::warp_wait();
  for (int j = 0; j < 4; j++) {
    uint16_t e0, e1;
    if (!trans) {
      const uint32_t row = x.addr[8 * j + lane / 4];
      e0 = smem_u16(row, 2 * (lane % 4));
      e1 = smem_u16(row, 2 * (lane % 4) + 1);
    } else {
      e0 = smem_u16(x.addr[8 * j + 2 * (lane % 4)], lane / 4);
      e1 = smem_u16(x.addr[8 * j + 2 * (lane % 4) + 1], lane / 4);
    }
    r[j] = (uint32_t)e0 | ((uint32_t)e1 << 16);
  }
  emu::warp_wait();
}

inline void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) { ldmatrix_common(r, addr, false); }
inline void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) { ldmatrix_common(r, addr, true); }

inline float half_of(uint32_t reg, int h) { return bf16_bits_to_f32((uint16_t)(h ? reg >> 16 : reg & 0xffffu)); }

inline void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  emu::WarpExchange &x = emu::g_block->wx[emu::tid() / 32];
  const int lane = emu::tid() & 31;
  memcpy(x.a[lane], a, sizeof a);
  memcpy(x.b[lane], b, sizeof b);
  memcpy(x.c[lane], d, sizeof d);
  emu::warp_wait();
  float out[4];
  for (int reg = 0; reg < 4; reg++) {
    const int r = lane / 4 + 8 * (reg / 2), n = 2 * (lane % 4) + reg % 2;
    float acc = x.c[lane][reg];
    for (int k = 0; k < 16; k++) {
      const float av = half_of(x.a[(r % 8) * 4 + (k % 8) / 2][r / 8 + 2 * (k / 8)], k % 2);
      const float bv = half_of(x.b[n * 4 + (k % 8) / 2][k / 8], k % 2);
      acc += av * bv;
    }
    out[reg] = acc;
  }
  emu::warp_wait();
  memcpy(d, out, sizeof out);
}

}  // namespace moe4j
