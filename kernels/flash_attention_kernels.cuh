/*
 * The device code of the FlashAttention-2 kernels (see kernels/flash_attention.cu for what, layout,
 * tiling and why), in a header so a CPU test can run the very same kernels under a warp emulator
 * (native/tests/test_flash_attention_emulated.cpp). The includer provides the CUDA builtins and
 * the sm_80 wrappers of common/mma_ptx.cuh (smem_addr, cp_async_*, ldmatrix_x4*,
 * mma_bf16_16816): flash_attention.cu includes cuda_check.cuh and mma_ptx.cuh, the emulation test
 * its host versions. Include once per translation unit (internal linkage).
 */
#pragma once
#include <math.h>
#include <stdint.h>

#include "attention_tiles.h"
#include "hd.h"
#include "numerics.h"

namespace moe4j {

namespace {

constexpr int kFaThreads = 128; /* 4 warps */
constexpr int kFaRows = 64;     /* rows of every staged tile (kAttnBlockQ == kAttnBlockK) */
static_assert(kAttnBlockQ == kFaRows && kAttnBlockK == kFaRows,
              "the kernels tile with the shared 64 x 64 tiles of attention_tiles.h");
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

/* Everything a launch needs, passed by value. */
struct FaParams {
  const bf16_t *q, *k, *v, *out, *dout;
  bf16_t *o_or_dq; /* forward: out; backward: dq */
  bf16_t *dk, *dv;
  const float *lse_in;
  float *lse_out;
  float *dsum; /* backward: D_i workspace (lse layout) */
  const int32_t *cu;
  int64_t batch, seq;
  int q_heads, kv_heads;
  bool causal;
  int64_t window;
  float scale;
};

/* Byte size of one [64][D] bf16 tile. */
template <int D>
constexpr int tile_bytes() {
  return kFaRows * D * 2;
}

/* Starts the cp.async copies of rows [0, rows_valid) of a [64][D] tile whose row r is at
 * src + r * ld (elements); rows >= rows_valid are zero-filled. 16-byte chunks, 128 threads. */
template <int D>
__device__ __forceinline__ void load_tile(uint32_t dst, const bf16_t *src, int64_t ld,
                                          int64_t rows_valid, const bf16_t *fallback) {
  constexpr int kChunks = D / 8;
MOE4J_UNROLL
  for (int it = 0; it < kFaRows * kChunks / kFaThreads; it++) {
    const int q = threadIdx.x + it * kFaThreads;
    const int row = q / kChunks, chunk = q % kChunks;
    const bool valid = row < rows_valid;
    const void *s = valid ? (const void *)(src + row * ld + chunk * 8) : (const void *)fallback;
    cp_async_16(dst + 2 * attn_smem_swizzle(row, chunk, D), s, valid);
  }
}

/* bf16x2 of (lo, hi), round to nearest even: lo in the low half (the lower column of an A
 * fragment register). */
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
#ifdef __CUDA_ARCH__
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
#else /* the emulation test: the same round to nearest even */
  return (uint32_t)f32_to_bf16_bits(lo) | ((uint32_t)f32_to_bf16_bits(hi) << 16);
#endif
}

__device__ __forceinline__ float fast_exp2(float x) {
#ifdef __CUDA_ARCH__
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
#else
  return exp2f(x);
#endif
}

/* This lane's ldmatrix row address for (row R + lr, chunk C + lc) of a swizzled [64][D] tile
 * (attn_smem_swizzle), where R % 8 == 0 and C is even (every call site): only the low 3 chunk bits
 * depend on the lane, so 4 per-lane offsets (attn_smem_lane_part) cover every (R, C) and the rest
 * is warp-uniform or an immediate. Computing addresses this way (instead of attn_smem_swizzle per
 * call) keeps ptxas from holding one hoisted address register per fragment. */
template <int D>
struct LaneOffsets {
  uint32_t off[4];
  __device__ __forceinline__ LaneOffsets(int lr, int lc) {
MOE4J_UNROLL
    for (int c = 0; c < 4; c++) off[c] = 2u * (uint32_t)attn_smem_lane_part(lr, lc, c, D);
  }
  __device__ __forceinline__ uint32_t at(uint32_t tile, int r, int c) const {
    return tile + 2u * (uint32_t)(r * D + (c & ~7) * 8) + off[(c >> 1) & 3];
  }
};

/* The three ldmatrix.x4 lane patterns (see mma_ptx.cuh; j4 = lane / 8 picks the 8x8 matrix):
 *  a:    A fragment, rows R + lane % 16, chunk C + lane / 16 (16 rows x 16 k of a [m][k] tile);
 *  brow: B fragments of two n8 blocks, reduction along D: n rows R + (j4 / 2) 8 + lane % 8,
 *        chunk C + j4 % 2 ([n][k] tile; registers 0, 1 = block R, 2, 3 = block R + 8);
 *  bcol: the same with the reduction along the rows, via .trans: k rows R + (j4 % 2) 8 + lane % 8,
 *        chunk C + j4 / 2 ([k][n] tile; registers 0, 1 = D columns 8 C.., 2, 3 = the next 8). */
template <int D>
struct Frags {
  LaneOffsets<D> a, brow, bcol;
  __device__ __forceinline__ explicit Frags(int lane)
      : a(lane & 15, lane >> 4),
        brow(((lane >> 4) << 3) + (lane & 7), (lane >> 3) & 1),
        bcol((((lane >> 3) & 1) << 3) + (lane & 7), lane >> 4) {}
};

__device__ __forceinline__ void split_b(uint32_t (&b0)[2], uint32_t (&b1)[2], const uint32_t (&r)[4]) {
  b0[0] = r[0];
  b0[1] = r[1];
  b1[0] = r[2];
  b1[1] = r[3];
}

/* The 16 x 16 block kk of a 16 x 64 f32 accumulator set as a bf16 A fragment (see mma_ptx.cuh:
 * C c0,c1 = (g, 2t..), c2,c3 = (g+8, 2t..); A a0 = (g, 2t..), a1 = (g+8, 2t..), a2/a3 the same
 * 8 columns further). */
template <int NB>
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&s)[NB][4], int kk) {
  a[0] = pack_bf16x2(s[2 * kk][0], s[2 * kk][1]);
  a[1] = pack_bf16x2(s[2 * kk][2], s[2 * kk][3]);
  a[2] = pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
  a[3] = pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
}

/* s (16 x 8 NB per warp) = A (16 x D: rows a_row0.. of tile a) . B^T (8 NB rows b_row0.. of
 * tile b, k = D). */
template <int D, int NB = 8>
__device__ __forceinline__ void gemm_rows(float (&s)[NB][4], uint32_t a_tile, int a_row0,
                                          uint32_t b_tile, const Frags<D> &f, int b_row0 = 0) {
MOE4J_UNROLL
  for (int n = 0; n < NB; n++)
MOE4J_UNROLL
    for (int r = 0; r < 4; r++) s[n][r] = 0.0f;
MOE4J_UNROLL
  for (int kk = 0; kk < D / 16; kk++) {
    uint32_t a[4];
    ldmatrix_x4(a, f.a.at(a_tile, a_row0, 2 * kk));
MOE4J_UNROLL
    for (int np = 0; np < NB / 2; np++) {
      uint32_t r[4], b0[2], b1[2];
      ldmatrix_x4(r, f.brow.at(b_tile, b_row0 + np * 16, 2 * kk));
      split_b(b0, b1, r);
      mma_bf16_16816(s[2 * np], a, b0);
      mma_bf16_16816(s[2 * np + 1], a, b1);
    }
  }
}

/* acc (16 x D per warp) += P (16 x 8 NB, f32 accumulators, rounded to bf16) . rows k_row0 ..
 * k_row0 + 8 NB - 1 of tile (x D). */
template <int D, int NB = 8>
__device__ __forceinline__ void gemm_acc_cols(float (&acc)[D / 8][4], const float (&p)[NB][4],
                                              uint32_t tile, const Frags<D> &f, int k_row0 = 0) {
MOE4J_UNROLL
  for (int kk = 0; kk < NB / 2; kk++) {
    uint32_t a[4];
    acc_to_a<NB>(a, p, kk);
MOE4J_UNROLL
    for (int dp = 0; dp < D / 16; dp++) {
      uint32_t r[4], b0[2], b1[2];
      ldmatrix_x4_trans(r, f.bcol.at(tile, k_row0 + kk * 16, 2 * dp));
      split_b(b0, b1, r);
      mma_bf16_16816(acc[2 * dp], a, b0);
      mma_bf16_16816(acc[2 * dp + 1], a, b1);
    }
  }
}

/* Sum over the 4 lanes of a quad (the lanes sharing an accumulator row), fixed butterfly. */
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

/* Sets the accumulator elements of masked (row, col) pairs to `fill`. Element (n, r) of a
 * 16 x 8 NB set is row row0 + g + 8 (r >> 1), column col0 + 8 n + 2 t + (r & 1). The rows are queries
 * (KEY_ROWS false) or keys (KEY_ROWS true); both must be < len besides attn_allowed. */
template <bool KEY_ROWS, int NB = 8>
__device__ __forceinline__ void apply_mask(float (&s)[NB][4], int64_t row0, int64_t col0,
                                           int64_t len, bool causal, int64_t w, int lane,
                                           float fill) {
  const int g = lane >> 2, t = lane & 3;
MOE4J_UNROLL
  for (int n = 0; n < NB; n++)
MOE4J_UNROLL
    for (int r = 0; r < 4; r++) {
      const int64_t row = row0 + g + 8 * (r >> 1), col = col0 + 8 * n + 2 * t + (r & 1);
      const int64_t i = KEY_ROWS ? col : row, j = KEY_ROWS ? row : col;
      if (!(i < len && j < len && attn_allowed(i, j, causal, w))) s[n][r] = fill;
    }
}

/* Row r (< len) of a sequence's [tokens, heads, D] tensor for head h. */
__device__ __forceinline__ int64_t row_elem(int64_t start, int64_t r, int64_t heads, int64_t h,
                                            int D) {
  return ((start + r) * heads + h) * (int64_t)D;
}

/* Stores rows row0 + g and row0 + g + 8 (when < len) of a 16 x D accumulator set times `mul`. */
template <int D>
__device__ __forceinline__ void store_rows(bf16_t *base, int64_t start, int64_t row0, int64_t len,
                                           int64_t heads, int64_t h, const float (&acc)[D / 8][4],
                                           float mul0, float mul1, int lane) {
  const int g = lane >> 2, t = lane & 3;
MOE4J_UNROLL
  for (int hh = 0; hh < 2; hh++) {
    const int64_t r = row0 + g + 8 * hh;
    if (r >= len) continue;
    const float mul = hh == 0 ? mul0 : mul1;
    uint32_t *dst = reinterpret_cast<uint32_t *>(base + row_elem(start, r, heads, h, D) + 2 * t);
MOE4J_UNROLL
    for (int n = 0; n < D / 8; n++)
      dst[4 * n] = pack_bf16x2(acc[n][2 * hh] * mul, acc[n][2 * hh + 1] * mul);
  }
}

/* The (sequence, 64-row tile) of this block. Uniform batch: sequence blockIdx.z, tile blockIdx.x
 * (descending when `reverse`). Varlen: blockIdx.x is a slot of attn_varlen_slot (grid.z = 1).
 * False when the tile lies past the sequence's end (surplus blocks, spare slots). */
__device__ __forceinline__ bool block_tile(const FaParams &p, bool reverse, AttnSeq &sq,
                                           int64_t &tile) {
  const int64_t x = reverse ? (int64_t)gridDim.x - 1 - blockIdx.x : (int64_t)blockIdx.x;
  int64_t b = blockIdx.z;
  tile = x;
  if (p.cu != nullptr) {
    const AttnSlot s = attn_varlen_slot(p.cu, p.batch, p.seq, x);
    if (s.seq < 0) return false;
    b = s.seq;
    tile = s.tile;
  }
  sq = attn_sequence(p.cu, b, p.seq, p.q_heads);
  return tile * kFaRows < sq.len;
}

/* ---- forward ------------------------------------------------------------------------------ */

template <int D>
__global__ void __launch_bounds__(kFaThreads) flash_fwd_kernel(FaParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t s_q = smem_addr(smem), s_k = s_q + tile_bytes<D>(),
                 s_v = s_k + 2 * tile_bytes<D>();
  const int64_t h = blockIdx.y;
  AttnSeq sq;
  int64_t qt;
  if (!block_tile(p, true, sq, qt)) return; /* the longest causal rows start first */
  const int64_t len = sq.len, w = attn_window(p.window, len);
  const int64_t q0 = qt * kFaRows, q1 = q0 + kFaRows < len ? q0 + kFaRows : len;
  const int64_t kvh = h / (p.q_heads / p.kv_heads);
  const int64_t ldq = (int64_t)p.q_heads * D, ldk = (int64_t)p.kv_heads * D;
  const bf16_t *gk = p.k + row_elem(sq.start, 0, p.kv_heads, kvh, D);
  const bf16_t *gv = p.v + row_elem(sq.start, 0, p.kv_heads, kvh, D);
  const AttnRange kr = attn_key_tiles(qt, len, p.causal, w);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const Frags<D> fr(lane);

  load_tile<D>(s_q, p.q + row_elem(sq.start, q0, p.q_heads, h, D), ldq, q1 - q0, p.q);
  if (kr.begin < kr.end) {
    const int64_t k0 = kr.begin * kFaRows;
    load_tile<D>(s_k, gk + k0 * ldk, ldk, len - k0, p.k);
    load_tile<D>(s_v, gv + k0 * ldk, ldk, len - k0, p.v);
  }
  cp_async_commit();

  float o[D / 8][4];
MOE4J_UNROLL
  for (int n = 0; n < D / 8; n++)
MOE4J_UNROLL
    for (int r = 0; r < 4; r++) o[n][r] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const float sl2 = p.scale * kLog2e;
  const int64_t row0 = q0 + warp * 16;

  for (int64_t kt = kr.begin; kt < kr.end; kt++) {
    const int stage = (int)((kt - kr.begin) & 1);
    cp_async_wait<0>(); /* tile kt (and Q) landed for this thread */
    __syncthreads();    /* ... for all; every warp is done with stage ^ 1 (tile kt - 1) */
    if (kt + 1 < kr.end) {
      const int64_t k0 = (kt + 1) * kFaRows;
      load_tile<D>(s_k + (stage ^ 1) * tile_bytes<D>(), gk + k0 * ldk, ldk, len - k0, p.k);
      load_tile<D>(s_v + (stage ^ 1) * tile_bytes<D>(), gv + k0 * ldk, ldk, len - k0, p.v);
    }
    cp_async_commit();

    const int64_t k0 = kt * kFaRows, k1 = k0 + kFaRows;
    float s[8][4];
    gemm_rows<D>(s, s_q, warp * 16, s_k + stage * tile_bytes<D>(), fr);
    if (k1 > len || !attn_tile_unmasked(q0, q1, k0, k1, p.causal, w))
      apply_mask<false>(s, row0, k0, len, p.causal, w, lane, -INFINITY);

    /* online softmax, rows g (hh = 0) and g + 8 (hh = 1) of the warp */
MOE4J_UNROLL
    for (int hh = 0; hh < 2; hh++) {
      float mx = -INFINITY;
MOE4J_UNROLL
      for (int n = 0; n < 8; n++) mx = fmaxf(mx, fmaxf(s[n][2 * hh], s[n][2 * hh + 1]));
      const float m_new = fmaxf(m[hh], quad_max(mx) * sl2);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new; /* all masked so far: no NaN */
      const float alpha = fast_exp2(m[hh] - m_use);
      m[hh] = m_new;
      l[hh] *= alpha;
MOE4J_UNROLL
      for (int n = 0; n < D / 8; n++) {
        o[n][2 * hh] *= alpha;
        o[n][2 * hh + 1] *= alpha;
      }
MOE4J_UNROLL
      for (int n = 0; n < 8; n++)
MOE4J_UNROLL
        for (int e = 0; e < 2; e++) {
          const float pe = fast_exp2(fmaf(s[n][2 * hh + e], sl2, -m_use));
          s[n][2 * hh + e] = pe;
          l[hh] += pe;
        }
    }
    gemm_acc_cols<D>(o, s, s_v + stage * tile_bytes<D>(), fr);
  }
  cp_async_wait<0>(); /* nothing may stay in flight past the block's end */

  float inv[2];
  const int g = lane >> 2;
MOE4J_UNROLL
  for (int hh = 0; hh < 2; hh++) {
    const float lsum = quad_sum(l[hh]);
    inv[hh] = lsum > 0.0f ? 1.0f / lsum : 0.0f; /* no visible key: out = 0 */
    const int64_t r = row0 + g + 8 * hh;
    if ((lane & 3) == 0 && r < len)
      p.lse_out[sq.lse_base + h * p.seq + r] = lsum > 0.0f ? (m[hh] + log2f(lsum)) * kLn2 : -INFINITY;
  }
  store_rows<D>(p.o_or_dq, sq.start, row0, len, p.q_heads, h, o, inv[0], inv[1], lane);
}

/* ---- backward ----------------------------------------------------------------------------- */

/* D_i = Σ_d dO[i, d] O[i, d] (f32) for the 64 rows of a q tile: two threads per row, each half of
 * D in 16-byte pieces, combined with one shuffle (fixed order). */
template <int D>
__global__ void __launch_bounds__(kFaThreads) flash_bwd_dot_kernel(FaParams p) {
  const int64_t h = blockIdx.y;
  AttnSeq sq;
  int64_t qt;
  if (!block_tile(p, false, sq, qt)) return;
  const int64_t r = qt * kFaRows + (threadIdx.x >> 1);
  const int half = threadIdx.x & 1;
  float acc = 0.0f;
  if (r < sq.len) {
    const int64_t e = row_elem(sq.start, r, p.q_heads, h, D) + half * (D / 2);
    const uint4 *go = reinterpret_cast<const uint4 *>(p.out + e);
    const uint4 *gd = reinterpret_cast<const uint4 *>(p.dout + e);
MOE4J_UNROLL
    for (int c = 0; c < D / 16; c++) {
      const uint4 a = go[c], d = gd[c];
      const uint32_t av[4] = {a.x, a.y, a.z, a.w}, dv[4] = {d.x, d.y, d.z, d.w};
MOE4J_UNROLL
      for (int x = 0; x < 4; x++) {
        acc = fmaf(bf16_bits_to_f32((uint16_t)(av[x] & 0xffffu)),
                   bf16_bits_to_f32((uint16_t)(dv[x] & 0xffffu)), acc);
        acc = fmaf(bf16_bits_to_f32((uint16_t)(av[x] >> 16)),
                   bf16_bits_to_f32((uint16_t)(dv[x] >> 16)), acc);
      }
    }
  }
  acc += __shfl_xor_sync(0xffffffffu, acc, 1);
  if (half == 0 && r < sq.len) p.dsum[sq.lse_base + h * p.seq + r] = acc;
}

/* lse in log2 units for P = 2^(s scale log2 e - lse2); +inf (P = 0) for a row without keys
 * (lse = -inf) and for rows past the sequence end. */
__device__ __forceinline__ float lse_log2(float lse, bool valid) {
  return (!valid || lse == -INFINITY) ? INFINITY : lse * kLog2e;
}

template <int D>
__global__ void __launch_bounds__(kFaThreads) flash_bwd_dq_kernel(FaParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t s_q = smem_addr(smem), s_do = s_q + tile_bytes<D>(),
                 s_k = s_do + tile_bytes<D>(), s_v = s_k + 2 * tile_bytes<D>();
  const int64_t h = blockIdx.y;
  AttnSeq sq;
  int64_t qt;
  if (!block_tile(p, true, sq, qt)) return; /* the longest causal rows start first */
  const int64_t len = sq.len, w = attn_window(p.window, len);
  const int64_t q0 = qt * kFaRows, q1 = q0 + kFaRows < len ? q0 + kFaRows : len;
  const int64_t kvh = h / (p.q_heads / p.kv_heads);
  const int64_t ldq = (int64_t)p.q_heads * D, ldk = (int64_t)p.kv_heads * D;
  const bf16_t *gk = p.k + row_elem(sq.start, 0, p.kv_heads, kvh, D);
  const bf16_t *gv = p.v + row_elem(sq.start, 0, p.kv_heads, kvh, D);
  const AttnRange kr = attn_key_tiles(qt, len, p.causal, w);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2;
  const Frags<D> fr(lane);

  const int64_t qe = row_elem(sq.start, q0, p.q_heads, h, D);
  load_tile<D>(s_q, p.q + qe, ldq, q1 - q0, p.q);
  load_tile<D>(s_do, p.dout + qe, ldq, q1 - q0, p.dout);
  if (kr.begin < kr.end) {
    const int64_t k0 = kr.begin * kFaRows;
    load_tile<D>(s_k, gk + k0 * ldk, ldk, len - k0, p.k);
    load_tile<D>(s_v, gv + k0 * ldk, ldk, len - k0, p.v);
  }
  cp_async_commit();

  const int64_t row0 = q0 + warp * 16;
  float lse2[2], di[2];
MOE4J_UNROLL
  for (int hh = 0; hh < 2; hh++) {
    const int64_t r = row0 + g + 8 * hh;
    const int64_t idx = sq.lse_base + h * p.seq + r;
    lse2[hh] = lse_log2(r < len ? p.lse_in[idx] : 0.0f, r < len);
    di[hh] = r < len ? p.dsum[idx] : 0.0f;
  }
  float dq[D / 8][4];
MOE4J_UNROLL
  for (int n = 0; n < D / 8; n++)
MOE4J_UNROLL
    for (int r = 0; r < 4; r++) dq[n][r] = 0.0f;
  const float sl2 = p.scale * kLog2e;

  for (int64_t kt = kr.begin; kt < kr.end; kt++) {
    const int stage = (int)((kt - kr.begin) & 1);
    cp_async_wait<0>();
    __syncthreads();
    if (kt + 1 < kr.end) {
      const int64_t k0 = (kt + 1) * kFaRows;
      load_tile<D>(s_k + (stage ^ 1) * tile_bytes<D>(), gk + k0 * ldk, ldk, len - k0, p.k);
      load_tile<D>(s_v + (stage ^ 1) * tile_bytes<D>(), gv + k0 * ldk, ldk, len - k0, p.v);
    }
    cp_async_commit();
    const uint32_t tk = s_k + stage * tile_bytes<D>(), tv = s_v + stage * tile_bytes<D>();
    const int64_t k0 = kt * kFaRows, k1 = k0 + kFaRows;

    float s[8][4], dp[8][4];
    gemm_rows<D>(s, s_q, warp * 16, tk, fr);
    if (k1 > len || !attn_tile_unmasked(q0, q1, k0, k1, p.causal, w))
      apply_mask<false>(s, row0, k0, len, p.causal, w, lane, -INFINITY);
MOE4J_UNROLL
    for (int n = 0; n < 8; n++)
MOE4J_UNROLL
      for (int r = 0; r < 4; r++) s[n][r] = fast_exp2(fmaf(s[n][r], sl2, -lse2[r >> 1]));
    gemm_rows<D>(dp, s_do, warp * 16, tv, fr);
MOE4J_UNROLL
    for (int n = 0; n < 8; n++)
MOE4J_UNROLL
      for (int r = 0; r < 4; r++) s[n][r] *= dp[n][r] - di[r >> 1]; /* dS */
    gemm_acc_cols<D>(dq, s, tk, fr);
  }
  cp_async_wait<0>();
  store_rows<D>(p.o_or_dq, sq.start, row0, len, p.q_heads, h, dq, p.scale, p.scale, lane);
}

/* Query-column slices per dK/dV step (see the loop). */
template <int D>
constexpr int kDkvSplit = D > 64 ? 2 : 1;

template <int D>
__global__ void __launch_bounds__(kFaThreads) flash_bwd_dkv_kernel(FaParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t s_k = smem_addr(smem), s_v = s_k + tile_bytes<D>(),
                 s_q = s_v + tile_bytes<D>(), s_do = s_q + 2 * tile_bytes<D>();
  /* per stage: lse2[64] then D_i[64] */
  float *s_rows = reinterpret_cast<float *>(smem + 6 * tile_bytes<D>());
  const int64_t kvh = blockIdx.y;
  AttnSeq sq;
  int64_t kt;
  /* causal: low key tiles have the most query tiles; in blockIdx order they start first */
  if (!block_tile(p, false, sq, kt)) return;
  const int64_t len = sq.len, w = attn_window(p.window, len);
  const int64_t k0 = kt * kFaRows, k1 = k0 + kFaRows < len ? k0 + kFaRows : len;
  const int64_t group = p.q_heads / p.kv_heads;
  const int64_t ldq = (int64_t)p.q_heads * D, ldk = (int64_t)p.kv_heads * D;
  const AttnRange qr = attn_query_tiles(kt, len, p.causal, w);
  const int64_t nq = qr.end > qr.begin ? qr.end - qr.begin : 0, steps = group * nq;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const Frags<D> fr(lane);

  const int64_t ke = row_elem(sq.start, k0, p.kv_heads, kvh, D);
  load_tile<D>(s_k, p.k + ke, ldk, k1 - k0, p.k);
  load_tile<D>(s_v, p.v + ke, ldk, k1 - k0, p.v);

  /* step it = (head g of the group, query tile qr.begin + it % nq), heads in order */
  auto issue = [&](int64_t it, int stage) {
    const int64_t hq = kvh * group + it / nq, q0 = (qr.begin + it % nq) * kFaRows;
    const int64_t qe = row_elem(sq.start, q0, p.q_heads, hq, D);
    load_tile<D>(s_q + stage * tile_bytes<D>(), p.q + qe, ldq, len - q0, p.q);
    load_tile<D>(s_do + stage * tile_bytes<D>(), p.dout + qe, ldq, len - q0, p.dout);
    /* lse2 / D_i by plain loads: visible to all after the next __syncthreads */
    const int c = threadIdx.x & 63;
    const int64_t i = q0 + c, idx = sq.lse_base + hq * p.seq + i;
    if (threadIdx.x < 64)
      s_rows[stage * 128 + c] = lse_log2(i < len ? p.lse_in[idx] : 0.0f, i < len);
    else
      s_rows[stage * 128 + 64 + c] = i < len ? p.dsum[idx] : 0.0f;
  };
  if (steps > 0) issue(0, 0);
  cp_async_commit();

  float dk[D / 8][4], dv[D / 8][4];
MOE4J_UNROLL
  for (int n = 0; n < D / 8; n++)
MOE4J_UNROLL
    for (int r = 0; r < 4; r++) dk[n][r] = dv[n][r] = 0.0f;
  const float sl2 = p.scale * kLog2e;
  const int64_t key0 = k0 + warp * 16; /* this warp's 16 keys are the rows of S^T */
  const int t2 = (lane & 3) * 2;

  for (int64_t it = 0; it < steps; it++) {
    const int stage = (int)(it & 1);
    cp_async_wait<0>();
    __syncthreads();
    if (it + 1 < steps) issue(it + 1, stage ^ 1);
    cp_async_commit();
    const uint32_t tq = s_q + stage * tile_bytes<D>(), tdo = s_do + stage * tile_bytes<D>();
    const float *lse2 = s_rows + stage * 128, *di = lse2 + 64;
    const int64_t q0 = (qr.begin + it % nq) * kFaRows, q1 = q0 + kFaRows < len ? q0 + kFaRows : len;

    const bool masked = q0 + kFaRows > len || k0 + kFaRows > len ||
                        !attn_tile_unmasked(q0, q1, k0, k1, p.causal, w);
    /* the 64 queries in kDkvSplit column slices of 8 NB: at D = 128 whole 64-column S^T and dP^T
     * next to the f32 dK and dV would not fit the 255 registers */
MOE4J_UNROLL
    for (int half = 0; half < kDkvSplit<D>; half++) {
      constexpr int NB = 8 / kDkvSplit<D>;
      const int c0 = half * 8 * NB; /* first query column of the slice */
      float s[NB][4];
      gemm_rows<D, NB>(s, s_k, warp * 16, tq, fr, c0); /* S^T = K Q^T */
      if (masked) apply_mask<true, NB>(s, key0, q0 + c0, len, p.causal, w, lane, -INFINITY);
MOE4J_UNROLL
      for (int n = 0; n < NB; n++)
MOE4J_UNROLL
        for (int r = 0; r < 4; r++)
          s[n][r] = fast_exp2(fmaf(s[n][r], sl2, -lse2[c0 + 8 * n + t2 + (r & 1)]));
      gemm_acc_cols<D, NB>(dv, s, tdo, fr, c0); /* dV += P^T dO */
      float dp[NB][4];
      gemm_rows<D, NB>(dp, s_v, warp * 16, tdo, fr, c0); /* dP^T = V dO^T */
MOE4J_UNROLL
      for (int n = 0; n < NB; n++)
MOE4J_UNROLL
        for (int r = 0; r < 4; r++) s[n][r] *= dp[n][r] - di[c0 + 8 * n + t2 + (r & 1)]; /* dS^T */
      gemm_acc_cols<D, NB>(dk, s, tq, fr, c0); /* dK += dS^T Q */
    }
  }
  cp_async_wait<0>();
  store_rows<D>(p.dk, sq.start, key0, len, p.kv_heads, kvh, dk, p.scale, p.scale, lane);
  store_rows<D>(p.dv, sq.start, key0, len, p.kv_heads, kvh, dv, 1.0f, 1.0f, lane);
}

/* Tokens of a varlen batch that lie in no sequence (possible only with an invalid cu_seqlens, which
 * the host cannot check): the ABI promises them out = 0, lse = -inf and zero gradients, which the
 * tile kernels (walking sequences, not tokens) never write. One thread per token, the same search
 * the *_ref kernels use (attn_find_sequence); x has x_heads heads, y and z yz_heads; NULLs skipped. */
__global__ void __launch_bounds__(kFaThreads)
flash_varlen_orphans_kernel(const int32_t *cu, int64_t batch, int64_t seq, int D, bf16_t *x,
                            int x_heads, float *lse, bf16_t *y, bf16_t *z, int yz_heads) {
  const int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (t >= seq || attn_find_sequence(cu, batch, seq, t) >= 0) return;
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  const int chunks = D / 8;
  uint4 *xr = reinterpret_cast<uint4 *>(x + t * (int64_t)x_heads * D);
  for (int c = 0; c < x_heads * chunks; c++) xr[c] = zero;
  if (lse != nullptr)
    for (int h = 0; h < x_heads; h++) lse[h * seq + t] = -INFINITY;
  bf16_t *yz[2] = {y, z};
  for (int u = 0; u < 2; u++) {
    if (yz[u] == nullptr) continue;
    uint4 *r = reinterpret_cast<uint4 *>(yz[u] + t * (int64_t)yz_heads * D);
    for (int c = 0; c < yz_heads * chunks; c++) r[c] = zero;
  }
}

}  // namespace

}  // namespace moe4j
