/*
 * SwiGLU activation: out = silu(gate) * up, and its backward
 *   dgate = (dout * up) * silu'(gate),  dup = dout * silu(gate).
 * CPU twin: native/src/cpu_swiglu.cpp; element math: common/swiglu_math.h.
 *
 * Layout: gate/up (and dgate/dup) rows are in_stride elements apart — in_stride == cols for
 * separate [rows, cols] tensors, 2 * cols for one combined [rows, 2 * cols] gate|up buffer (the
 * output of a fused gate|up GEMM, up = gate + cols). out/dout are [rows, cols] contiguous.
 *
 * Memory-bound element-wise kernels on a 2D grid: blockIdx.y strides over rows and x-threads over
 * the columns of a row, so no 64-bit division per element is needed to honor in_stride. Each
 * element is independent: deterministic. Values agree with the CPU twin to a few f32 ulps (device
 * and host expf differ), so bf16 outputs can differ from it by one bf16 ulp.
 * Device code: kernels/swiglu_kernels.cuh (also run on the CPU under the warp emulator by
 * native/tests/test_swiglu_emulated.cpp); this file holds the launchers and the C ABI.
 */
#include "cuda_check.cuh"
#include "op_args.h"
#include "swiglu_kernels.cuh"

namespace moe4j {

inline dim3 swiglu_grid(int64_t rows, int64_t cols) {
  return dim3(blocks_for(cols, kSwigluThreads), (unsigned int)(rows < kMaxGridY ? rows : kMaxGridY));
}

}  // namespace moe4j

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_swiglu_forward(int32_t dtype, const void *gate, const void *up, void *out,
                                  int64_t rows, int64_t cols, int64_t in_stride, void *stream) {
  const char *fn = "moe4j_cuda_swiglu_forward";
  ArgCheck chk(fn);
  check_swiglu_forward(chk, dtype, gate, up, out, rows, cols, in_stride);
  if (chk.failed()) return chk.status();
  if (rows == 0 || cols == 0) return MOE4J_OK;
  const dim3 grid = swiglu_grid(rows, cols);
  if (dtype == MOE4J_DTYPE_BF16)
    swiglu_forward_kernel<<<grid, kSwigluThreads, 0, as_stream(stream)>>>(
        (const bf16_t *)gate, (const bf16_t *)up, (bf16_t *)out, rows, cols, in_stride);
  else
    swiglu_forward_kernel<<<grid, kSwigluThreads, 0, as_stream(stream)>>>(
        (const float *)gate, (const float *)up, (float *)out, rows, cols, in_stride);
  return check_launch(fn, "swiglu_forward_kernel");
}

int32_t moe4j_cuda_swiglu_backward(int32_t dtype, const void *gate, const void *up,
                                   const void *dout, void *dgate, void *dup, int64_t rows,
                                   int64_t cols, int64_t in_stride, void *stream) {
  const char *fn = "moe4j_cuda_swiglu_backward";
  ArgCheck chk(fn);
  check_swiglu_backward(chk, dtype, gate, up, dout, dgate, dup, rows, cols, in_stride);
  if (chk.failed()) return chk.status();
  if (rows == 0 || cols == 0) return MOE4J_OK;
  const dim3 grid = swiglu_grid(rows, cols);
  if (dtype == MOE4J_DTYPE_BF16)
    swiglu_backward_kernel<<<grid, kSwigluThreads, 0, as_stream(stream)>>>(
        (const bf16_t *)gate, (const bf16_t *)up, (const bf16_t *)dout, (bf16_t *)dgate,
        (bf16_t *)dup, rows, cols, in_stride);
  else
    swiglu_backward_kernel<<<grid, kSwigluThreads, 0, as_stream(stream)>>>(
        (const float *)gate, (const float *)up, (const float *)dout, (float *)dgate, (float *)dup,
        rows, cols, in_stride);
  return check_launch(fn, "swiglu_backward_kernel");
}

}  // extern "C"
