/*
 * The device code of SwiGLU forward and backward (see kernels/swiglu.cu for what, layouts and
 * why), in a header so a CPU test can run the very same kernels under a warp emulator
 * (native/tests/test_swiglu_emulated.cpp). The includer provides the CUDA builtins: swiglu.cu
 * includes cuda_check.cuh, the emulation test native/tests/warp_emulator.h.
 * Include once per translation unit (internal linkage).
 */
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "hd.h"
#include "numerics.h"
#include "swiglu_math.h"

namespace moe4j {

namespace {

constexpr int kSwigluThreads = 256;
constexpr int64_t kMaxGridY = 65535;

template <typename T>
__global__ void __launch_bounds__(kSwigluThreads)
swiglu_forward_kernel(const T *gate, const T *up, T *out, int64_t rows, int64_t cols,
                      int64_t in_stride) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const T *g = gate + r * in_stride, *u = up + r * in_stride;
    T *o = out + r * cols;
    for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < cols;
         c += (int64_t)gridDim.x * blockDim.x)
      o[c] = from_f32<T>(swiglu_out(to_f32(g[c]), to_f32(u[c])));
  }
}

template <typename T>
__global__ void __launch_bounds__(kSwigluThreads)
swiglu_backward_kernel(const T *gate, const T *up, const T *dout, T *dgate, T *dup, int64_t rows,
                       int64_t cols, int64_t in_stride) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t in = r * in_stride;
    const T *d = dout + r * cols;
    for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < cols;
         c += (int64_t)gridDim.x * blockDim.x) {
      float g = to_f32(gate[in + c]), u = to_f32(up[in + c]), dv = to_f32(d[c]);
      dgate[in + c] = from_f32<T>(swiglu_dgate(g, u, dv));
      dup[in + c] = from_f32<T>(swiglu_dup(g, dv));
    }
  }
}

}  // namespace

}  // namespace moe4j
