/*
 * The device code of the gradient norm (sum of squares, clip coefficient) (see
 * kernels/grad_norm.cu for what, layouts and why), in a header so a CPU test can run the very same
 * kernels under a warp emulator (native/tests/test_grad_norm_emulated.cpp). The includer provides
 * the CUDA builtins: grad_norm.cu includes cuda_check.cuh, the emulation test
 * native/tests/warp_emulator.h.
 * Include once per translation unit (internal linkage).
 */
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "hd.h"
#include "numerics.h"
#include "warp_reduce.cuh"

namespace moe4j {

namespace {

constexpr int kSumSquaresThreads = 1024;
constexpr int kSumSquaresUnroll = 4;

__device__ __forceinline__ double square(float x) {
  double d = (double)x;
  return d * d;
}

__device__ __forceinline__ double add_squares(double acc, uint4 q, const float *) {
  acc += square(__uint_as_float(q.x));
  acc += square(__uint_as_float(q.y));
  acc += square(__uint_as_float(q.z));
  acc += square(__uint_as_float(q.w));
  return acc;
}

__device__ __forceinline__ double add_squares(double acc, uint4 q, const bf16_t *) {
  const uint32_t words[4] = {q.x, q.y, q.z, q.w};
MOE4J_UNROLL
  for (int k = 0; k < 4; k++) {
    acc += square(bf16_bits_to_f32((uint16_t)(words[k] & 0xffffu)));
    acc += square(bf16_bits_to_f32((uint16_t)(words[k] >> 16)));
  }
  return acc;
}

__device__ __forceinline__ double warp_sum_double(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

/* Like block_sum in cuda_check.cuh, in double. Every thread gets the result; fixed order. */
__device__ __forceinline__ double block_sum_double(double v, double *scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum_double(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.0;
  return warp_sum_double(v);
}

/* One block of kSumSquaresThreads threads. */
template <typename T>
__global__ void __launch_bounds__(kSumSquaresThreads)
    sum_squares_kernel(const T *__restrict__ x, int64_t n, float *__restrict__ out) {
  constexpr int kVec = 16 / sizeof(T);
  MOE4J_STATIC_SHARED double scratch[32];
  const int64_t t = threadIdx.x, threads = blockDim.x;
  /* x is aligned to sizeof(T), so the distance to the next 16-byte boundary is whole elements. */
  int64_t head = (int64_t)(((16u - ((uintptr_t)x & 15u)) & 15u) / sizeof(T));
  if (head > n) head = n;
  const int64_t n_vec = (n - head) / kVec;
  const uint4 *body = reinterpret_cast<const uint4 *>(x + head);

  double acc = 0.0;
  if (t < head) acc = square(to_f32(x[t]));
  int64_t j = t;
  for (; j + (kSumSquaresUnroll - 1) * threads < n_vec; j += kSumSquaresUnroll * threads) {
    uint4 q[kSumSquaresUnroll];
MOE4J_UNROLL
    for (int u = 0; u < kSumSquaresUnroll; u++) q[u] = body[j + u * threads];
MOE4J_UNROLL
    for (int u = 0; u < kSumSquaresUnroll; u++) acc = add_squares(acc, q[u], x);
  }
  for (; j < n_vec; j += threads) acc = add_squares(acc, body[j], x);
  for (int64_t i = head + n_vec * kVec + t; i < n; i += threads) acc += square(to_f32(x[i]));

  const double total = block_sum_double(acc, scratch);
  if (t == 0) out[0] = (float)total;
}

template <typename T>
__global__ void sum_squares_ref(const T *x, int64_t n, float *out) {
  double acc = 0.0;
  for (int64_t i = 0; i < n; i++) acc += square(to_f32(x[i]));
  out[0] = (float)acc;
}

/* One thread: index order in double, the CPU twin's exact arithmetic. */
__global__ void clip_coefficient_kernel(const float *partials, int64_t count, float max_norm,
                                        float *out) {
  double total = 0.0;
  for (int64_t i = 0; i < count; i++) total += (double)partials[i];
  double norm = sqrt(total);
  double coef = (double)max_norm / (norm + 1e-6);
  coef = coef > 1.0 ? 1.0 : coef; /* a NaN coefficient stays NaN */
  out[0] = (float)norm;
  out[1] = (float)coef;
}

}  // namespace

}  // namespace moe4j
