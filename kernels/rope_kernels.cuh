/*
 * The device code of RoPE (rotate-half, shared inv_freq table) (see kernels/rope.cu for what,
 * layouts and why), in a header so a CPU test can run the very same kernels under a warp emulator
 * (native/tests/test_rope_emulated.cpp). The includer provides the CUDA builtins: rope.cu includes
 * cuda_check.cuh, the emulation test native/tests/warp_emulator.h.
 * Include once per translation unit (internal linkage).
 */
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "hd.h"
#include "numerics.h"
#include "rope_math.h"

namespace moe4j {

namespace {

constexpr int kRopeThreads = 256;
constexpr int64_t kRopeMaxGrid = 1 << 20;

/* sign = +1 forward, -1 backward. pairs = heads * half (per token). */
template <typename T>
__global__ void __launch_bounds__(kRopeThreads)
rope_kernel(const T *in, T *out, const int32_t *positions, int64_t tokens, int64_t heads,
            int half, const __grid_constant__ RopeFreqs freqs, float sign) {
  MOE4J_STATIC_SHARED float cs[kRopeMaxHalf], sn[kRopeMaxHalf];
  const int64_t pairs = heads * half, row = pairs * 2;
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const int32_t pos = positions[t];
    __syncthreads(); /* the previous token's table may still be read */
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
      float c, s;
      rope_sin_cos(rope_angle(pos, freqs.inv[i]), &c, &s);
      cs[i] = c;
      sn[i] = s * sign;
    }
    __syncthreads();
    const T *x = in + t * row;
    T *o = out + t * row;
    if (pairs <= 0x7fffffff) { /* the common case: 32-bit index math */
      const uint32_t p32 = (uint32_t)pairs, h32 = (uint32_t)half;
      for (uint32_t j = threadIdx.x; j < p32; j += blockDim.x) {
        const uint32_t head = j / h32, i = j - head * h32;
        const int64_t e = (int64_t)head * 2 * half + i;
        float o0, o1;
        rope_rotate(to_f32(x[e]), to_f32(x[e + half]), cs[i], sn[i], &o0, &o1);
        o[e] = from_f32<T>(o0);
        o[e + half] = from_f32<T>(o1);
      }
    } else {
      for (int64_t j = threadIdx.x; j < pairs; j += blockDim.x) {
        const int64_t head = j / half, i = j - head * half;
        const int64_t e = head * 2 * half + i;
        float o0, o1;
        rope_rotate(to_f32(x[e]), to_f32(x[e + half]), cs[i], sn[i], &o0, &o1);
        o[e] = from_f32<T>(o0);
        o[e + half] = from_f32<T>(o1);
      }
    }
  }
}

}  // namespace

}  // namespace moe4j
