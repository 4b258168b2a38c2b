/*
 * RMSNorm over the last dim, forward and backward. Storage F32 or BF16, math in f32, one rounding
 * on store. CPU twin: native/src/cpu_rmsnorm.cpp; shared row math: common/rmsnorm_math.h.
 *
 * Layout: x, y, dy, dx [rows, cols] row-major in dtype; weight [cols] in dtype; rstd [rows] F32;
 * dweight [cols] F32.
 *
 * Forward and dx (optimized): a row group of TPR threads per row — one warp when cols <= 1024,
 * the whole 256-thread block above that, so the rows being worked on stay in L1 between the two
 * passes. Pass 1 sums x^2 (or (w*dy)*x) with 16-byte vector loads when every row is 16-byte
 * aligned (scalar loads otherwise) and reduces with warp_sum / block_sum; pass 2 re-reads the row
 * and writes y (or dx). The reduction order differs from the CPU twin's lane order: results agree
 * to f32 rounding, not bitwise.
 * dweight: deterministic without float atomics or scratch memory. A block owns 32 columns; its 16
 * thread rows take the row blocks of rmsnorm_dweight_block_rows(rows) round robin, each summing its
 * block's rows in order into shared memory; then one thread per column adds the block sums in block
 * order. That is the CPU twin's schedule, so dweight is bitwise equal to it.
 * Reference kernels (*_ref, see moe4j_cuda_use_reference_kernels): one thread per row (per column
 * for dweight) running the CPU twin's row code from rmsnorm_math.h: bitwise equal to the CPU.
 * Device code: kernels/rmsnorm_kernels.cuh (also run on the CPU under the warp emulator by
 * native/tests/test_rmsnorm_emulated.cpp); this file holds the launchers and the C ABI.
 */
#include "cuda_check.cuh"
#include "op_args.h"
#include "rmsnorm_kernels.cuh"

namespace moe4j {

/* ---- launch helpers ---- */

inline bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

template <typename T, int V, int TPR>
void launch_forward(const T *x, const T *w, T *y, float *rstd, int64_t rows, int64_t cols,
                    float eps, cudaStream_t stream) {
  rmsnorm_forward_kernel<T, V, TPR><<<blocks_for(rows, kRmsThreads / TPR), kRmsThreads, 0, stream>>>(
      x, w, y, rstd, rows, cols, eps);
}

template <typename T>
int32_t launch_forward(const char *fn, const T *x, const T *w, T *y, float *rstd, int64_t rows,
                       int64_t cols, float eps, cudaStream_t stream) {
  constexpr int V = 16 / sizeof(T);
  if (reference_kernels_enabled()) {
    rmsnorm_forward_ref<T><<<blocks_for(rows, kRefThreads), kRefThreads, 0, stream>>>(x, w, y, rstd, rows, cols, eps);
    return check_launch(fn, "rmsnorm_forward_ref");
  }
  const bool vec = cols % V == 0 && aligned16(x) && aligned16(w) && aligned16(y);
  const bool warp_rows = cols <= kRmsWarpRowMaxCols;
  if (vec && warp_rows) launch_forward<T, V, 32>(x, w, y, rstd, rows, cols, eps, stream);
  else if (vec) launch_forward<T, V, kRmsThreads>(x, w, y, rstd, rows, cols, eps, stream);
  else if (warp_rows) launch_forward<T, 1, 32>(x, w, y, rstd, rows, cols, eps, stream);
  else launch_forward<T, 1, kRmsThreads>(x, w, y, rstd, rows, cols, eps, stream);
  return check_launch(fn, "rmsnorm_forward_kernel");
}

template <typename T, int V, int TPR>
void launch_backward_dx(const T *dy, const T *x, const T *w, const float *rstd, T *dx,
                        int64_t rows, int64_t cols, cudaStream_t stream) {
  rmsnorm_backward_dx_kernel<T, V, TPR><<<blocks_for(rows, kRmsThreads / TPR), kRmsThreads, 0, stream>>>(
      dy, x, w, rstd, dx, rows, cols);
}

/* dx (when rows > 0), then dweight (always: zeros or unchanged when rows == 0). */
template <typename T>
int32_t launch_backward(const char *fn, const T *dy, const T *x, const T *w, const float *rstd,
                        T *dx, float *dw, int64_t rows, int64_t cols, int32_t accumulate,
                        cudaStream_t stream) {
  constexpr int V = 16 / sizeof(T);
  const int64_t block_rows = rmsnorm_dweight_block_rows(rows);
  const int64_t blocks = (rows + block_rows - 1) / block_rows;
  int32_t status = MOE4J_OK;
  if (reference_kernels_enabled()) {
    if (rows > 0) {
      rmsnorm_backward_ref<T><<<blocks_for(rows, kRefThreads), kRefThreads, 0, stream>>>(dy, x, w, rstd, dx, rows, cols);
      if ((status = check_launch(fn, "rmsnorm_backward_ref")) != MOE4J_OK) return status;
    }
    rmsnorm_dweight_ref<T><<<blocks_for(cols, kRefThreads), kRefThreads, 0, stream>>>(dy, x, rstd, dw, rows, cols, block_rows, accumulate);
    return check_launch(fn, "rmsnorm_dweight_ref");
  }
  if (rows > 0) {
    const bool vec = cols % V == 0 && aligned16(dy) && aligned16(x) && aligned16(w) && aligned16(dx);
    const bool warp_rows = cols <= kRmsWarpRowMaxCols;
    if (vec && warp_rows) launch_backward_dx<T, V, 32>(dy, x, w, rstd, dx, rows, cols, stream);
    else if (vec) launch_backward_dx<T, V, kRmsThreads>(dy, x, w, rstd, dx, rows, cols, stream);
    else if (warp_rows) launch_backward_dx<T, 1, 32>(dy, x, w, rstd, dx, rows, cols, stream);
    else launch_backward_dx<T, 1, kRmsThreads>(dy, x, w, rstd, dx, rows, cols, stream);
    if ((status = check_launch(fn, "rmsnorm_backward_dx_kernel")) != MOE4J_OK) return status;
  }
  rmsnorm_dweight_kernel<T><<<blocks_for(cols, kDweightCols), dim3(kDweightCols, kDweightRowGroups), 0, stream>>>(
      dy, x, rstd, dw, rows, cols, block_rows, blocks, accumulate);
  return check_launch(fn, "rmsnorm_dweight_kernel");
}

}  // namespace moe4j

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_rmsnorm_forward(int32_t dtype, const void *x, const void *weight, void *y,
                                   float *rstd, int64_t rows, int64_t cols, float eps,
                                   void *stream) {
  const char *fn = "moe4j_cuda_rmsnorm_forward";
  ArgCheck chk(fn);
  check_rmsnorm_forward(chk, dtype, x, weight, y, rstd, rows, cols, eps);
  if (chk.failed()) return chk.status();
  if (rows == 0) return MOE4J_OK;
  if (dtype == MOE4J_DTYPE_BF16)
    return launch_forward(fn, (const bf16_t *)x, (const bf16_t *)weight, (bf16_t *)y, rstd, rows,
                          cols, eps, as_stream(stream));
  return launch_forward(fn, (const float *)x, (const float *)weight, (float *)y, rstd, rows, cols,
                        eps, as_stream(stream));
}

int32_t moe4j_cuda_rmsnorm_backward(int32_t dtype, const void *dy, const void *x,
                                    const void *weight, const float *rstd, void *dx,
                                    float *dweight, int64_t rows, int64_t cols,
                                    int32_t accumulate, void *stream) {
  const char *fn = "moe4j_cuda_rmsnorm_backward";
  ArgCheck chk(fn);
  check_rmsnorm_backward(chk, dtype, dy, x, weight, rstd, dx, dweight, rows, cols, accumulate);
  if (chk.failed()) return chk.status();
  if (cols == 0) return MOE4J_OK; /* then rows == 0 too: nothing to write */
  if (dtype == MOE4J_DTYPE_BF16)
    return launch_backward(fn, (const bf16_t *)dy, (const bf16_t *)x, (const bf16_t *)weight, rstd,
                           (bf16_t *)dx, dweight, rows, cols, accumulate, as_stream(stream));
  return launch_backward(fn, (const float *)dy, (const float *)x, (const float *)weight, rstd,
                         (float *)dx, dweight, rows, cols, accumulate, as_stream(stream));
}

}  // extern "C"
