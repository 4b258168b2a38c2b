/*
 * The device code of the fused AdamW step (vectorized and reference kernels) (see kernels/adamw.cu
 * for what, layouts and why), in a header so a CPU test can run the very same kernels under a warp
 * emulator (native/tests/test_adamw_emulated.cpp). The includer provides the CUDA builtins:
 * adamw.cu includes cuda_check.cuh, the emulation test native/tests/warp_emulator.h.
 * Include once per translation unit (internal linkage).
 */
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "hd.h"
#include "numerics.h"

namespace moe4j {

namespace {

constexpr int kAdamwThreads = 256;

/* param_copy == NULL: the copy store compiles away. */
struct NoCopy {};

__device__ __forceinline__ void load4(const float *p, float out[4]) {
  float4 q = *reinterpret_cast<const float4 *>(p);
  out[0] = q.x;
  out[1] = q.y;
  out[2] = q.z;
  out[3] = q.w;
}

__device__ __forceinline__ void load4(const bf16_t *p, float out[4]) {
  uint2 q = *reinterpret_cast<const uint2 *>(p);
  out[0] = bf16_bits_to_f32((uint16_t)(q.x & 0xffffu));
  out[1] = bf16_bits_to_f32((uint16_t)(q.x >> 16));
  out[2] = bf16_bits_to_f32((uint16_t)(q.y & 0xffffu));
  out[3] = bf16_bits_to_f32((uint16_t)(q.y >> 16));
}

__device__ __forceinline__ void store4(float *base, int64_t i, const float in[4]) {
  *reinterpret_cast<float4 *>(base + i) = make_float4(in[0], in[1], in[2], in[3]);
}

__device__ __forceinline__ uint32_t pack2(uint16_t lo, uint16_t hi) {
  return (uint32_t)lo | ((uint32_t)hi << 16);
}

__device__ __forceinline__ void store4(bf16_t *base, int64_t i, const float in[4]) {
  *reinterpret_cast<uint2 *>(base + i) =
      make_uint2(pack2(f32_to_bf16_bits(in[0]), f32_to_bf16_bits(in[1])),
                 pack2(f32_to_bf16_bits(in[2]), f32_to_bf16_bits(in[3])));
}

__device__ __forceinline__ void store4(f16_t *base, int64_t i, const float in[4]) {
  *reinterpret_cast<uint2 *>(base + i) =
      make_uint2(pack2(f32_to_f16_bits(in[0]), f32_to_f16_bits(in[1])),
                 pack2(f32_to_f16_bits(in[2]), f32_to_f16_bits(in[3])));
}

__device__ __forceinline__ void store4(NoCopy *, int64_t, const float *) {}

template <typename C>
__device__ __forceinline__ void store1(C *base, int64_t i, float x) {
  base[i] = from_f32<C>(x);
}
__device__ __forceinline__ void store1(NoCopy *, int64_t, float) {}

__device__ __forceinline__ float adamw_element(float *param, float g, float *m, float *v,
                                               int64_t i, const AdamwHyper &h) {
  float mi = m[i], vi = v[i];
  float p = adamw_update(param[i], g, &mi, &vi, h.lr, h.beta1, h.beta2, h.eps, h.weight_decay,
                         h.bias1, h.bias2);
  m[i] = mi;
  v[i] = vi;
  param[i] = p;
  return p;
}

/* n_vec groups of 4 elements take the vector path (0 when a pointer is misaligned); the elements
 * from 4 * n_vec to n take the scalar loop. */
template <typename G, typename C>
__global__ void __launch_bounds__(kAdamwThreads)
    adamw_step_kernel(float *__restrict__ param, const G *__restrict__ grad,
                      float *__restrict__ m, float *__restrict__ v, C *__restrict__ copy,
                      int64_t n, int64_t n_vec, AdamwHyper h, const float *__restrict__ grad_scale) {
  const float s = grad_scale != nullptr ? *grad_scale : 1.0f;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  const int64_t first = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  for (int64_t j = first; j < n_vec; j += stride) {
    const int64_t i = 4 * j;
    float p[4], g[4], mm[4], vv[4];
    load4(param + i, p);
    load4(grad + i, g);
    load4(m + i, mm);
    load4(v + i, vv);
MOE4J_UNROLL
    for (int k = 0; k < 4; k++)
      p[k] = adamw_update(p[k], g[k] * s, &mm[k], &vv[k], h.lr, h.beta1, h.beta2, h.eps,
                          h.weight_decay, h.bias1, h.bias2);
    store4(param, i, p);
    store4(m, i, mm);
    store4(v, i, vv);
    store4(copy, i, p);
  }
  for (int64_t i = 4 * n_vec + first; i < n; i += stride)
    store1(copy, i, adamw_element(param, to_f32(grad[i]) * s, m, v, i, h));
}

template <typename G, typename C>
__global__ void adamw_step_ref(float *param, const G *grad, float *m, float *v, C *copy,
                               int64_t n, AdamwHyper h, const float *grad_scale) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    float s = grad_scale != nullptr ? *grad_scale : 1.0f;
    store1(copy, i, adamw_element(param, to_f32(grad[i]) * s, m, v, i, h));
  }
}

}  // namespace

}  // namespace moe4j
