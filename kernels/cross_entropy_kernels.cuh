/*
 * The device code of cross-entropy (forward, backward, reference kernels) (see
 * kernels/cross_entropy.cu for what, layouts and why), in a header so a CPU test can run the very
 * same kernels under a warp emulator (native/tests/test_cross_entropy_emulated.cpp). The includer
 * provides the CUDA builtins: cross_entropy.cu includes cuda_check.cuh, the emulation test
 * native/tests/warp_emulator.h.
 * Include once per translation unit (internal linkage).
 */
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "hd.h"
#include "numerics.h"
#include "softmax_math.h"
#include "warp_reduce.cuh"

namespace moe4j {

namespace {

constexpr int kCrossEntropyMaxThreads = 512;
constexpr int kCrossEntropyRefThreads = 128;

__device__ __forceinline__ float nan_f32() { return __int_as_float(0x7fffffff); }

/* 16-byte packs: 4 f32 or 8 bf16, converted to/from f32. */
template <typename T>
struct Pack {
  static constexpr int kCount = 16 / (int)sizeof(T);
};

__device__ __forceinline__ void load_pack(const float *p, float (&f)[4]) {
  const float4 v = *reinterpret_cast<const float4 *>(p);
  f[0] = v.x;
  f[1] = v.y;
  f[2] = v.z;
  f[3] = v.w;
}

__device__ __forceinline__ void load_pack(const bf16_t *p, float (&f)[8]) {
  const uint4 v = *reinterpret_cast<const uint4 *>(p);
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
MOE4J_UNROLL
  for (int k = 0; k < 4; k++) {
    f[2 * k] = bf16_bits_to_f32((uint16_t)(w[k] & 0xffffu));
    f[2 * k + 1] = bf16_bits_to_f32((uint16_t)(w[k] >> 16));
  }
}

__device__ __forceinline__ void store_pack(float *p, const float (&f)[4]) {
  *reinterpret_cast<float4 *>(p) = make_float4(f[0], f[1], f[2], f[3]);
}

__device__ __forceinline__ void store_pack(bf16_t *p, const float (&f)[8]) {
  uint32_t w[4];
MOE4J_UNROLL
  for (int k = 0; k < 4; k++)
    w[k] = (uint32_t)f32_to_bf16_bits(f[2 * k]) | ((uint32_t)f32_to_bf16_bits(f[2 * k + 1]) << 16);
  *reinterpret_cast<uint4 *>(p) = make_uint4(w[0], w[1], w[2], w[3]);
}

/* Elements of a row before its first 16-byte-aligned address (at most vocab). */
template <typename T>
__device__ __forceinline__ int64_t row_head(const T *row, int64_t vocab) {
  const int64_t head = (int64_t)((16u - (uintptr_t)row % 16u) % 16u) / (int64_t)sizeof(T);
  return head < vocab ? head : vocab;
}

__device__ __forceinline__ SoftmaxStats warp_softmax(SoftmaxStats s) {
MOE4J_UNROLL
  for (int offset = 16; offset > 0; offset >>= 1) {
    const SoftmaxStats other{__shfl_xor_sync(0xffffffffu, s.max, offset),
                             __shfl_xor_sync(0xffffffffu, s.sum, offset)};
    s = softmax_combine(s, other);
  }
  return s;
}

/* Combines the block's pairs (blockDim.x a multiple of 32); thread 0's result is the one used.
 * Fixed order: deterministic. scratch_max/scratch_sum: 32 floats of shared memory each. */
__device__ __forceinline__ SoftmaxStats block_softmax(SoftmaxStats s, float *scratch_max,
                                                      float *scratch_sum) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  s = warp_softmax(s);
  __syncthreads(); /* scratch may still be read from the previous row */
  if (lane == 0) {
    scratch_max[warp] = s.max;
    scratch_sum[warp] = s.sum;
  }
  __syncthreads();
  s = lane < warps ? SoftmaxStats{scratch_max[lane], scratch_sum[lane]} : softmax_stats_empty();
  return warp_softmax(s);
}

template <typename T>
__global__ void __launch_bounds__(kCrossEntropyMaxThreads)
cross_entropy_forward_kernel(const T *__restrict__ logits, const int32_t *__restrict__ targets,
                             float *__restrict__ losses, float *__restrict__ lse, int64_t rows,
                             int64_t vocab, int32_t ignore_index) {
  MOE4J_STATIC_SHARED float scratch_max[32], scratch_sum[32];
  constexpr int kPack = Pack<T>::kCount;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *x = logits + r * vocab;
    const int64_t head = row_head(x, vocab);
    const int64_t packs = (vocab - head) / kPack;
    SoftmaxStats s = softmax_stats_empty();
    for (int64_t c = threadIdx.x; c < head; c += blockDim.x) softmax_add(&s, to_f32(x[c]));
    const T *body = x + head;
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      float f[kPack];
      load_pack(body + p * kPack, f);
      float pack_max = f[0];
MOE4J_UNROLL
      for (int k = 1; k < kPack; k++) pack_max = fmaxf(pack_max, f[k]);
      softmax_raise_max(&s, pack_max);
      float e = 0.0f;
MOE4J_UNROLL
      for (int k = 0; k < kPack; k++) e += softmax_exp(f[k], s.max);
      s.sum += e;
    }
    for (int64_t c = head + packs * kPack + threadIdx.x; c < vocab; c += blockDim.x)
      softmax_add(&s, to_f32(x[c]));
    s = block_softmax(s, scratch_max, scratch_sum);
    if (threadIdx.x == 0) {
      const int32_t t = targets[r];
      lse[r] = softmax_lse(s);
      losses[r] = t == ignore_index         ? 0.0f
                  : (t >= 0 && t < vocab)   ? softmax_nll(s, to_f32(x[t]))
                                            : nan_f32();
    }
  }
}

/* logits and dlogits may be the same buffer: each element is read, then written, by one thread. */
template <typename T>
__global__ void __launch_bounds__(kCrossEntropyMaxThreads)
cross_entropy_backward_kernel(const T *logits, const int32_t *__restrict__ targets,
                              const float *__restrict__ lse, T *dlogits, int64_t rows,
                              int64_t vocab, int32_t ignore_index, float grad_scale,
                              bool packed) {
  constexpr int kPack = Pack<T>::kCount;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *x = logits + r * vocab;
    T *dx = dlogits + r * vocab;
    const int64_t target = targets[r];
    if (target == ignore_index) { /* block-uniform branch */
      const T zero = from_f32<T>(0.0f);
      for (int64_t c = threadIdx.x; c < vocab; c += blockDim.x) dx[c] = zero;
      continue;
    }
    /* an invalid target poisons the row with NaN */
    const float row_lse = target >= 0 && target < vocab ? lse[r] : nan_f32();
    const int64_t head = packed ? row_head(x, vocab) : vocab;
    const int64_t packs = (vocab - head) / kPack;
    for (int64_t c = threadIdx.x; c < head; c += blockDim.x)
      dx[c] = from_f32<T>(softmax_xent_grad(to_f32(x[c]), row_lse, c == target, grad_scale));
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      const int64_t c0 = head + p * kPack;
      float f[kPack];
      load_pack(x + c0, f);
MOE4J_UNROLL
      for (int k = 0; k < kPack; k++)
        f[k] = softmax_xent_grad(f[k], row_lse, c0 + k == target, grad_scale);
      store_pack(dx + c0, f);
    }
    for (int64_t c = head + packs * kPack + threadIdx.x; c < vocab; c += blockDim.x)
      dx[c] = from_f32<T>(softmax_xent_grad(to_f32(x[c]), row_lse, c == target, grad_scale));
  }
}

/* Reference: a thread per row, two plain passes. */
template <typename T>
__global__ void cross_entropy_forward_ref(const T *logits, const int32_t *targets, float *losses,
                                          float *lse, int64_t rows, int64_t vocab,
                                          int32_t ignore_index) {
  const int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const T *x = logits + r * vocab;
  float max = -INFINITY;
  for (int64_t c = 0; c < vocab; c++) max = fmaxf(max, to_f32(x[c]));
  float sum = 0.0f;
  for (int64_t c = 0; c < vocab; c++) sum += softmax_exp(to_f32(x[c]), max);
  const SoftmaxStats s{max, sum};
  const int32_t t = targets[r];
  lse[r] = softmax_lse(s);
  losses[r] = t == ignore_index ? 0.0f : (t >= 0 && t < vocab) ? softmax_nll(s, to_f32(x[t])) : nan_f32();
}

template <typename T>
__global__ void cross_entropy_backward_ref(const T *logits, const int32_t *targets,
                                           const float *lse, T *dlogits, int64_t rows,
                                           int64_t vocab, int32_t ignore_index, float grad_scale) {
  const int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const int32_t t = targets[r];
  for (int64_t c = 0; c < vocab; c++) {
    const int64_t i = r * vocab + c;
    float g = 0.0f;
    if (t != ignore_index) {
      const float row_lse = (t >= 0 && t < vocab) ? lse[r] : nan_f32();
      g = softmax_xent_grad(to_f32(logits[i]), row_lse, c == t, grad_scale);
    }
    dlogits[i] = from_f32<T>(g);
  }
}

}  // namespace

}  // namespace moe4j
