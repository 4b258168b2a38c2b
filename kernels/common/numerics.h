/*
 * Scalar numerics shared by host and device: bf16/f16 <-> f32 conversion (round to nearest even,
 * NaN preserved), SiLU, and the AdamW element update. One definition, used by the CPU twins and the
 * CUDA kernels, so both round identically.
 */
#pragma once
#include <math.h>
#include <string.h>
#include "hd.h"

namespace moe4j {

MOE4J_HD uint32_t f32_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
#endif
}

MOE4J_HD float f32_from_bits(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, 4);
  return f;
#endif
}

/* bf16 is the upper half of an f32. Round to nearest even; a NaN stays a (quiet) NaN. */
MOE4J_HD uint16_t f32_to_bf16_bits(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

MOE4J_HD float bf16_bits_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

/* IEEE binary16, round to nearest even, NaN preserved, overflow to inf, subnormals kept. */
MOE4J_HD uint16_t f32_to_f16_bits(float f) {
  uint32_t u = f32_bits(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
  if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
  if (abs < 0x38800000u) {                                   /* below 2^-14: subnormal or 0 */
    if (abs < 0x33000000u) return (uint16_t)sign;            /* below half the smallest: 0 */
    uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    int shift = 113 - (int)(abs >> 23) + 13; /* 14..24 */
    uint32_t half = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t r = abs - 0x38000000u; /* rebias exponent 127 -> 15 */
  r += 0xfffu + ((r >> 13) & 1u);
  return (uint16_t)(sign | (r >> 13));
}

MOE4J_HD float f16_bits_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) return f32_from_bits(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return f32_from_bits(sign);
    float v = (float)mant * (1.0f / 16777216.0f); /* mant * 2^-24 */
    return sign ? -v : v;
  }
  return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

MOE4J_HD float silu(float x) { return x / (1.0f + expf(-x)); }

/* d/dx silu(x) = s(x) * (1 + x * (1 - s(x))), s = sigmoid */
MOE4J_HD float silu_grad(float x) {
  float s = 1.0f / (1.0f + expf(-x));
  return s * (1.0f + x * (1.0f - s));
}

/* Constants of one AdamW step. bias1 = 1 - beta1^step and bias2 = 1 - beta2^step are computed
 * once per call on the host, in double (adamw_hyper). */
struct AdamwHyper {
  float lr, beta1, beta2, eps, weight_decay, bias1, bias2;
};

inline AdamwHyper adamw_hyper(float lr, float beta1, float beta2, float eps, float weight_decay,
                              int64_t step) {
  return AdamwHyper{lr, beta1, beta2, eps, weight_decay,
                    (float)(1.0 - pow((double)beta1, (double)step)),
                    (float)(1.0 - pow((double)beta2, (double)step))};
}

/* One AdamW element update (PyTorch semantics, decoupled weight decay). bias1 = 1 - beta1^step,
 * bias2 = 1 - beta2^step are computed once per call on the host. Returns the new parameter. */
MOE4J_HD float adamw_update(float p, float g, float *m, float *v, float lr, float beta1, float beta2,
                            float eps, float weight_decay, float bias1, float bias2) {
  float mi = beta1 * *m + (1.0f - beta1) * g;
  float vi = beta2 * *v + (1.0f - beta2) * g * g;
  *m = mi;
  *v = vi;
  float denom = sqrtf(vi / bias2) + eps;
  return p - lr * (weight_decay * p + (mi / bias1) / denom);
}

}  // namespace moe4j

namespace moe4j {

/* Storage types the kernels are templated on. bf16/f16 hold raw bits; arithmetic is in f32. */
struct bf16_t {
  uint16_t bits;
};
struct f16_t {
  uint16_t bits;
};

MOE4J_HD float to_f32(float x) { return x; }
MOE4J_HD float to_f32(bf16_t x) { return bf16_bits_to_f32(x.bits); }
MOE4J_HD float to_f32(f16_t x) { return f16_bits_to_f32(x.bits); }

template <typename T>
MOE4J_HD T from_f32(float x);
template <>
MOE4J_HD float from_f32<float>(float x) { return x; }
template <>
MOE4J_HD bf16_t from_f32<bf16_t>(float x) { return bf16_t{f32_to_bf16_bits(x)}; }
template <>
MOE4J_HD f16_t from_f32<f16_t>(float x) { return f16_t{f32_to_f16_bits(x)}; }

}  // namespace moe4j
