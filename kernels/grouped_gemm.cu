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
 * Device code: kernels/grouped_gemm_kernels.cuh (also run on the CPU under the warp emulator by
 * native/tests/test_grouped_gemm_emulated.cpp); this file holds the launchers and the C ABI.
 */
#include "cuda_check.cuh"
#include "mma_ptx.cuh"

#include "grouped_gemm_kernels.cuh"

namespace moe4j {

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
