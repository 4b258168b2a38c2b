/* The FlashAttention-2 CUDA kernels (kernels/flash_attention_kernels.cuh, the very code
 * flash_attention.cu compiles for the GPU) run on the CPU under a small warp emulator, against the
 * CPU twin, so the fragment plumbing (ldmatrix / mma.sync layouts, swizzled tiles, P and dS kept in
 * registers), the online softmax, masks, tile ranges, the cp.async stage rotation, GQA, varlen
 * slots and the epilogues are checked on a machine without a GPU.
 *
 * Emulator: each CUDA thread of a block is a ucontext fiber (128 per block, blocks run one after
 * another on one OS thread). __syncthreads and the warp-collective operations are barriers: a
 * fiber publishes its operands, waits for its warp (or block), computes its own result from
 * everyone's operands, and waits again before the exchange slots are reused. The collectives follow
 * the PTX ISA definitions, written here independently of the kernels:
 *   ldmatrix.x4: lanes 8j..8j+7 give the row addresses of matrix j; lane l receives row l/4,
 *     elements 2(l%4), 2(l%4)+1 of each matrix (.trans: column l/4, rows 2(l%4), 2(l%4)+1);
 *   mma.m16n8k16 bf16: A element (r, k) sits in lane (r%8)*4 + (k%8)/2, register (r/8) + 2(k/8),
 *     half k%2; B (k, n) in lane n*4 + (k%8)/2, register k/8, half k%2; C/D (r, n) in lane
 *     (r%8)*4 + n/2, register 2(r/8) + n%2; D = C + sum_k A B in f32, k ascending;
 *   shfl.xor; cp.async as a 16-byte copy (zero fill when invalid) that lands either at issue or,
 *     in the late mode, only at the cp.async.wait_group covering its commit group; shared memory
 *     is poisoned (0xff bytes: bf16 NaN) before every block, so reading a tile before it landed
 *     shows up as NaN. Exponentials use exp2f where the GPU uses ex2.approx (the kernels' host
 *     fallback), so the tolerances are those of kernels/tests/test_flash_attention.cpp.
 * Cases: D 64 and 128, causal / not, windows (one spanning tile edges, so whole tiles are skipped),
 * GQA 2:1 and 4:1, S = 1, 64 (one exact tile), 70..200 (partial last tiles), a varlen batch with an
 * empty and a 1-token sequence, and an invalid cu_seqlens whose uncovered tokens must come out
 * zero (orphan kernel).
 * Not emulated: timing, bank conflicts, and landing times between the two extremes.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>

#include <functional>
#include <vector>

#include "attention_tiles.h"
#include "check.h"
#include "moe4j.h"
#include "numerics.h"

/* ---- CUDA surface of the emulator --------------------------------------------------------- */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
  unsigned int x = 1, y = 1, z = 1;
};
struct uint4 {
  uint32_t x, y, z, w;
};
inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return uint4{x, y, z, w}; }

dim3 blockIdx, gridDim, blockDim;

namespace emu {

constexpr int kThreads = 128, kStack = 1 << 16;
constexpr size_t kSmemBytes = 100 * 1024;

struct Barrier {
  int arrived = 0;
  unsigned gen = 0;
};

struct WarpExchange {
  uint32_t addr[32];
  uint32_t a[32][4], b[32][2];
  float c[32][4], f[32];
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
  dim3 tid;
  bool done;
  const Barrier *wait_on; /* blocked until wait_on->gen != wait_gen */
  unsigned wait_gen;
  std::vector<char> stack;
};

struct Block {
  ucontext_t sched;
  Fiber fibers[kThreads];
  int cur = 0;
  Barrier warp_bar[kThreads / 32], block_bar;
  WarpExchange wx[kThreads / 32];
  std::function<void()> body;
};

Block *g_block = nullptr;
/* cp.async landing: eager (at issue: catches a prefetch that overwrites a stage still being read)
 * or late (at the cp.async.wait_group that must cover it: catches reading a tile before its wait
 * and barrier). The data is the source as of the issue, as on the GPU. */
bool g_late_cp_async = false;
extern unsigned char *const g_smem; /* the kernels' `extern __shared__ smem[]`, below */

inline Fiber &me() { return g_block->fibers[g_block->cur]; }
inline int tid() { return (int)me().tid.x; }

inline void yield() { swapcontext(&me().ctx, &g_block->sched); }

inline void wait(Barrier &b, int n) {
  if (++b.arrived == n) {
    b.arrived = 0;
    b.gen++;
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

/* Runs `body` as the 128 threads of the block blockIdx. */
void run_block(const std::function<void()> &body) {
  Block *b = new Block();
  g_block = b;
  b->body = body;
  memset(g_smem, 0xff, kSmemBytes);
  for (int t = 0; t < kThreads; t++) {
    Fiber &f = b->fibers[t];
    f.tid.x = (unsigned)t;
    f.done = false;
    f.wait_on = nullptr;
    f.pending.clear();
    f.committed = 0;
    f.stack.resize(kStack);
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.data();
    f.ctx.uc_stack.ss_size = f.stack.size();
    f.ctx.uc_link = &b->sched;
    makecontext(&f.ctx, fiber_entry, 0);
  }
  for (;;) {
    bool live = false, ran = false;
    for (int t = 0; t < kThreads; t++) {
      Fiber &f = b->fibers[t];
      if (f.done) continue;
      live = true;
      if (f.wait_on != nullptr && f.wait_on->gen == f.wait_gen) continue;
      ran = true;
      b->cur = t;
      swapcontext(&b->sched, &f.ctx);
    }
    if (!live) break;
    if (!ran) { /* every live fiber waits and no barrier can complete */
      fprintf(stderr, "emulator: deadlock in block (%u, %u, %u)\n", blockIdx.x, blockIdx.y, blockIdx.z);
      abort();
    }
  }
  g_block = nullptr;
  delete b;
}

template <typename F>
void run_grid(dim3 grid, F kernel) {
  gridDim = grid;
  blockDim = dim3{(unsigned)kThreads, 1, 1};
  for (unsigned z = 0; z < grid.z; z++)
    for (unsigned y = 0; y < grid.y; y++)
      for (unsigned x = 0; x < grid.x; x++) {
        blockIdx = dim3{x, y, z};
        run_block(kernel);
      }
}

}  // namespace emu

#define threadIdx (emu::me().tid)

inline void __syncthreads() { emu::wait(emu::g_block->block_bar, emu::kThreads); }

inline float __shfl_xor_sync(unsigned, float v, int mask) {
  emu::WarpExchange &x = emu::g_block->wx[emu::tid() / 32];
  const int lane = emu::tid() & 31;
  x.f[lane] = v;
  emu::warp_wait();
  const float r = x.f[lane ^ mask];
  emu::warp_wait();
  return r;
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

/* the kernels under test */
#include "../../kernels/flash_attention_kernels.cuh"

using namespace moe4j;

namespace {

using Bits = uint16_t;

std::vector<Bits> encode(const std::vector<float> &v) {
  std::vector<Bits> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = f32_to_bf16_bits(v[i]);
  return out;
}

struct Case {
  int64_t batch, seq;
  std::vector<int32_t> cu; /* empty: uniform */
  int64_t hq, hkv;
  int d;
  int32_t causal;
  int64_t window;
  int64_t tokens() const { return cu.empty() ? batch * seq : seq; }
};

bool close(const char *what, const Case &c, const std::vector<Bits> &got,
           const std::vector<Bits> &want, double rel, double norm) {
  double mx = 0;
  for (Bits x : want) mx = fmax(mx, fabs((double)bf16_bits_to_f32(x)));
  for (size_t i = 0; i < want.size(); i++) {
    const double a = bf16_bits_to_f32(got[i]), b = bf16_bits_to_f32(want[i]);
    if (!(fabs(a - b) <= rel * fabs(b) + norm * mx)) {
      char msg[300];
      snprintf(msg, sizeof msg, "%s[%zu] = %.7g, want %.7g (max %.3g) %s S%lld Hq%lld Hkv%lld D%d causal %d window %lld",
               what, i, a, b, mx, c.cu.empty() ? "uniform" : "varlen", (long long)c.seq,
               (long long)c.hq, (long long)c.hkv, c.d, c.causal, (long long)c.window);
      check::report(__FILE__, __LINE__, msg);
      return false;
    }
  }
  return true;
}

/* The launch geometry of flash_attention.cu (tile_grid). */
dim3 grid_of(const Case &c, int64_t heads) {
  if (!c.cu.empty())
    return dim3{(unsigned)attn_varlen_slot_count(c.batch, c.seq), (unsigned)heads, 1u};
  return dim3{(unsigned)attn_tile_count(c.seq, kFaRows), (unsigned)heads, (unsigned)c.batch};
}

template <int D>
void run_case(const Case &c, uint64_t seed) {
  const size_t nq = c.tokens() * c.hq * D, nkv = c.tokens() * c.hkv * D, nl = c.tokens() * c.hq;
  const float scale = 1.0f / sqrtf((float)D);
  const std::vector<Bits> q = encode(check::randn(nq, seed)), k = encode(check::randn(nkv, seed + 1)),
                          v = encode(check::randn(nkv, seed + 2)),
                          dout = encode(check::randn(nq, seed + 3));
  const int32_t *cu = c.cu.empty() ? nullptr : c.cu.data();
  const Bits nan = f32_to_bf16_bits(NAN);

  /* CPU twin */
  std::vector<Bits> out_c(nq, nan), dq_c(nq, nan), dk_c(nkv, nan), dv_c(nkv, nan);
  std::vector<float> lse_c(nl, NAN);
  CHECK_STATUS(moe4j_cpu_attention_forward(MOE4J_DTYPE_BF16, q.data(), k.data(), v.data(),
                                           out_c.data(), lse_c.data(), cu, c.batch, c.seq, c.hq,
                                           c.hkv, D, c.causal, c.window, scale), MOE4J_OK);
  int64_t ws_bytes = 0;
  CHECK_STATUS(moe4j_cpu_attention_backward_workspace_bytes(cu ? 1 : c.batch, c.seq, c.hq, D,
                                                            &ws_bytes), MOE4J_OK);
  std::vector<float> ws_c(ws_bytes / 4 + 1);
  CHECK_STATUS(moe4j_cpu_attention_backward(MOE4J_DTYPE_BF16, q.data(), k.data(), v.data(),
                                            out_c.data(), dout.data(), lse_c.data(), dq_c.data(),
                                            dk_c.data(), dv_c.data(), cu, c.batch, c.seq, c.hq,
                                            c.hkv, D, c.causal, c.window, scale, ws_c.data(),
                                            ws_bytes), MOE4J_OK);

  /* the kernels, emulated; the backward reads the CPU forward's out / lse like the GPU test */
  std::vector<Bits> out(nq, nan), dq(nq, nan), dk(nkv, nan), dv(nkv, nan);
  std::vector<float> lse(nl, NAN), dsum(nl, NAN);
  FaParams p;
  p.q = (const bf16_t *)q.data();
  p.k = (const bf16_t *)k.data();
  p.v = (const bf16_t *)v.data();
  p.out = (const bf16_t *)out_c.data();
  p.dout = (const bf16_t *)dout.data();
  p.dk = (bf16_t *)dk.data();
  p.dv = (bf16_t *)dv.data();
  p.lse_in = lse_c.data();
  p.lse_out = lse.data();
  p.dsum = dsum.data();
  p.cu = cu;
  p.batch = c.batch;
  p.seq = c.seq;
  p.q_heads = (int)c.hq;
  p.kv_heads = (int)c.hkv;
  p.causal = c.causal != 0;
  p.window = c.window;
  p.scale = scale;
  p.o_or_dq = (bf16_t *)out.data();
  emu::run_grid(grid_of(c, c.hq), [&] { flash_fwd_kernel<D>(p); });
  p.o_or_dq = (bf16_t *)dq.data();
  emu::run_grid(grid_of(c, c.hq), [&] { flash_bwd_dot_kernel<D>(p); });
  emu::run_grid(grid_of(c, c.hkv), [&] { flash_bwd_dkv_kernel<D>(p); });
  emu::run_grid(grid_of(c, c.hq), [&] { flash_bwd_dq_kernel<D>(p); });
  if (cu != nullptr) { /* tokens in no sequence: none here, so this must leave everything as is */
    const std::vector<Bits> before = dq;
    emu::run_grid(dim3{(unsigned)attn_tile_count(c.seq, kFaThreads), 1, 1}, [&] {
      flash_varlen_orphans_kernel(cu, c.batch, c.seq, D, (bf16_t *)dq.data(), (int)c.hq, nullptr,
                                  (bf16_t *)dk.data(), (bf16_t *)dv.data(), (int)c.hkv);
    });
    CHECK(memcmp(before.data(), dq.data(), nq * 2) == 0);
  }

  close("out", c, out, out_c, 1.0 / 128, 4e-3);
  for (size_t i = 0; i < nl; i++)
    if (!(fabsf(lse[i] - lse_c[i]) <= 1e-3f * (1.0f + fabsf(lse_c[i])))) {
      char msg[160];
      snprintf(msg, sizeof msg, "lse[%zu] = %.9g, want %.9g (S%lld D%d)", i, lse[i], lse_c[i],
               (long long)c.seq, D);
      check::report(__FILE__, __LINE__, msg);
      break;
    }
  close("dq", c, dq, dq_c, 1.0 / 64, 2e-2);
  close("dk", c, dk, dk_c, 1.0 / 64, 2e-2);
  close("dv", c, dv, dv_c, 1.0 / 64, 2e-2);
}

}  // namespace

TEST_CASE(forward_and_backward_match_cpu_twin_d64) {
  run_case<64>(Case{1, 130, {}, 2, 1, 64, 1, 0}, 100); /* GQA, causal, partial last tile */
  run_case<64>(Case{1, 70, {}, 2, 2, 64, 0, 37}, 110); /* window, not causal */
  run_case<64>(Case{2, 1, {}, 2, 1, 64, 1, 0}, 120);   /* single-token sequences, batch 2 */
  run_case<64>(Case{4, 150, {0, 70, 70, 71, 150}, 2, 1, 64, 1, 0}, 130); /* varlen, empty seq */
  run_case<64>(Case{1, 200, {}, 1, 1, 64, 1, 70}, 140); /* window over tile edges: tiles skipped */
}

TEST_CASE(forward_and_backward_match_cpu_twin_d128) {
  run_case<128>(Case{1, 100, {}, 4, 1, 128, 1, 20}, 200); /* GQA 4:1, causal + window */
  run_case<128>(Case{1, 64, {}, 1, 1, 128, 0, 0}, 210);   /* one exact tile */
}

TEST_CASE(pipeline_holds_when_cp_async_lands_late) {
  emu::g_late_cp_async = true;
  run_case<64>(Case{1, 200, {}, 2, 1, 64, 1, 0}, 400);
  run_case<128>(Case{3, 150, {0, 70, 71, 150}, 2, 2, 128, 0, 40}, 410);
  emu::g_late_cp_async = false;
}

TEST_CASE(tokens_outside_every_sequence_get_zeros) {
  /* c[B] = 30 < T = 50: tokens 30..49 lie in no sequence; the tile kernels skip them and the
   * orphan kernel (run after them, as flash_attention.cu does) must zero out / lse / gradients */
  const int64_t T = 50, H = 2, D = 64;
  const std::vector<int32_t> cu = {0, 20, 30};
  const Bits nan = f32_to_bf16_bits(NAN);
  const std::vector<Bits> q = encode(check::randn(T * H * D, 5)), k = encode(check::randn(T * H * D, 6)),
                          v = encode(check::randn(T * H * D, 7));
  std::vector<Bits> out(T * H * D, nan), dk(T * H * D, nan), dv(T * H * D, nan);
  std::vector<float> lse(T * H, NAN);
  FaParams p{};
  p.q = (const bf16_t *)q.data();
  p.k = (const bf16_t *)k.data();
  p.v = (const bf16_t *)v.data();
  p.o_or_dq = (bf16_t *)out.data();
  p.lse_out = lse.data();
  p.cu = cu.data();
  p.batch = 2;
  p.seq = T;
  p.q_heads = p.kv_heads = (int)H;
  p.causal = true;
  p.scale = 0.125f;
  emu::run_grid(dim3{(unsigned)attn_varlen_slot_count(2, T), (unsigned)H, 1u},
                [&] { flash_fwd_kernel<64>(p); });
  emu::run_grid(dim3{1, 1, 1}, [&] {
    flash_varlen_orphans_kernel(cu.data(), 2, T, (int)D, (bf16_t *)out.data(), (int)H, lse.data(),
                                (bf16_t *)dk.data(), (bf16_t *)dv.data(), (int)H);
  });
  bool orphans_zero = true, inside_finite = true;
  for (int64_t t = 0; t < T; t++)
    for (int64_t h = 0; h < H; h++) {
      const float l = lse[h * T + t];
      for (int64_t d = 0; d < D; d++) {
        const size_t e = (t * H + h) * D + d;
        const float o = bf16_bits_to_f32(out[e]);
        if (t >= 30)
          orphans_zero = orphans_zero && o == 0.0f && bf16_bits_to_f32(dk[e]) == 0.0f &&
                         bf16_bits_to_f32(dv[e]) == 0.0f && l == -INFINITY;
        else
          inside_finite = inside_finite && isfinite(o) && isfinite(l);
      }
    }
  CHECK(orphans_zero);
  CHECK(inside_finite);
}

TEST_MAIN("flash_attention_emulated")
