/*
 * The device code of the grouped-expert GEMM (see kernels/grouped_gemm.cu for what, layouts,
 * tiling and why): tile schedule, epilogues, and the tensor-core, SIMT and reference kernels, in a
 * header so a CPU test can run the very same kernels under a warp emulator
 * (native/tests/test_grouped_gemm_emulated.cpp). The includer provides the CUDA builtins and the
 * sm_80 wrappers of common/mma_ptx.cuh (smem_addr, cp_async_*, ldmatrix_x4*, mma_bf16_16816):
 * grouped_gemm.cu includes cuda_check.cuh and mma_ptx.cuh, the emulation test
 * native/tests/warp_emulator.h. Include once per translation unit (internal linkage).
 */
#pragma once
#include <stdint.h>

#include "grouped_gemm_schedule.h"
#include "hd.h"
#include "numerics.h"
#include "swiglu_math.h"

namespace moe4j {

namespace {

enum class GemmKind { Forward, Dgrad, Wgrad, Swiglu };

/* Tensor-core tile. */
constexpr int kTcBM = 128, kTcBN = 128, kTcBK = 32, kTcStages = 4, kTcThreads = 256;
constexpr int kTcTileElems = kTcBM * kTcBK; /* one operand, one stage (128 x 32 or 32 x 128) */
constexpr int kTcStageElems = 2 * kTcTileElems;
constexpr int kTcPipelineBytes = kTcStages * kTcStageElems * 2; /* 64 KB */
/* SIMT tile. */
constexpr int kSimtBM = 64, kSimtBN = 64, kSimtBK = 16, kSimtThreads = 256;
/* Shared-memory prefix limit (16 KB of int64). */
constexpr int64_t kMaxSmemGroups = 2048;
constexpr int64_t kRasterRows = 8;
constexpr int kRefThreads = 128;

/* Everything a launch needs; passed by value. The API's n and k (for swiglu n = f). */
struct GemmArgs {
  const void *a;      /* forward, swiglu: x; dgrad, wgrad: dy */
  const void *b;      /* forward, dgrad: w; swiglu: w13; wgrad: x */
  void *out;          /* y, dx, dw or h */
  void *gate_up;      /* swiglu only, may be NULL */
  const int64_t *offsets;
  const float *row_scale; /* forward only, may be NULL */
  int64_t num_groups, total_rows, n, k;
  int32_t accumulate;
};

__device__ __forceinline__ int64_t clamp_i64(int64_t v, int64_t lo, int64_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

/* Rows [lo, hi) of group e, clamped into [0, total] (see "Bad offsets" above). */
__device__ __forceinline__ void group_range(const int64_t *offsets, int64_t e, int64_t total,
                                            int64_t &lo, int64_t &hi) {
  if (offsets == nullptr) {
    lo = 0;
    hi = total;
    return;
  }
  lo = clamp_i64(offsets[e], 0, total);
  hi = clamp_i64(offsets[e + 1], lo, total);
}

/* Output columns and tile width of the row-tiled kinds. */
template <GemmKind KIND>
__host__ __device__ __forceinline__ int64_t out_cols(int64_t n, int64_t k) {
  return KIND == GemmKind::Dgrad ? k : n;
}

/* tile_prefix[0..E] in shared memory (E = num_groups, 1 when offsets is NULL): each of the
 * THREADS threads sums a contiguous chunk of groups, a block-wide exclusive scan of the chunk sums
 * gives each chunk's start, then the chunk writes its entries. Ends with __syncthreads(). */
template <int THREADS>
__device__ void build_tile_prefix_shared(const int64_t *offsets, int64_t num_groups,
                                         int64_t total_rows, int64_t tile_m, int64_t n_tiles,
                                         int64_t *prefix) {
  MOE4J_STATIC_SHARED int64_t warp_totals[THREADS / 32];
  const int64_t per = (num_groups + THREADS - 1) / THREADS;
  const int64_t e0 = min((int64_t)threadIdx.x * per, num_groups), e1 = min(e0 + per, num_groups);
  int64_t sum = 0;
  for (int64_t e = e0; e < e1; e++) {
    int64_t lo, hi;
    group_range(offsets, e, total_rows, lo, hi);
    sum += tiles_in_group(hi - lo, tile_m, n_tiles);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int64_t incl = sum; /* inclusive scan inside the warp */
MOE4J_UNROLL
  for (int d = 1; d < 32; d <<= 1) {
    int64_t v = __shfl_up_sync(0xffffffffu, incl, d);
    if (lane >= d) incl += v;
  }
  if (lane == 31) warp_totals[warp] = incl;
  __syncthreads();
  int64_t run = incl - sum;
  for (int w = 0; w < warp; w++) run += warp_totals[w];
  for (int64_t e = e0; e < e1; e++) {
    int64_t lo, hi;
    group_range(offsets, e, total_rows, lo, hi);
    prefix[e] = run;
    run += tiles_in_group(hi - lo, tile_m, n_tiles);
  }
  if (threadIdx.x == THREADS - 1) prefix[num_groups] = run; /* last chunk ends at the total */
  __syncthreads();
}

/* Band raster inside one group's m_tiles x n_tiles tiles (bijection, see the header comment). */
__device__ __forceinline__ void raster_in_group(int64_t m_tiles, int64_t n_tiles, int64_t &mt,
                                                int64_t &nt) {
  const int64_t band = mt / kRasterRows;
  const int64_t band_rows = min(kRasterRows, m_tiles - band * kRasterRows);
  const int64_t idx = (mt - band * kRasterRows) * n_tiles + nt;
  mt = band * kRasterRows + idx % band_rows;
  nt = idx / band_rows;
}

/* Tile coordinates: group, its row range, and the tile's first output row/col inside it. */
struct TileCoord {
  int64_t group, lo, rows, m0, n0;
};

/* Maps a linear tile to coordinates. Row-tiled kinds use the shared-memory prefix; wgrad divides.
 * bm, bn: output tile size (bn = output columns per tile; swiglu: h columns). */
template <GemmKind KIND>
__device__ __forceinline__ TileCoord tile_coord(const GemmArgs &p, const int64_t *prefix,
                                                int64_t tile, int64_t bm, int64_t bn) {
  TileCoord c;
  int64_t mt, nt;
  if constexpr (KIND == GemmKind::Wgrad) {
    const int64_t m_tiles = ceil_div_i64(p.n, bm), n_tiles = ceil_div_i64(p.k, bn);
    c.group = tile / (m_tiles * n_tiles);
    const int64_t local = tile - c.group * m_tiles * n_tiles;
    mt = local / n_tiles;
    nt = local % n_tiles;
    group_range(p.offsets, c.group, p.total_rows, c.lo, c.rows);
    c.rows -= c.lo;
    raster_in_group(m_tiles, n_tiles, mt, nt);
  } else {
    const int64_t n_tiles = ceil_div_i64(out_cols<KIND>(p.n, p.k), bn);
    const int64_t groups = p.offsets == nullptr ? 1 : p.num_groups;
    GroupTile gt{0, 0, 0};
    locate_tile(prefix, groups, tile, n_tiles, &gt); /* tile < prefix[groups]: always found */
    c.group = gt.group;
    mt = gt.m_tile;
    nt = gt.n_tile;
    group_range(p.offsets, c.group, p.total_rows, c.lo, c.rows);
    c.rows -= c.lo;
    raster_in_group(ceil_div_i64(c.rows, bm), n_tiles, mt, nt);
  }
  c.m0 = mt * bm;
  c.n0 = nt * bn;
  return c;
}

/* One output tile as a generic GEMM C[i, j] = sum_kk A(i, kk) B(j, kk), kk < red:
 *   A(i, kk) = a[i * lda + kk] (k-major) or a[kk * lda + i] (mn-major), i < a_rows;
 *   B(j, kk) likewise from b (j < bsplit) and b2 (j - bsplit, swiglu up rows), j % bsplit < b_rows.
 * Output element (i, j) goes to out[i * ldo + j] for i < out_rows, j < out_cols_valid. */
template <typename T, typename TO>
struct TileJob {
  const T *a, *b, *b2;
  int64_t lda, ldb, a_rows, b_rows, red;
  TO *out, *gate_up;
  int64_t ldo, ld_gate_up, gate_up_up, out_rows, out_cols_valid;
  const float *scale;
};

template <GemmKind KIND, typename T, typename TO>
__device__ __forceinline__ TileJob<T, TO> make_job(const GemmArgs &p, const TileCoord &c) {
  const T *a = (const T *)p.a, *b = (const T *)p.b;
  TO *out = (TO *)p.out;
  const int64_t n = p.n, k = p.k, row0 = c.lo + c.m0;
  TileJob<T, TO> j;
  j.b2 = nullptr;
  j.gate_up = nullptr;
  j.ld_gate_up = 0;
  j.gate_up_up = 0;
  j.scale = nullptr;
  if constexpr (KIND == GemmKind::Forward) {
    j.a = a + row0 * k; j.lda = k; j.a_rows = c.rows - c.m0;
    j.b = b + (c.group * n + c.n0) * k; j.ldb = k; j.b_rows = n - c.n0;
    j.red = k;
    j.out = out + row0 * n + c.n0; j.ldo = n; j.out_rows = c.rows - c.m0; j.out_cols_valid = n - c.n0;
    if (p.row_scale != nullptr) j.scale = p.row_scale + row0;
  } else if constexpr (KIND == GemmKind::Dgrad) {
    j.a = a + row0 * n; j.lda = n; j.a_rows = c.rows - c.m0;
    j.b = b + c.group * n * k + c.n0; j.ldb = k; j.b_rows = k - c.n0; /* B(j, kk) = w_e[kk][n0 + j] */
    j.red = n;
    j.out = out + row0 * k + c.n0; j.ldo = k; j.out_rows = c.rows - c.m0; j.out_cols_valid = k - c.n0;
  } else if constexpr (KIND == GemmKind::Wgrad) {
    j.a = a + c.lo * n + c.m0; j.lda = n; j.a_rows = n - c.m0; /* A(i, kk) = dy[lo + kk][m0 + i] */
    j.b = b + c.lo * k + c.n0; j.ldb = k; j.b_rows = k - c.n0; /* B(j, kk) = x[lo + kk][n0 + j] */
    j.red = c.rows;
    j.out = out + (c.group * n + c.m0) * k + c.n0; j.ldo = k; j.out_rows = n - c.m0;
    j.out_cols_valid = k - c.n0;
  } else { /* Swiglu: n is f; w13_e rows n0.. (gate) and f + n0.. (up) */
    j.a = a + row0 * k; j.lda = k; j.a_rows = c.rows - c.m0;
    j.b = b + (c.group * 2 * n + c.n0) * k; j.b2 = j.b + n * k; j.ldb = k; j.b_rows = n - c.n0;
    j.red = k;
    j.out = out + row0 * n + c.n0; j.ldo = n; j.out_rows = c.rows - c.m0; j.out_cols_valid = n - c.n0;
    if (p.gate_up != nullptr) {
      j.gate_up = (TO *)p.gate_up + row0 * 2 * n + c.n0;
      j.ld_gate_up = 2 * n;
      j.gate_up_up = n;
    }
  }
  return j;
}

template <typename TO>
__device__ __forceinline__ void store_out(TO *dst, float v, bool accumulate) {
  if (accumulate) v += to_f32(*dst);
  *dst = from_f32<TO>(v);
}

/* Epilogue of one element (i, j) of the tile (forward / dgrad / wgrad). */
template <typename T, typename TO>
__device__ __forceinline__ void store_element(const TileJob<T, TO> &j, int i, int c, float v,
                                              bool accumulate) {
  if (i >= j.out_rows || c >= j.out_cols_valid) return;
  if (j.scale != nullptr) v *= j.scale[i];
  store_out(j.out + i * j.ldo + c, v, accumulate);
}

/* Two adjacent elements (i, c), (i, c + 1), c even, from the tensor-core fragments: one 8-byte
 * (f32) or 4-byte (bf16) store when both are inside and the address is aligned for it (ldo even,
 * base aligned), else the element-wise path. */
template <typename T, typename TO>
__device__ __forceinline__ void store_pair(const TileJob<T, TO> &j, int i, int c, float v0,
                                           float v1, bool accumulate) {
  TO *dst = j.out + i * j.ldo + c;
  const bool pair = i < j.out_rows && c + 1 < j.out_cols_valid &&
                    ((uintptr_t)dst & (2 * sizeof(TO) - 1)) == 0;
  if (!pair) {
    store_element(j, i, c, v0, accumulate);
    store_element(j, i, c + 1, v1, accumulate);
    return;
  }
  if (j.scale != nullptr) {
    const float s = j.scale[i];
    v0 *= s;
    v1 *= s;
  }
  if constexpr (sizeof(TO) == 4) {
    float2 *d2 = reinterpret_cast<float2 *>(dst);
    if (accumulate) {
      const float2 old = *d2;
      v0 += old.x;
      v1 += old.y;
    }
    *d2 = make_float2(v0, v1);
  } else {
    uint32_t *d2 = reinterpret_cast<uint32_t *>(dst);
    if (accumulate) {
      const uint32_t old = *d2;
      v0 += bf16_bits_to_f32((uint16_t)(old & 0xffffu));
      v1 += bf16_bits_to_f32((uint16_t)(old >> 16));
    }
    *d2 = (uint32_t)f32_to_bf16_bits(v0) | ((uint32_t)f32_to_bf16_bits(v1) << 16);
  }
}

/* swiglu epilogue: h = silu(g) * u, and the pre-activations when gate_up is given. */
template <typename T, typename TO>
__device__ __forceinline__ void store_swiglu(const TileJob<T, TO> &j, int i, int c, float g,
                                             float u) {
  if (i >= j.out_rows || c >= j.out_cols_valid) return;
  j.out[i * j.ldo + c] = from_f32<TO>(swiglu_out(g, u));
  if (j.gate_up != nullptr) {
    TO *gu = j.gate_up + i * j.ld_gate_up + c;
    gu[0] = from_f32<TO>(g);
    gu[j.gate_up_up] = from_f32<TO>(u);
  }
}

/* ======================================================================================
 * Tensor-core kernel (bf16 inputs)
 * ====================================================================================== */

/* Element offset of 16-byte chunk `chunk` (8 bf16) of row `row` in a k-major [128][32] tile. */
__device__ __forceinline__ int kmajor_offset(int row, int chunk) {
  return row * kTcBK + ((chunk ^ ((row >> 1) & 3)) << 3);
}
/* ... of chunk `chunk` of k-row `krow` in an mn-major [32][128] tile. */
__device__ __forceinline__ int mnmajor_offset(int krow, int chunk) {
  return krow * kTcBM + ((chunk ^ (krow & 7)) << 3);
}

/* Per-thread cp.async plan for one operand of one tile: this thread copies two 16-byte chunks
 * per stage. k-major (128 x 32 = 512 chunks): chunk q = tid + 256 i is row q / 4, chunk q % 4.
 * mn-major (32 x 128): k-row q / 16, chunk q % 16. Pointers and row predicates are fixed for the
 * tile; each k step only adds k0 (k-major) or k0 * ld (mn-major). */
template <bool KMAJOR, bool SPLIT>
struct OperandLoader {
  const bf16_t *src[2];
  bool in_rows[2];
  uint32_t dst[2]; /* shared address in stage 0 */
  int64_t ld, red;
  int kpos[2];     /* k offset of the chunk inside the k tile */

  __device__ __forceinline__ void init(const bf16_t *p, const bf16_t *p2, int64_t ld_,
                                       int64_t rows_valid, int64_t red_, uint32_t smem_base) {
    ld = ld_;
    red = red_;
MOE4J_UNROLL
    for (int i = 0; i < 2; i++) {
      const int q = threadIdx.x + i * kTcThreads;
      if constexpr (KMAJOR) {
        const int row = q >> 2, chunk = q & 3;
        const int r = SPLIT ? (row & 63) : row;
        const bf16_t *base = (SPLIT && row >= 64) ? p2 : p;
        src[i] = base + r * ld + chunk * 8;
        in_rows[i] = r < rows_valid;
        kpos[i] = chunk * 8;
        dst[i] = smem_base + 2 * kmajor_offset(row, chunk);
      } else {
        const int krow = q >> 4, chunk = q & 15;
        src[i] = p + krow * ld + chunk * 8;
        in_rows[i] = chunk * 8 < rows_valid; /* rows_valid % 8 == 0: chunk wholly in or out */
        kpos[i] = krow;
        dst[i] = smem_base + 2 * mnmajor_offset(krow, chunk);
      }
    }
  }

  __device__ __forceinline__ void load(int stage, int64_t k0, const bf16_t *fallback) const {
MOE4J_UNROLL
    for (int i = 0; i < 2; i++) {
      const bool valid = in_rows[i] && k0 + kpos[i] < red; /* k-major: red % 8 == 0 */
      const bf16_t *s = KMAJOR ? src[i] + k0 : src[i] + k0 * ld;
      cp_async_16(dst[i] + stage * (kTcStageElems * 2), valid ? (const void *)s : (const void *)fallback, valid);
    }
  }
};

template <GemmKind KIND, typename TO>
__global__ void __launch_bounds__(kTcThreads, 2)
grouped_gemm_tc_kernel(GemmArgs p) {
  constexpr bool A_KMAJOR = KIND != GemmKind::Wgrad;
  constexpr bool B_KMAJOR = KIND == GemmKind::Forward || KIND == GemmKind::Swiglu;
  constexpr bool SWIGLU = KIND == GemmKind::Swiglu;
  constexpr int OUT_BN = SWIGLU ? kTcBN / 2 : kTcBN;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16_t *tiles = (bf16_t *)smem; /* stage s: A at s * kTcStageElems, B after it */
  int64_t *prefix = (int64_t *)(smem + kTcPipelineBytes);

  int64_t total;
  if constexpr (KIND == GemmKind::Wgrad) {
    total = p.num_groups * ceil_div_i64(p.n, kTcBM) * ceil_div_i64(p.k, kTcBN);
  } else {
    const int64_t groups = p.offsets == nullptr ? 1 : p.num_groups;
    build_tile_prefix_shared<kTcThreads>(p.offsets, groups, p.total_rows, kTcBM,
                                         ceil_div_i64(out_cols<KIND>(p.n, p.k), OUT_BN), prefix);
    total = prefix[groups];
  }

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wm = warp >> 2, wn = warp & 3; /* warp tile: rows wm * 64, n8 blocks below */
  const uint32_t smem_a = smem_addr(tiles), smem_b = smem_a + kTcTileElems * 2;
  const bool accumulate = p.accumulate != 0;

  /* ldmatrix lane addresses (elements, stage 0, k step 0); see mma_ptx.cuh for the layouts.
   * A k-major: matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15): lane row lane % 16, k chunk lane / 16.
   * A mn-major (.trans): matrix j = lane / 8 covers m 8 (j & 1), k 8 (j >> 1); lane row k = lane % 8.
   * B k-major: matrix j covers n 8 (j >> 1), k 8 (j & 1); B mn-major (.trans) the same with k rows.
   * Row bits below 16 are lane bits, so the swizzle term of every address is a per-lane constant. */
  const int j4 = lane >> 3;
  /* B tile rows of this warp's n8 block pairs: normal wn*32 + {0, 16}; swiglu {0, 64} + wn*16. */
  const int b_pair_stride = SWIGLU ? 64 : 16, b_warp_base = SWIGLU ? wn * 16 : wn * 32;

  for (int64_t tile = blockIdx.x; tile < total; tile += gridDim.x) {
    const TileCoord c = tile_coord<KIND>(p, prefix, tile, kTcBM, OUT_BN);
    if (KIND == GemmKind::Wgrad && accumulate && c.rows == 0) continue; /* unchanged */
    const TileJob<bf16_t, TO> job = make_job<KIND, bf16_t, TO>(p, c);

    OperandLoader<A_KMAJOR, false> la;
    OperandLoader<B_KMAJOR, SWIGLU> lb;
    la.init(job.a, nullptr, job.lda, job.a_rows, job.red, smem_a);
    lb.init(job.b, job.b2, job.ldb, job.b_rows, job.red, smem_b);
    const int64_t k_tiles = ceil_div_i64(job.red, kTcBK);

    float acc[4][4][4];
MOE4J_UNROLL
    for (int mi = 0; mi < 4; mi++)
MOE4J_UNROLL
      for (int nj = 0; nj < 4; nj++)
MOE4J_UNROLL
        for (int r = 0; r < 4; r++) acc[mi][nj][r] = 0.0f;

MOE4J_UNROLL
    for (int s = 0; s < kTcStages - 1; s++) {
      if (s < k_tiles) {
        la.load(s, (int64_t)s * kTcBK, job.a);
        lb.load(s, (int64_t)s * kTcBK, job.b);
      }
      cp_async_commit();
    }

    for (int64_t kt = 0; kt < k_tiles; kt++) {
      cp_async_wait<kTcStages - 2>(); /* k tile kt has landed (for this thread) */
      __syncthreads();                /* ... for all threads; stage (kt - 1) % S is free again */
      const int64_t pf = kt + kTcStages - 1;
      if (pf < k_tiles) {
        la.load((int)(pf % kTcStages), pf * kTcBK, job.a);
        lb.load((int)(pf % kTcStages), pf * kTcBK, job.b);
      }
      cp_async_commit();

      const int stage = (int)(kt % kTcStages);
      const uint32_t sa = smem_a + stage * (kTcStageElems * 2);
      const uint32_t sb = smem_b + stage * (kTcStageElems * 2);
MOE4J_UNROLL
      for (int ks = 0; ks < kTcBK / 16; ks++) {
        uint32_t af[4][4], bfr[4][2];
MOE4J_UNROLL
        for (int mi = 0; mi < 4; mi++) {
          if constexpr (A_KMAJOR) {
            const int row = wm * 64 + mi * 16 + (lane & 15);
            ldmatrix_x4(af[mi], sa + 2 * kmajor_offset(row, ks * 2 + (lane >> 4)));
          } else {
            const int krow = ks * 16 + (j4 >> 1) * 8 + (lane & 7);
            const int chunk = (wm * 64 + mi * 16 + (j4 & 1) * 8) >> 3;
            ldmatrix_x4_trans(af[mi], sa + 2 * mnmajor_offset(krow, chunk));
          }
        }
MOE4J_UNROLL
        for (int pr = 0; pr < 2; pr++) {
          uint32_t r[4];
          const int nb = b_warp_base + pr * b_pair_stride;
          if constexpr (B_KMAJOR) {
            const int row = nb + (j4 >> 1) * 8 + (lane & 7);
            ldmatrix_x4(r, sb + 2 * kmajor_offset(row, ks * 2 + (j4 & 1)));
          } else {
            const int krow = ks * 16 + (j4 & 1) * 8 + (lane & 7);
            ldmatrix_x4_trans(r, sb + 2 * mnmajor_offset(krow, (nb + (j4 >> 1) * 8) >> 3));
          }
          bfr[2 * pr][0] = r[0];
          bfr[2 * pr][1] = r[1];
          bfr[2 * pr + 1][0] = r[2];
          bfr[2 * pr + 1][1] = r[3];
        }
MOE4J_UNROLL
        for (int mi = 0; mi < 4; mi++)
MOE4J_UNROLL
          for (int nj = 0; nj < 4; nj++) mma_bf16_16816(acc[mi][nj], af[mi], bfr[nj]);
      }
    }
    cp_async_wait<0>(); /* only empty groups can be pending here */
    __syncthreads();    /* every warp is done with the stages before the next tile refills them */

    /* Epilogue straight from the accumulators: acc[mi][nj][h * 2 + e] is tile row
     * wm*64 + mi*16 + lane/4 + 8h, column (n8 block of nj) + 2 (lane % 4) + e. */
    const int g = lane >> 2, t2 = (lane & 3) * 2;
MOE4J_UNROLL
    for (int mi = 0; mi < 4; mi++)
MOE4J_UNROLL
      for (int h = 0; h < 2; h++) {
        const int i = wm * 64 + mi * 16 + g + h * 8;
        if constexpr (SWIGLU) {
MOE4J_UNROLL
          for (int nj = 0; nj < 2; nj++)
MOE4J_UNROLL
            for (int e = 0; e < 2; e++)
              store_swiglu(job, i, wn * 16 + nj * 8 + t2 + e, acc[mi][nj][h * 2 + e],
                           acc[mi][nj + 2][h * 2 + e]);
        } else {
MOE4J_UNROLL
          for (int nj = 0; nj < 4; nj++)
            store_pair(job, i, wn * 32 + nj * 8 + t2, acc[mi][nj][h * 2], acc[mi][nj][h * 2 + 1],
                       accumulate);
        }
      }
  }
}

/* ======================================================================================
 * SIMT kernel (f32, and bf16 shapes the tensor-core kernel does not take)
 * ====================================================================================== */

/* Thread (ty, tx) of 16 x 16 owns tile rows ty + 16 i and columns tx + 16 j (i, j < 4): the
 * strided ownership keeps the shared-memory reads broadcast/conflict free. For swiglu the B tile
 * is 32 gate rows then 32 up rows, so columns j and j + 2 are g and u of output column tx + 16 j. */
template <GemmKind KIND, typename T, typename TO>
__global__ void __launch_bounds__(kSimtThreads, 2)
grouped_gemm_simt_kernel(GemmArgs p) {
  constexpr bool A_KMAJOR = KIND != GemmKind::Wgrad;
  constexpr bool B_KMAJOR = KIND == GemmKind::Forward || KIND == GemmKind::Swiglu;
  constexpr bool SWIGLU = KIND == GemmKind::Swiglu;
  constexpr int OUT_BN = SWIGLU ? kSimtBN / 2 : kSimtBN;
  MOE4J_STATIC_SHARED float as[kSimtBK][kSimtBM + 4];
  MOE4J_STATIC_SHARED float bs[kSimtBK][kSimtBN + 4];
  extern __shared__ __align__(128) unsigned char smem[];
  int64_t *prefix = (int64_t *)smem;

  int64_t total;
  if constexpr (KIND == GemmKind::Wgrad) {
    total = p.num_groups * ceil_div_i64(p.n, kSimtBM) * ceil_div_i64(p.k, kSimtBN);
  } else {
    const int64_t groups = p.offsets == nullptr ? 1 : p.num_groups;
    build_tile_prefix_shared<kSimtThreads>(p.offsets, groups, p.total_rows, kSimtBM,
                                           ceil_div_i64(out_cols<KIND>(p.n, p.k), OUT_BN), prefix);
    total = prefix[groups];
  }
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const bool accumulate = p.accumulate != 0;

  for (int64_t tile = blockIdx.x; tile < total; tile += gridDim.x) {
    const TileCoord c = tile_coord<KIND>(p, prefix, tile, kSimtBM, OUT_BN);
    if (KIND == GemmKind::Wgrad && accumulate && c.rows == 0) continue;
    const TileJob<T, TO> job = make_job<KIND, T, TO>(p, c);
    float acc[4][4] = {};
    for (int64_t k0 = 0; k0 < job.red; k0 += kSimtBK) {
      /* 64 x 16 elements per operand, 4 per thread; consecutive threads walk the contiguous dim */
MOE4J_UNROLL
      for (int l = 0; l < 4; l++) {
        const int q = threadIdx.x + l * kSimtThreads;
        {
          const int i = A_KMAJOR ? q >> 4 : q & 63, kk = A_KMAJOR ? q & 15 : q >> 6;
          const int64_t kg = k0 + kk;
          float v = 0.0f;
          if (i < job.a_rows && kg < job.red)
            v = to_f32(A_KMAJOR ? job.a[i * job.lda + kg] : job.a[kg * job.lda + i]);
          as[kk][i] = v;
        }
        {
          const int jj = B_KMAJOR ? q >> 4 : q & 63, kk = B_KMAJOR ? q & 15 : q >> 6;
          const int64_t kg = k0 + kk;
          const int r = SWIGLU ? (jj & 31) : jj;
          const T *b = (SWIGLU && jj >= 32) ? job.b2 : job.b;
          float v = 0.0f;
          if (r < job.b_rows && kg < job.red)
            v = to_f32(B_KMAJOR ? b[r * job.ldb + kg] : b[kg * job.ldb + r]);
          bs[kk][jj] = v;
        }
      }
      __syncthreads();
MOE4J_UNROLL
      for (int kk = 0; kk < kSimtBK; kk++) {
        float av[4], bv[4];
MOE4J_UNROLL
        for (int i = 0; i < 4; i++) av[i] = as[kk][ty + 16 * i];
MOE4J_UNROLL
        for (int j = 0; j < 4; j++) bv[j] = bs[kk][tx + 16 * j];
MOE4J_UNROLL
        for (int i = 0; i < 4; i++)
MOE4J_UNROLL
          for (int j = 0; j < 4; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
      }
      __syncthreads();
    }
MOE4J_UNROLL
    for (int i = 0; i < 4; i++) {
      if constexpr (SWIGLU) {
MOE4J_UNROLL
        for (int j = 0; j < 2; j++) store_swiglu(job, ty + 16 * i, tx + 16 * j, acc[i][j], acc[i][j + 2]);
      } else {
MOE4J_UNROLL
        for (int j = 0; j < 4; j++) store_element(job, ty + 16 * i, tx + 16 * j, acc[i][j], accumulate);
      }
    }
  }
}

/* ======================================================================================
 * Reference kernels: one thread per output element, plain f32 loops
 * ====================================================================================== */

/* Group of row t: the last e with clamped offsets[e] <= t, or -1 when t lies in no group. */
__device__ __forceinline__ int64_t find_group(const int64_t *offsets, int64_t num_groups,
                                              int64_t total_rows, int64_t t, int64_t &lo,
                                              int64_t &hi) {
  int64_t a = 0, b = offsets == nullptr ? 0 : num_groups - 1;
  while (a < b) {
    const int64_t mid = a + (b - a + 1) / 2;
    if (clamp_i64(offsets[mid], 0, total_rows) <= t) a = mid;
    else b = mid - 1;
  }
  group_range(offsets, a, total_rows, lo, hi);
  return t >= lo && t < hi ? a : -1;
}

template <typename T, typename TO>
__global__ void grouped_gemm_forward_ref(GemmArgs p) {
  const T *x = (const T *)p.a, *w = (const T *)p.b;
  TO *y = (TO *)p.out;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < p.total_rows * p.n;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t t = idx / p.n, j = idx % p.n;
    int64_t lo, hi;
    const int64_t e = find_group(p.offsets, p.num_groups, p.total_rows, t, lo, hi);
    if (e < 0) continue;
    const T *xr = x + t * p.k, *wr = w + (e * p.n + j) * p.k;
    float s = 0.0f;
    for (int64_t kk = 0; kk < p.k; kk++) s = fmaf(to_f32(xr[kk]), to_f32(wr[kk]), s);
    if (p.row_scale != nullptr) s *= p.row_scale[t];
    store_out(y + idx, s, p.accumulate != 0);
  }
}

template <typename T, typename TO>
__global__ void grouped_gemm_dgrad_ref(GemmArgs p) {
  const T *dy = (const T *)p.a, *w = (const T *)p.b;
  TO *dx = (TO *)p.out;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < p.total_rows * p.k;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t t = idx / p.k, j = idx % p.k;
    int64_t lo, hi;
    const int64_t e = find_group(p.offsets, p.num_groups, p.total_rows, t, lo, hi);
    if (e < 0) continue;
    const T *dyr = dy + t * p.n, *we = w + e * p.n * p.k + j;
    float s = 0.0f;
    for (int64_t jn = 0; jn < p.n; jn++) s = fmaf(to_f32(dyr[jn]), to_f32(we[jn * p.k]), s);
    store_out(dx + idx, s, p.accumulate != 0);
  }
}

template <typename T, typename TO>
__global__ void grouped_gemm_wgrad_ref(GemmArgs p) {
  const T *dy = (const T *)p.a, *x = (const T *)p.b;
  TO *dw = (TO *)p.out;
  const int64_t per_group = p.n * p.k;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < p.num_groups * per_group;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t e = idx / per_group, rem = idx % per_group, jn = rem / p.k, j = rem % p.k;
    int64_t lo, hi;
    group_range(p.offsets, e, p.total_rows, lo, hi);
    if (p.accumulate != 0 && hi == lo) continue;
    float s = 0.0f;
    for (int64_t t = lo; t < hi; t++) s = fmaf(to_f32(dy[t * p.n + jn]), to_f32(x[t * p.k + j]), s);
    store_out(dw + idx, s, p.accumulate != 0);
  }
}

template <typename T, typename TO>
__global__ void grouped_gemm_swiglu_ref(GemmArgs p) {
  const T *x = (const T *)p.a, *w = (const T *)p.b;
  TO *h = (TO *)p.out, *gate_up = (TO *)p.gate_up;
  const int64_t f = p.n;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < p.total_rows * f;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t t = idx / f, j = idx % f;
    int64_t lo, hi;
    const int64_t e = find_group(p.offsets, p.num_groups, p.total_rows, t, lo, hi);
    if (e < 0) continue;
    const T *xr = x + t * p.k, *wg = w + (e * 2 * f + j) * p.k, *wu = wg + f * p.k;
    float g = 0.0f, u = 0.0f;
    for (int64_t kk = 0; kk < p.k; kk++) {
      const float xv = to_f32(xr[kk]);
      g = fmaf(xv, to_f32(wg[kk]), g);
      u = fmaf(xv, to_f32(wu[kk]), u);
    }
    h[idx] = from_f32<TO>(swiglu_out(g, u));
    if (gate_up != nullptr) {
      gate_up[t * 2 * f + j] = from_f32<TO>(g);
      gate_up[t * 2 * f + f + j] = from_f32<TO>(u);
    }
  }
}

}  // namespace

}  // namespace moe4j
