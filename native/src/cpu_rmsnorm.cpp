/*
 * CPU twin of kernels/rmsnorm.cu: RMSNorm over the last dim, forward and backward.
 *
 * Layout: x, y, dy, dx [rows, cols] row-major in dtype (F32|BF16); weight [cols] in dtype;
 * rstd [rows] F32; dweight [cols] F32. bf16 inputs are widened to f32, all math is f32, and each
 * output is rounded once on store.
 *
 * Rows run in parallel (OpenMP); each row's loops are SIMD-cloned and follow the fixed lane order
 * of rmsnorm_math.h, so results do not depend on the SIMD variant or the thread count.
 * dweight: rows are cut into fixed blocks (rmsnorm_dweight_block_rows, a function of rows only);
 * each block sums its rows into its own slice of a scratch buffer while computing dx, and the
 * slices are then added in block order — the same schedule as the GPU kernels, so the CPU and
 * GPU dweight agree bitwise.
 */
/* The library is built with -ffp-contract=off: the AVX2/AVX-512 clones would otherwise fuse a*b+c
 * while the baseline clone cannot, and the variants would round differently (rmsnorm_math.h). */

#include <stdlib.h>

#include "cpu_common.h"
#include "op_args.h"
#include "rmsnorm_math.h"

using namespace moe4j;

static_assert(kRmsLanes == kLanes, "RMSNorm lanes must be the CPU reduction lanes");

namespace {

/* Columns of dweight combined per parallel task (a stack array of partial totals). */
constexpr int64_t kCombineCols = 512;

template <typename T>
MOE4J_SIMD_CLONES void forward_row(const T *x, const T *w, T *y, float *rstd_out, int64_t cols,
                                   float eps) {
  float rstd = rmsnorm_rstd(rmsnorm_row_sum_squares(x, cols), cols, eps);
  if (rstd_out != nullptr) *rstd_out = rstd;
  rmsnorm_row_forward(x, w, y, cols, rstd);
}

/* dx for one row, and the row's dweight terms added to its block's partial sums. */
template <typename T>
MOE4J_SIMD_CLONES void backward_row(const T *dy, const T *x, const T *w, T *dx, float *partial,
                                    int64_t cols, float rstd) {
  float coef = rmsnorm_dx_coef(rmsnorm_row_sum_gx(dy, x, w, cols), cols, rstd);
  rmsnorm_row_dx(dy, x, w, dx, cols, rstd, coef);
  for (int64_t c = 0; c < cols; c++)
    partial[c] = add_rn(partial[c], rmsnorm_dweight_term(to_f32(dy[c]), to_f32(x[c]), rstd));
}

/* dweight[c0, c0 + n) from the block partial sums, added in block order. n <= kCombineCols. */
MOE4J_SIMD_CLONES void combine_blocks(const float *partial, int64_t blocks, int64_t cols,
                                      int64_t c0, int64_t n, float *dweight, int32_t accumulate) {
  float total[kCombineCols];
  for (int64_t j = 0; j < n; j++) total[j] = 0.0f;
  for (int64_t b = 0; b < blocks; b++) {
    const float *p = partial + b * cols + c0;
    for (int64_t j = 0; j < n; j++) total[j] = add_rn(total[j], p[j]);
  }
  if (accumulate)
    for (int64_t j = 0; j < n; j++) dweight[c0 + j] = add_rn(dweight[c0 + j], total[j]);
  else
    for (int64_t j = 0; j < n; j++) dweight[c0 + j] = total[j];
}

template <typename T>
void forward(const T *x, const T *w, T *y, float *rstd, int64_t rows, int64_t cols, float eps) {
#pragma omp parallel for schedule(static) if (rows > 1 && rows * cols >= kChunk)
  for (int64_t r = 0; r < rows; r++)
    forward_row(x + r * cols, w, y + r * cols, rstd == nullptr ? nullptr : rstd + r, cols, eps);
}

template <typename T>
void backward(const T *dy, const T *x, const T *w, const float *rstd, T *dx, float *partial,
              int64_t rows, int64_t cols, int64_t block_rows, int64_t blocks) {
#pragma omp parallel for schedule(static) if (blocks > 1 && rows * cols >= kChunk)
  for (int64_t b = 0; b < blocks; b++) {
    float *p = partial + b * cols;
    for (int64_t c = 0; c < cols; c++) p[c] = 0.0f;
    int64_t end = (b + 1) * block_rows < rows ? (b + 1) * block_rows : rows;
    for (int64_t r = b * block_rows; r < end; r++)
      backward_row(dy + r * cols, x + r * cols, w, dx + r * cols, p, cols, rstd[r]);
  }
}

}  // namespace

extern "C" {

int32_t moe4j_cpu_rmsnorm_forward(int32_t dtype, const void *x, const void *weight, void *y,
                                  float *rstd, int64_t rows, int64_t cols, float eps) {
  const char *fn = "moe4j_cpu_rmsnorm_forward";
  ArgCheck chk(fn);
  check_rmsnorm_forward(chk, dtype, x, weight, y, rstd, rows, cols, eps);
  if (chk.failed()) return chk.status();
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    forward((const T *)x, (const T *)weight, (T *)y, rstd, rows, cols, eps);
  });
  return MOE4J_OK;
}

int32_t moe4j_cpu_rmsnorm_backward(int32_t dtype, const void *dy, const void *x,
                                   const void *weight, const float *rstd, void *dx,
                                   float *dweight, int64_t rows, int64_t cols,
                                   int32_t accumulate) {
  const char *fn = "moe4j_cpu_rmsnorm_backward";
  ArgCheck chk(fn);
  check_rmsnorm_backward(chk, dtype, dy, x, weight, rstd, dx, dweight, rows, cols, accumulate);
  if (chk.failed()) return chk.status();
  const int64_t block_rows = rmsnorm_dweight_block_rows(rows);
  const int64_t blocks = (rows + block_rows - 1) / block_rows;
  float *partial = nullptr;
  if (blocks * cols > 0) {
    partial = (float *)malloc((size_t)(blocks * cols) * sizeof(float));
    if (partial == nullptr)
      return fail(MOE4J_ERR_OUT_OF_MEMORY, "%s: cannot allocate %lld bytes of dweight partial sums",
                  fn, (long long)(blocks * cols * (int64_t)sizeof(float)));
  }
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    backward((const T *)dy, (const T *)x, (const T *)weight, rstd, (T *)dx, partial, rows, cols,
             block_rows, blocks);
  });
  const int64_t tasks = (cols + kCombineCols - 1) / kCombineCols;
#pragma omp parallel for schedule(static) if (tasks > 1 && blocks * cols >= kChunk)
  for (int64_t t = 0; t < tasks; t++) {
    int64_t c0 = t * kCombineCols;
    combine_blocks(partial, blocks, cols, c0, cols - c0 < kCombineCols ? cols - c0 : kCombineCols,
                   dweight, accumulate);
  }
  free(partial);
  return MOE4J_OK;
}

}  // extern "C"
