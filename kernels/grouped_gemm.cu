/*
 * Grouped-expert GEMM: the expert FFN GEMMs of an MoE layer, all groups (experts) in one launch.
 * CPU twin: native/src/cpu_gemm.cpp; shared tile schedule: common/grouped_gemm_schedule.h.
 *
 * Layouts (row-major; rows of x/dy sorted by group, group e owns rows offsets[e] .. offsets[e+1]):
 *   forward  y [T, n]  (=|+=) row_scale[t] * x [T, k] . w_e [n, k]^T
 *   dgrad    dx [T, k] (=|+=) dy [T, n] . w_e [n, k]
 *   wgrad    dw_e [n, k] (=|+=) dy_e^T . x_e            (reduction over the group's rows: ragged)
 *   swiglu   g|u = x . w13_e[0..f)^T | x . w13_e[f..2f)^T, h [T, f] = silu(g) * u, gate_up [T, 2f]
 * offsets (I64 [E + 1]) live on the device and are never read by the host; NULL = one group.
 *
 * One launch, device-side schedule (the "contiguous" grouped layout of DeepGEMM / CUTLASS grouped
 * GEMM): every block first rebuilds the per-group tile prefix sum in shared memory from offsets
 * (E <= kMaxSmemGroups; a 256-thread chunked scan, a few hundred ns), then walks the linear tile
 * indices 0 .. prefix[E] - 1 grid-stride (persistent grid: min(tiles bound, SMs x blocks/SM)).
 * locate_tile() (binary search, shared with the CPU twin) maps a tile to (group, m_tile, n_tile);
 * inside a group the tiles are re-ordered in bands of kRasterRows row tiles, column-major in the
 * band, so blocks running together share weight tiles in L2 (a bijection: results do not depend
 * on it). wgrad has the same number of output tiles per group (n x k), so its tile -> group map is
 * a division; empty groups there still get their zero tiles.
 *
 * Kernels, chosen per call:
 *  - tensor cores (bf16 inputs): block tile 128 x 128 x 32, 8 warps as 2 (m) x 4 (n), each warp
 *    64 x 32 = 4 x 4 mma.m16n8k16 (f32 accumulators, 64 per thread). 4-stage cp.async pipeline
 *    (16-byte cp.async.cg, zero-filled past the M/N/K edges with src-size 0): 16 KB per stage,
 *    64 KB + the prefix of dynamic shared memory, 2 blocks per SM on A100/H100. Operands are
 *    staged in shared memory as they lie in global memory:
 *      k-major tile [128 rows][32 k] (64-byte rows; 16-byte chunk c stored at c ^ ((row/2) & 3))
 *        read with ldmatrix.x4                      — forward/swiglu x and w, dgrad dy
 *      mn-major tile [32 k][128] (256-byte rows; chunk c stored at c ^ (k & 7))
 *        read with ldmatrix.x4.trans                — dgrad w (w_e [n, k] is the k x n "B" as
 *                                                     is), wgrad dy and x (they contract over rows)
 *    Both swizzles make every 8-address phase of ldmatrix and of the cp.async stores hit 8
 *    distinct 16-byte bank groups (conflict free). swiglu runs the same tile with the B tile's
 *    rows 0..63 taken from the gate rows and 64..127 from the matching up rows, and each warp's
 *    4 n8 blocks arranged as 2 gate + the 2 matching up blocks, so every thread holds g and u of
 *    the same outputs: a 128 x 64 output tile with two accumulator sets.
 *    Requires 16-byte aligned operands and contiguous dims that are multiples of 8 (k for
 *    forward/swiglu; n and k for dgrad/wgrad), so every 16-byte chunk is wholly in or out.
 *  - SIMT (f32 inputs, and bf16 inputs the tensor-core path does not take): 64 x 64 x 16 shared
 *    memory tiles (f32 in shared memory), 256 threads with 4 x 4 register blocks, bounds-checked
 *    scalar loads (any shape and alignment), same schedule and epilogues. Straightforward, not
 *    tuned: f32 training runs are for tests and the CPU comparison, bf16 is the fast path.
 *  - reference (*_ref): one thread per output element, a plain f32 loop, group found by a binary
 *    search over offsets; used when moe4j_cuda_use_reference_kernels(1) is set and for the row
 *    tiled ops (forward, dgrad, swiglu) when num_groups > kMaxSmemGroups = 2048 (the prefix would
 *    not fit in shared memory; num_groups itself may go up to 2^20, as on the CPU twin).
 * Path per call: reference if enabled or (row-tiled and E > 2048); else tensor cores if in_dtype
 * is BF16, both operands 16-byte aligned and forward/swiglu: k % 8 == 0, dgrad/wgrad: n % 8 == 0
 * and k % 8 == 0, else SIMT. (M/N/K tails that are not multiples of the 128/128/32 tile stay on
 * the tensor cores, zero-filled; only a contiguous dim that is not a multiple of 8, or a misaligned
 * operand, leaves them.) Epilogue: row scale, accumulate, rounding; f32/bf16 pairs of adjacent
 * columns go out as one 8/4-byte store when aligned.
 * sm_90: this is the sm_80 instruction set (mma.sync + cp.async), which runs on H100 but cannot
 * reach its wgmma/TMA peak; a wgmma + TMA variant is the next step for H100 (not done here).
 * Every output element is produced by one thread with a fixed summation order (no split-K, no
 * atomics): deterministic run to run. Fast and SIMT kernels sum k in a different order from the
 * reference/CPU loops: results agree to f32 rounding of the k-term sums, not bitwise.
 *
 * Bad offsets (not checkable from the host): every kernel clamps group e to
 * [clamp(offsets[e], 0, T), clamp(offsets[e+1], that, T)), so nothing outside x, dy, y, dx or dw
 * is read or written; rows no group covers are left untouched, overlapping groups give undefined
 * values in their rows (written twice), and huge offsets only cost time.
 */
#include "cuda_check.cuh"
#include "grouped_gemm_schedule.h"
#include "mma_ptx.cuh"
#include "numerics.h"
#include "swiglu_math.h"

namespace moe4j {

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
  __shared__ int64_t warp_totals[THREADS / 32];
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
#pragma unroll
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
#pragma unroll
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
#pragma unroll
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
#pragma unroll
    for (int mi = 0; mi < 4; mi++)
#pragma unroll
      for (int nj = 0; nj < 4; nj++)
#pragma unroll
        for (int r = 0; r < 4; r++) acc[mi][nj][r] = 0.0f;

#pragma unroll
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
#pragma unroll
      for (int ks = 0; ks < kTcBK / 16; ks++) {
        uint32_t af[4][4], bfr[4][2];
#pragma unroll
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
#pragma unroll
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
#pragma unroll
        for (int mi = 0; mi < 4; mi++)
#pragma unroll
          for (int nj = 0; nj < 4; nj++) mma_bf16_16816(acc[mi][nj], af[mi], bfr[nj]);
      }
    }
    cp_async_wait<0>(); /* only empty groups can be pending here */
    __syncthreads();    /* every warp is done with the stages before the next tile refills them */

    /* Epilogue straight from the accumulators: acc[mi][nj][h * 2 + e] is tile row
     * wm*64 + mi*16 + lane/4 + 8h, column (n8 block of nj) + 2 (lane % 4) + e. */
    const int g = lane >> 2, t2 = (lane & 3) * 2;
#pragma unroll
    for (int mi = 0; mi < 4; mi++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int i = wm * 64 + mi * 16 + g + h * 8;
        if constexpr (SWIGLU) {
#pragma unroll
          for (int nj = 0; nj < 2; nj++)
#pragma unroll
            for (int e = 0; e < 2; e++)
              store_swiglu(job, i, wn * 16 + nj * 8 + t2 + e, acc[mi][nj][h * 2 + e],
                           acc[mi][nj + 2][h * 2 + e]);
        } else {
#pragma unroll
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
  __shared__ float as[kSimtBK][kSimtBM + 4];
  __shared__ float bs[kSimtBK][kSimtBN + 4];
  extern __shared__ int64_t prefix[];

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
#pragma unroll
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
#pragma unroll
      for (int kk = 0; kk < kSimtBK; kk++) {
        float av[4], bv[4];
#pragma unroll
        for (int i = 0; i < 4; i++) av[i] = as[kk][ty + 16 * i];
#pragma unroll
        for (int j = 0; j < 4; j++) bv[j] = bs[kk][tx + 16 * j];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
          for (int j = 0; j < 4; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
      if constexpr (SWIGLU) {
#pragma unroll
        for (int j = 0; j < 2; j++) store_swiglu(job, ty + 16 * i, tx + 16 * j, acc[i][j], acc[i][j + 2]);
      } else {
#pragma unroll
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

/* ======================================================================================
 * Launch
 * ====================================================================================== */

inline bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* Can the tensor-core kernel take this call? (bf16, 16-byte chunks wholly inside the operands.) */
template <GemmKind KIND>
bool tc_supported(const GemmArgs &p) {
  if (!aligned16(p.a) || !aligned16(p.b)) return false;
  switch (KIND) {
    case GemmKind::Forward:
    case GemmKind::Swiglu: return p.k % 8 == 0;
    default: return p.n % 8 == 0 && p.k % 8 == 0;
  }
}

/* Upper bound on the tiles of a row-tiled kind (grid size only): a non-empty group needs
 * ceil(rows / bm) <= (rows + bm - 1) / bm row tiles, and each needs >= 1 row. */
template <GemmKind KIND>
int64_t tiles_bound(const GemmArgs &p, int64_t bm, int64_t bn) {
  const int64_t groups = p.offsets == nullptr ? 1 : p.num_groups;
  int64_t m_tiles = (p.total_rows + groups * (bm - 1)) / bm;
  if (m_tiles > p.total_rows) m_tiles = p.total_rows;
  if (KIND == GemmKind::Wgrad) return p.num_groups * ceil_div_i64(p.n, bm) * ceil_div_i64(p.k, bn);
  return m_tiles * ceil_div_i64(out_cols<KIND>(p.n, p.k), bn);
}

/* Persistent grid: enough blocks to fill the device once, never more than there can be tiles. */
inline int32_t persistent_grid(const char *fn, const void *kernel, int threads, size_t smem,
                               int64_t tiles, unsigned int *grid) {
  int device = 0, sms = 0, per_sm = 0;
  int32_t s = cuda_status(cudaGetDevice(&device), fn, "cudaGetDevice");
  if (s == MOE4J_OK)
    s = cuda_status(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), fn,
                    "cudaDeviceGetAttribute(multiProcessorCount)");
  if (s == MOE4J_OK)
    s = cuda_status(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem),
                    fn, "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  if (s != MOE4J_OK) return s;
  if (per_sm < 1) per_sm = 1;
  int64_t blocks = (int64_t)sms * per_sm;
  if (blocks > tiles) blocks = tiles;
  *grid = (unsigned int)(blocks < 1 ? 1 : blocks);
  return MOE4J_OK;
}

inline size_t prefix_bytes(GemmKind kind, const GemmArgs &p) {
  if (kind == GemmKind::Wgrad) return 0;
  return (size_t)((p.offsets == nullptr ? 1 : p.num_groups) + 1) * sizeof(int64_t);
}

template <GemmKind KIND, typename TO>
int32_t launch_tc(const char *fn, const GemmArgs &p, cudaStream_t stream) {
  const void *kernel = (const void *)grouped_gemm_tc_kernel<KIND, TO>;
  const size_t smem = kTcPipelineBytes + prefix_bytes(KIND, p);
  int32_t s = cuda_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)smem), fn, "cudaFuncSetAttribute");
  if (s != MOE4J_OK) return s;
  unsigned int grid = 0;
  const int64_t out_bn = KIND == GemmKind::Swiglu ? kTcBN / 2 : kTcBN;
  s = persistent_grid(fn, kernel, kTcThreads, smem, tiles_bound<KIND>(p, kTcBM, out_bn), &grid);
  if (s != MOE4J_OK) return s;
  grouped_gemm_tc_kernel<KIND, TO><<<grid, kTcThreads, smem, stream>>>(p);
  return check_launch(fn, "grouped_gemm_tc_kernel");
}

template <GemmKind KIND, typename T, typename TO>
int32_t launch_simt(const char *fn, const GemmArgs &p, cudaStream_t stream) {
  const void *kernel = (const void *)grouped_gemm_simt_kernel<KIND, T, TO>;
  const size_t smem = prefix_bytes(KIND, p);
  unsigned int grid = 0;
  const int64_t out_bn = KIND == GemmKind::Swiglu ? kSimtBN / 2 : kSimtBN;
  int32_t s = persistent_grid(fn, kernel, kSimtThreads, smem, tiles_bound<KIND>(p, kSimtBM, out_bn), &grid);
  if (s != MOE4J_OK) return s;
  grouped_gemm_simt_kernel<KIND, T, TO><<<grid, kSimtThreads, smem, stream>>>(p);
  return check_launch(fn, "grouped_gemm_simt_kernel");
}

template <GemmKind KIND, typename T, typename TO>
int32_t launch_ref(const char *fn, const GemmArgs &p, cudaStream_t stream) {
  switch (KIND) {
    case GemmKind::Forward:
      grouped_gemm_forward_ref<T, TO><<<blocks_for(p.total_rows * p.n, kRefThreads), kRefThreads, 0, stream>>>(p);
      return check_launch(fn, "grouped_gemm_forward_ref");
    case GemmKind::Dgrad:
      grouped_gemm_dgrad_ref<T, TO><<<blocks_for(p.total_rows * p.k, kRefThreads), kRefThreads, 0, stream>>>(p);
      return check_launch(fn, "grouped_gemm_dgrad_ref");
    case GemmKind::Wgrad:
      grouped_gemm_wgrad_ref<T, TO><<<blocks_for(p.num_groups * p.n * p.k, kRefThreads), kRefThreads, 0, stream>>>(p);
      return check_launch(fn, "grouped_gemm_wgrad_ref");
    default:
      grouped_gemm_swiglu_ref<T, TO><<<blocks_for(p.total_rows * p.n, kRefThreads), kRefThreads, 0, stream>>>(p);
      return check_launch(fn, "grouped_gemm_swiglu_ref");
  }
}

/* Path selection: reference when asked for or when the row-tiled prefix would not fit in shared
 * memory; tensor cores for bf16 inputs they support; SIMT otherwise. */
template <GemmKind KIND, typename T, typename TO>
int32_t launch_typed(const char *fn, const GemmArgs &p, cudaStream_t stream) {
  const bool prefix_fits = KIND == GemmKind::Wgrad || p.offsets == nullptr || p.num_groups <= kMaxSmemGroups;
  if (reference_kernels_enabled() || !prefix_fits) return launch_ref<KIND, T, TO>(fn, p, stream);
  if constexpr (sizeof(T) == 2) {
    if (tc_supported<KIND>(p)) return launch_tc<KIND, TO>(fn, p, stream);
  }
  return launch_simt<KIND, T, TO>(fn, p, stream);
}

template <GemmKind KIND>
int32_t launch(const char *fn, int32_t in_dtype, int32_t out_dtype, const GemmArgs &p,
               cudaStream_t stream) {
  const bool in_bf16 = in_dtype == MOE4J_DTYPE_BF16, out_bf16 = out_dtype == MOE4J_DTYPE_BF16;
  if (in_bf16 && out_bf16) return launch_typed<KIND, bf16_t, bf16_t>(fn, p, stream);
  if (in_bf16) return launch_typed<KIND, bf16_t, float>(fn, p, stream);
  if (out_bf16) return launch_typed<KIND, float, bf16_t>(fn, p, stream);
  return launch_typed<KIND, float, float>(fn, p, stream);
}

/* a * b, or 0 when negative or overflowing (product_fits reports those). */
inline int64_t mul_or_zero(int64_t a, int64_t b) {
  int64_t r = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) return 0;
  return r;
}

inline bool overlaps(const void *a, int64_t a_elems, int32_t a_dtype, const void *b,
                     int64_t b_elems, int32_t b_dtype) {
  return ranges_overlap(a, a_elems * dtype_size(a_dtype), b, b_elems * dtype_size(b_dtype));
}

/* Checks shared by the four entry points. */
inline void check_common(ArgCheck &chk, int32_t in_dtype, int32_t out_dtype,
                         const int64_t *offsets, int64_t num_groups, int64_t total_rows,
                         const char *n_name, int64_t n, int64_t k) {
  chk.float_dtype("in_dtype", in_dtype).float_dtype("out_dtype", out_dtype)
      .non_negative("total_rows", total_rows).non_negative(n_name, n).non_negative("k", k)
      .require(num_groups >= 1 && num_groups <= ((int64_t)1 << 20),
               "num_groups must be in [1, 1048576], got %lld", (long long)num_groups)
      .require(offsets != nullptr || num_groups == 1,
               "offsets is NULL (one dense group) but num_groups is %lld, expected 1",
               (long long)num_groups)
      .product_fits("num_groups * n", num_groups, n).product_fits("total_rows * k", total_rows, k)
      .product_fits("total_rows * n", total_rows, n)
      .product_fits("num_groups * n * k", mul_or_zero(num_groups, n), k)
      .buffer("offsets", offsets, offsets == nullptr ? 0 : num_groups + 1, MOE4J_DTYPE_I64);
}

}  // namespace moe4j

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_grouped_gemm_forward(int32_t in_dtype, const void *x, const void *w,
                                        int32_t out_dtype, void *y, const int64_t *offsets,
                                        int64_t num_groups, int64_t total_rows, int64_t n,
                                        int64_t k, const float *row_scale, int32_t accumulate,
                                        void *stream) {
  const char *fn = "moe4j_cuda_grouped_gemm_forward";
  ArgCheck chk(fn);
  check_common(chk, in_dtype, out_dtype, offsets, num_groups, total_rows, "n", n, k);
  const int64_t x_n = mul_or_zero(total_rows, k), w_n = mul_or_zero(mul_or_zero(num_groups, n), k),
                y_n = mul_or_zero(total_rows, n);
  chk.buffer("x", x, x_n, in_dtype).buffer("w", w, w_n, in_dtype).buffer("y", y, y_n, out_dtype)
      .buffer("row_scale", row_scale, row_scale == nullptr ? 0 : total_rows, MOE4J_DTYPE_F32)
      .require(!overlaps(y, y_n, out_dtype, x, x_n, in_dtype), "y and x overlap")
      .require(!overlaps(y, y_n, out_dtype, w, w_n, in_dtype), "y and w overlap")
      .require(!overlaps(y, y_n, out_dtype, row_scale, row_scale ? total_rows : 0, MOE4J_DTYPE_F32),
               "y and row_scale overlap");
  if (chk.failed()) return chk.status();
  if (y_n == 0) return MOE4J_OK;
  GemmArgs p{x, w, y, nullptr, offsets, row_scale, num_groups, total_rows, n, k, accumulate};
  return launch<GemmKind::Forward>(fn, in_dtype, out_dtype, p, as_stream(stream));
}

int32_t moe4j_cuda_grouped_gemm_dgrad(int32_t in_dtype, const void *dy, const void *w,
                                      int32_t out_dtype, void *dx, const int64_t *offsets,
                                      int64_t num_groups, int64_t total_rows, int64_t n, int64_t k,
                                      int32_t accumulate, void *stream) {
  const char *fn = "moe4j_cuda_grouped_gemm_dgrad";
  ArgCheck chk(fn);
  check_common(chk, in_dtype, out_dtype, offsets, num_groups, total_rows, "n", n, k);
  const int64_t dy_n = mul_or_zero(total_rows, n), w_n = mul_or_zero(mul_or_zero(num_groups, n), k),
                dx_n = mul_or_zero(total_rows, k);
  chk.buffer("dy", dy, dy_n, in_dtype).buffer("w", w, w_n, in_dtype).buffer("dx", dx, dx_n, out_dtype)
      .require(!overlaps(dx, dx_n, out_dtype, dy, dy_n, in_dtype), "dx and dy overlap")
      .require(!overlaps(dx, dx_n, out_dtype, w, w_n, in_dtype), "dx and w overlap");
  if (chk.failed()) return chk.status();
  if (dx_n == 0) return MOE4J_OK;
  GemmArgs p{dy, w, dx, nullptr, offsets, nullptr, num_groups, total_rows, n, k, accumulate};
  return launch<GemmKind::Dgrad>(fn, in_dtype, out_dtype, p, as_stream(stream));
}

int32_t moe4j_cuda_grouped_gemm_wgrad(int32_t in_dtype, const void *dy, const void *x,
                                      int32_t out_dtype, void *dw, const int64_t *offsets,
                                      int64_t num_groups, int64_t total_rows, int64_t n, int64_t k,
                                      int32_t accumulate, void *stream) {
  const char *fn = "moe4j_cuda_grouped_gemm_wgrad";
  ArgCheck chk(fn);
  check_common(chk, in_dtype, out_dtype, offsets, num_groups, total_rows, "n", n, k);
  const int64_t dy_n = mul_or_zero(total_rows, n), x_n = mul_or_zero(total_rows, k),
                dw_n = mul_or_zero(mul_or_zero(num_groups, n), k);
  chk.buffer("dy", dy, dy_n, in_dtype).buffer("x", x, x_n, in_dtype).buffer("dw", dw, dw_n, out_dtype)
      .require(!overlaps(dw, dw_n, out_dtype, dy, dy_n, in_dtype), "dw and dy overlap")
      .require(!overlaps(dw, dw_n, out_dtype, x, x_n, in_dtype), "dw and x overlap");
  if (chk.failed()) return chk.status();
  /* total_rows == 0 still zeroes dw (every group is empty) unless accumulating */
  if (dw_n == 0 || (total_rows == 0 && accumulate != 0)) return MOE4J_OK;
  GemmArgs p{dy, x, dw, nullptr, offsets, nullptr, num_groups, total_rows, n, k, accumulate};
  return launch<GemmKind::Wgrad>(fn, in_dtype, out_dtype, p, as_stream(stream));
}

int32_t moe4j_cuda_grouped_gemm_swiglu_forward(int32_t in_dtype, const void *x, const void *w13,
                                               int32_t out_dtype, void *h, void *gate_up,
                                               const int64_t *offsets, int64_t num_groups,
                                               int64_t total_rows, int64_t f, int64_t k,
                                               void *stream) {
  const char *fn = "moe4j_cuda_grouped_gemm_swiglu_forward";
  ArgCheck chk(fn);
  check_common(chk, in_dtype, out_dtype, offsets, num_groups, total_rows, "f", f, k);
  chk.product_fits("2 * f", f, 2).product_fits("total_rows * 2 * f", total_rows, mul_or_zero(f, 2))
      .product_fits("num_groups * 2 * f * k", mul_or_zero(num_groups, mul_or_zero(f, 2)), k);
  const int64_t x_n = mul_or_zero(total_rows, k),
                w_n = mul_or_zero(mul_or_zero(num_groups, mul_or_zero(f, 2)), k),
                h_n = mul_or_zero(total_rows, f), gu_n = gate_up == nullptr ? 0 : 2 * h_n;
  chk.buffer("x", x, x_n, in_dtype).buffer("w13", w13, w_n, in_dtype).buffer("h", h, h_n, out_dtype)
      .buffer("gate_up", gate_up, gu_n, out_dtype)
      .require(!overlaps(h, h_n, out_dtype, x, x_n, in_dtype), "h and x overlap")
      .require(!overlaps(h, h_n, out_dtype, w13, w_n, in_dtype), "h and w13 overlap")
      .require(!overlaps(gate_up, gu_n, out_dtype, h, h_n, out_dtype), "gate_up and h overlap")
      .require(!overlaps(gate_up, gu_n, out_dtype, x, x_n, in_dtype), "gate_up and x overlap")
      .require(!overlaps(gate_up, gu_n, out_dtype, w13, w_n, in_dtype), "gate_up and w13 overlap");
  if (chk.failed()) return chk.status();
  if (h_n == 0) return MOE4J_OK;
  GemmArgs p{x, w13, h, gate_up, offsets, nullptr, num_groups, total_rows, f, k, 0};
  return launch<GemmKind::Swiglu>(fn, in_dtype, out_dtype, p, as_stream(stream));
}

}  // extern "C"
