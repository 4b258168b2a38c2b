/*
 * FlashAttention-2 on bf16 tensor cores (sm_80+): the fast path of moe4j_cuda_attention_forward /
 * _backward (kernels/attention.cu picks it for BF16 with head_dim 64 or 128; everything else, and
 * moe4j_cuda_use_reference_kernels(1), runs the *_ref kernels there). Same semantics as the CPU
 * twin native/src/cpu_attention.cpp; masks, windows, tile ranges and sequence spans come from
 * common/attention_tiles.h, the same MOE4J_HD helpers the twin uses. STATUS: compiled (sm_80,
 * sm_90a, no spills), not yet verified on a GPU.
 *
 * Layout (moe4j.h): uniform batch q, out, dout, dq [B, S, Hq, D]; k, v, dk, dv [B, S, Hkv, D];
 * lse [B, Hq, S]. Varlen (cu_seqlens != NULL): the same memory with B = 1, S = T, sequence b =
 * tokens c[b] .. c[b+1]-1 (clamped into [0, T] by attn_sequence, so bad device-side offsets cannot
 * leave the buffers), lse [Hq, T]. Either way sequence b starts at token row `start`, has `len`
 * tokens, and its lse row of (head h, position i) is lse_base + h * seq + i. GQA: query head h
 * reads kv head h / (Hq / Hkv).
 *
 * Tiling: 64-query x 64-key tiles (kAttnBlockQ x kAttnBlockK, the CPU twin's tiles), 4 warps of
 * 128 threads, each warp owning 16 rows of its block's tile (queries in the forward and dQ pass,
 * keys in the dK/dV pass), so every softmax row lives in one quad of one warp and needs no shared
 * memory. Scores come from mma.sync.m16n8k16 (bf16 in, f32 accumulate); operands are staged in
 * shared memory as [64 rows][D] tiles whose 16-byte chunk c of row r is stored at chunk c ^ (r & 7)
 * (attn_smem_swizzle, an XOR swizzle: the 8 row addresses of every ldmatrix phase and the 16-byte cp.async stores hit
 * 8 different bank groups, no conflicts, no padding). ldmatrix (non-transposed) gives A fragments
 * of row-major tiles and B fragments where the reduction runs along D (Q K^T, dO V^T, K Q^T,
 * V dO^T); ldmatrix.trans gives the B fragments where the reduction runs along the rows (P V,
 * dS K, P^T dO, dS^T Q). The score accumulators C of one 16 x 16 block are exactly the registers of
 * a 16 x 16 A fragment, so P and dS go from f32 accumulators to bf16 A fragments in registers
 * (cvt.rn.bf16x2) and never touch shared memory. Streamed tiles are double-buffered with 16-byte
 * cp.async.cg (zero-filled past the sequence end): tile t+1 is in flight while tile t is computed.
 *
 * Forward (flash_fwd_kernel<D>), grid (q tiles, Hq, B), q tiles in reverse order so the longest
 * causal rows start first: the Q tile stays in smem (its A fragments are re-read by ldmatrix per key
 * tile: holding them in registers would cost 32 more per thread at D = 128); for the key tiles
 * attn_key_tiles(q tile) (causal tiles above the diagonal and tiles left of the window are never
 * loaded), S = Q K^T (16 x 64 per warp), element mask only on tiles attn_tile_unmasked rejects and
 * on the last partial key tile; online softmax in log2 units (x = s * scale * log2 e, ex2.approx):
 * raise the row max, rescale O and l once per tile, P = 2^(x - m); O += P V. Epilogue: out = O / l,
 * lse = (m + log2 l) * ln 2 (natural log, as the ABI and the backward expect). The S x S matrix
 * is never materialized: per warp 16 x 64 scores in registers.
 *
 * Backward (FA2): three kernels, all deterministic (no atomics; every output element is summed by
 * one thread in a fixed order; run to run bitwise identical):
 *   flash_bwd_dot_kernel<D>: D_i = rowsum(dO * O) in f32 into the caller's workspace (lse layout).
 *   flash_bwd_dkv_kernel<D>, grid (key tiles, Hkv, B), low (causally heaviest) key tiles first:
 *     K, V tile of 64 keys in smem; for every query
 *     head of the GQA group and every query tile of attn_query_tiles(key tile), streamed (Q, dO,
 *     lse, D_i double-buffered): recompute S^T = K Q^T, P^T = 2^(S^T scale log2 e - lse log2 e)
 *     from the saved lse, dV += P^T dO, dP^T = V dO^T, dS^T = P^T (dP^T - D_i), dK += dS^T Q. dK, dV
 *     stay in f32 registers for the whole loop (summed over the group's heads on chip), then
 *     dk = scale dK, dv = dV, rounded once. At D = 128 each query tile is taken as two 32-column
 *     slices, so S^T and dP^T (16 x 32 per warp) fit next to the f32 dK, dV without spilling.
 *   flash_bwd_dq_kernel<D>, grid (q tiles, Hq, B): the mirror over attn_key_tiles(q tile) with K, V
 *     streamed: S, P, dP = dO V^T, dS, dQ += dS K in f32 registers, dq = scale dQ rounded once.
 *   The separate dQ pass is how dQ gets f32 accumulation without atomics (FA2's dQ uses atomicAdd
 *   into an f32 buffer, which is neither deterministic nor free of a [B, S, Hq, D] f32 scratch): it
 *   recomputes S and dP, 7 tile GEMMs per (query tile, key tile) pair instead of 5.
 *
 * Varlen with an invalid cu_seqlens: tokens that belong to no sequence are never visited by the
 * tile kernels, so flash_varlen_orphans_kernel gives them out = 0, lse = -inf and zero gradients
 * (the ABI's promise; one thread per token, the attn_find_sequence search of the *_ref kernels).
 * Varlen grids run over the tile slots of attn_varlen_slot (T / 64 + B blocks per head: the host
 * cannot read the lengths, and a grid sized for the longest possible sequence per sequence would
 * be B times larger); a spare slot's block exits at once.
 *
 * Numerics vs the *_ref kernels / CPU twin: P and dS enter the second GEMMs as bf16 (as in FA2), the
 * exponentials use ex2.approx (~2 ulp), and sums run in tensor-core order: outputs agree with the
 * f32 references to about bf16 resolution of the largest terms, not to f32 rounding.
 *
 * Shared memory (dynamic): forward Q + 2 x (K, V) = 5 tiles (40 KB at D = 64, 80 KB at D = 128);
 * dQ pass Q, dO + 2 x (K, V) = 6 tiles; dK/dV pass K, V + 2 x (Q, dO) + 2 x 2 x 64 floats. Every
 * kernel is compiled with -Xptxas -v; the build log must show 0 bytes spill for all of them.
 *
 * Not done (next steps): a Hopper wgmma/TMA variant (this is the sm_80 instruction set, which runs
 * on H100 below its peak), 128-row Q tiles, a split-KV forward for short-query decode-like shapes,
 * and an fp32-atomic dQ mode (one pass, non-deterministic) for speed.
 */
#include <math.h>
#include <stdint.h>

#include "attention_tiles.h"
#include "cuda_check.cuh"
#include "flash_attention.h"
#include "mma_ptx.cuh"
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
#pragma unroll
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
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
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
#pragma unroll
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
#pragma unroll
  for (int n = 0; n < NB; n++)
#pragma unroll
    for (int r = 0; r < 4; r++) s[n][r] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    uint32_t a[4];
    ldmatrix_x4(a, f.a.at(a_tile, a_row0, 2 * kk));
#pragma unroll
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
#pragma unroll
  for (int kk = 0; kk < NB / 2; kk++) {
    uint32_t a[4];
    acc_to_a<NB>(a, p, kk);
#pragma unroll
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
#pragma unroll
  for (int n = 0; n < NB; n++)
#pragma unroll
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
#pragma unroll
  for (int hh = 0; hh < 2; hh++) {
    const int64_t r = row0 + g + 8 * hh;
    if (r >= len) continue;
    const float mul = hh == 0 ? mul0 : mul1;
    uint32_t *dst = reinterpret_cast<uint32_t *>(base + row_elem(start, r, heads, h, D) + 2 * t);
#pragma unroll
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
#pragma unroll
  for (int n = 0; n < D / 8; n++)
#pragma unroll
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
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < 8; n++) mx = fmaxf(mx, fmaxf(s[n][2 * hh], s[n][2 * hh + 1]));
      const float m_new = fmaxf(m[hh], quad_max(mx) * sl2);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new; /* all masked so far: no NaN */
      const float alpha = fast_exp2(m[hh] - m_use);
      m[hh] = m_new;
      l[hh] *= alpha;
#pragma unroll
      for (int n = 0; n < D / 8; n++) {
        o[n][2 * hh] *= alpha;
        o[n][2 * hh + 1] *= alpha;
      }
#pragma unroll
      for (int n = 0; n < 8; n++)
#pragma unroll
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
#pragma unroll
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
#pragma unroll
    for (int c = 0; c < D / 16; c++) {
      const uint4 a = go[c], d = gd[c];
      const uint32_t av[4] = {a.x, a.y, a.z, a.w}, dv[4] = {d.x, d.y, d.z, d.w};
#pragma unroll
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
#pragma unroll
  for (int hh = 0; hh < 2; hh++) {
    const int64_t r = row0 + g + 8 * hh;
    const int64_t idx = sq.lse_base + h * p.seq + r;
    lse2[hh] = lse_log2(r < len ? p.lse_in[idx] : 0.0f, r < len);
    di[hh] = r < len ? p.dsum[idx] : 0.0f;
  }
  float dq[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; n++)
#pragma unroll
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
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
      for (int r = 0; r < 4; r++) s[n][r] = fast_exp2(fmaf(s[n][r], sl2, -lse2[r >> 1]));
    gemm_rows<D>(dp, s_do, warp * 16, tv, fr);
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
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
#pragma unroll
  for (int n = 0; n < D / 8; n++)
#pragma unroll
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
#pragma unroll
    for (int half = 0; half < kDkvSplit<D>; half++) {
      constexpr int NB = 8 / kDkvSplit<D>;
      const int c0 = half * 8 * NB; /* first query column of the slice */
      float s[NB][4];
      gemm_rows<D, NB>(s, s_k, warp * 16, tq, fr, c0); /* S^T = K Q^T */
      if (masked) apply_mask<true, NB>(s, key0, q0 + c0, len, p.causal, w, lane, -INFINITY);
#pragma unroll
      for (int n = 0; n < NB; n++)
#pragma unroll
        for (int r = 0; r < 4; r++)
          s[n][r] = fast_exp2(fmaf(s[n][r], sl2, -lse2[c0 + 8 * n + t2 + (r & 1)]));
      gemm_acc_cols<D, NB>(dv, s, tdo, fr, c0); /* dV += P^T dO */
      float dp[NB][4];
      gemm_rows<D, NB>(dp, s_v, warp * 16, tdo, fr, c0); /* dP^T = V dO^T */
#pragma unroll
      for (int n = 0; n < NB; n++)
#pragma unroll
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

/* ---- launch ------------------------------------------------------------------------------- */

template <int D>
constexpr int fwd_smem() { return 5 * tile_bytes<D>(); }
template <int D>
constexpr int dq_smem() { return 6 * tile_bytes<D>(); }
template <int D>
constexpr int dkv_smem() { return 6 * tile_bytes<D>() + 2 * 128 * (int)sizeof(float); }

int32_t launch(const char *fn, const char *name, const void *kernel, dim3 grid, int smem,
               cudaStream_t stream, FaParams &p) {
  if (smem > 0) {
    const int32_t s = cuda_status(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem), fn,
        "cudaFuncSetAttribute");
    if (s != MOE4J_OK) return s;
  }
  void *args[] = {&p};
  const int32_t s = cuda_status(cudaLaunchKernel(kernel, grid, dim3(kFaThreads), args, (size_t)smem, stream), fn, name);
  if (s != MOE4J_OK) return s;
  return check_launch(fn, name);
}

FaParams make_params(const void *q, const void *k, const void *v, const int32_t *cu,
                     int64_t batch, int64_t seq, int64_t q_heads, int64_t kv_heads, bool causal,
                     int64_t window, float scale) {
  FaParams p;
  p.q = (const bf16_t *)q;
  p.k = (const bf16_t *)k;
  p.v = (const bf16_t *)v;
  p.out = p.dout = nullptr;
  p.o_or_dq = p.dk = p.dv = nullptr;
  p.lse_in = nullptr;
  p.lse_out = p.dsum = nullptr;
  p.cu = cu;
  p.batch = batch;
  p.seq = seq;
  p.q_heads = (int)q_heads;
  p.kv_heads = (int)kv_heads;
  p.causal = causal;
  p.window = window;
  p.scale = scale;
  return p;
}

int32_t launch_orphans(const char *fn, const int32_t *cu, int64_t batch, int64_t seq, int D,
                       bf16_t *x, int x_heads, float *lse, bf16_t *y, bf16_t *z, int yz_heads,
                       cudaStream_t stream) {
  if (cu == nullptr) return MOE4J_OK;
  flash_varlen_orphans_kernel<<<blocks_for(seq, kFaThreads, INT32_MAX), kFaThreads, 0, stream>>>(
      cu, batch, seq, D, x, x_heads, lse, y, z, yz_heads);
  return check_launch(fn, "flash_varlen_orphans_kernel");
}

/* Grid of the tile kernels: (tiles of S, heads, B) for a uniform batch, (varlen slots, heads, 1)
 * for a packed one (block_tile). */
dim3 tile_grid(bool varlen, int64_t batch, int64_t seq, int64_t heads) {
  if (varlen)
    return dim3((unsigned int)attn_varlen_slot_count(batch, seq), (unsigned int)heads, 1u);
  return dim3((unsigned int)attn_tile_count(seq, kFaRows), (unsigned int)heads,
              (unsigned int)batch);
}

}  // namespace

bool flash_attention_fast_supported(int32_t dtype, int64_t head_dim) {
  return dtype == MOE4J_DTYPE_BF16 && (head_dim == 64 || head_dim == 128);
}

bool flash_attention_fast_path(int32_t dtype, int64_t head_dim, bool varlen, int64_t batch,
                               int64_t seq, int64_t q_heads,
                               std::initializer_list<const void *> buffers) {
  if (!flash_attention_fast_supported(dtype, head_dim)) return false;
  /* grid (tiles or slots, heads, B or 1): y and z are limited to 65535, x to 2^31 - 1 */
  if (q_heads > 65535) return false;
  if (varlen ? attn_varlen_slot_count(batch, seq) > INT32_MAX
             : (batch > 65535 || attn_tile_count(seq, kFaRows) > INT32_MAX))
    return false;
  for (const void *b : buffers)
    if (((uintptr_t)b & 15u) != 0) return false;
  return true;
}

int32_t flash_attention_forward(const char *fn, const void *q, const void *k, const void *v,
                                void *out, float *lse, const int32_t *cu_seqlens, int64_t batch,
                                int64_t seq, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                                bool causal, int64_t window, float scale, cudaStream_t stream) {
  FaParams p = make_params(q, k, v, cu_seqlens, batch, seq, q_heads, kv_heads, causal, window, scale);
  p.o_or_dq = (bf16_t *)out;
  p.lse_out = lse;
  const dim3 grid = tile_grid(cu_seqlens != nullptr, batch, seq, q_heads);
  const int32_t s =
      head_dim == 64
          ? launch(fn, "flash_fwd_kernel<64>", (const void *)flash_fwd_kernel<64>, grid,
                   fwd_smem<64>(), stream, p)
          : launch(fn, "flash_fwd_kernel<128>", (const void *)flash_fwd_kernel<128>, grid,
                   fwd_smem<128>(), stream, p);
  if (s != MOE4J_OK) return s;
  return launch_orphans(fn, cu_seqlens, batch, seq, (int)head_dim, (bf16_t *)out, (int)q_heads,
                        lse, nullptr, nullptr, 0, stream);
}

int32_t flash_attention_backward(const char *fn, const void *q, const void *k, const void *v,
                                 const void *out, const void *dout, const float *lse, void *dq,
                                 void *dk, void *dv, const int32_t *cu_seqlens, int64_t batch,
                                 int64_t seq, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                                 bool causal, int64_t window, float scale, void *workspace,
                                 cudaStream_t stream) {
  FaParams p = make_params(q, k, v, cu_seqlens, batch, seq, q_heads, kv_heads, causal, window, scale);
  p.out = (const bf16_t *)out;
  p.dout = (const bf16_t *)dout;
  p.lse_in = lse;
  p.dsum = (float *)workspace;
  p.o_or_dq = (bf16_t *)dq;
  p.dk = (bf16_t *)dk;
  p.dv = (bf16_t *)dv;
  const dim3 qgrid = tile_grid(cu_seqlens != nullptr, batch, seq, q_heads),
             kgrid = tile_grid(cu_seqlens != nullptr, batch, seq, kv_heads);
  int32_t s;
  if (head_dim == 64) {
    s = launch(fn, "flash_bwd_dot_kernel<64>", (const void *)flash_bwd_dot_kernel<64>, qgrid, 0,
               stream, p);
    if (s == MOE4J_OK)
      s = launch(fn, "flash_bwd_dkv_kernel<64>", (const void *)flash_bwd_dkv_kernel<64>, kgrid,
                 dkv_smem<64>(), stream, p);
    if (s == MOE4J_OK)
      s = launch(fn, "flash_bwd_dq_kernel<64>", (const void *)flash_bwd_dq_kernel<64>, qgrid,
                 dq_smem<64>(), stream, p);
  } else {
    s = launch(fn, "flash_bwd_dot_kernel<128>", (const void *)flash_bwd_dot_kernel<128>, qgrid, 0,
               stream, p);
    if (s == MOE4J_OK)
      s = launch(fn, "flash_bwd_dkv_kernel<128>", (const void *)flash_bwd_dkv_kernel<128>, kgrid,
                 dkv_smem<128>(), stream, p);
    if (s == MOE4J_OK)
      s = launch(fn, "flash_bwd_dq_kernel<128>", (const void *)flash_bwd_dq_kernel<128>, qgrid,
                 dq_smem<128>(), stream, p);
  }
  if (s != MOE4J_OK) return s;
  return launch_orphans(fn, cu_seqlens, batch, seq, (int)head_dim, (bf16_t *)dq, (int)q_heads,
                        nullptr, (bf16_t *)dk, (bf16_t *)dv, (int)kv_heads, stream);
}

}  // namespace moe4j
