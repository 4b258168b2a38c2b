/*
 * RoPE math shared by the CPU twin (native/src/cpu_rope.cpp) and the CUDA kernels
 * (kernels/rope.cu). Rotate-half convention (HF): for a row of D = head_dim values, i < D / 2,
 *   angle_i = pos * inv_freq_i,   inv_freq_i = theta^(-2i / D)
 *   out[i]       = x[i] cos - x[i + D/2] sin
 *   out[i + D/2] = x[i + D/2] cos + x[i] sin
 * and the backward is the transposed rotation (the same with sin negated).
 *
 * Where the two twins agree bitwise, and where they cannot:
 *  - inv_freq (rope_inv_freq): ONE formula, inv_freq_i = (float)exp(-(2i / D) * log(theta)),
 *    evaluated in fp64 and rounded once to f32 (relative error <= 2^-24, i.e. correctly rounded
 *    up to the rare double rounding). Both twins evaluate it ON THE HOST, once per call, into a
 *    RopeFreqs table (rope_fill_freqs): the CUDA launcher passes the table to the kernel by value.
 *    So the table is bitwise identical on both sides (no device-vs-glibc exp/log difference;
 *    an f32 expf/logf formula would carry ~10 ulps of error, since expf amplifies the argument
 *    error by |2i/D * ln theta| <= ln theta, which grows into the angle at large positions).
 *  - angle (rope_angle): (float)pos * inv_freq, one f32 multiply: bitwise equal on both twins.
 *    pos converts to f32 exactly for |pos| <= 2^24. Error vs the exact angle: the product has
 *    relative error <= 2^-24 + 2^-24 (table + multiply), so |angle error| <= |angle| * 2^-23
 *    (about pos * 1.2e-7 rad for i = 0, where inv_freq = 1 exactly and the angle is exact).
 *    HF does the same f32 product (t.float() @ inv_freq).
 *  - sin / cos (rope_sin_cos): sinf/cosf of glibc on the CPU (< 1 ulp) and sincosf of CUDA on
 *    the device (<= 2 ulp, full-range reduction since nvcc runs without --use_fast_math). They
 *    can differ by a couple of ulps: CPU and GPU outputs agree to a few f32 ulps, not bitwise.
 *  - rotation (rope_rotate / rope_rotate_t): products and the sum rounded one at a time (the
 *    device uses __fmul_rn/__fadd_rn/__fsub_rn, never contracted to an FMA; the CPU library is
 *    built with -ffp-contract=off), so given equal sin/cos both twins give bitwise equal results.
 *    rope_rotate_t(x0, x1, c, s) == rope_rotate(x0, x1, c, -s) bitwise (negation is exact).
 */
#pragma once
#include <math.h>
#include <stdint.h>

#include "hd.h"

namespace moe4j {

/* head_dim is at most this (rope_args.h enforces it): the table has kRopeMaxHalf entries. */
constexpr int64_t kRopeMaxHeadDim = 1024;
constexpr int64_t kRopeMaxHalf = kRopeMaxHeadDim / 2;

/* inv_freq_i = theta^(-2i / head_dim), in fp64, rounded once to f32 (see above). */
MOE4J_HD float rope_inv_freq(int64_t i, int64_t head_dim, float theta) {
  return (float)exp(-((double)(2 * i) / (double)head_dim) * log((double)theta));
}

/* The per-call table of inverse frequencies (by value: 2 KiB, fits a kernel parameter). */
struct RopeFreqs {
  float inv[kRopeMaxHalf];
};

/* Fills inv[0 .. head_dim / 2); the rest is zeroed (never read). Host side, both twins. */
inline RopeFreqs rope_fill_freqs(int64_t head_dim, float theta) {
  RopeFreqs f;
  for (int64_t i = 0; i < kRopeMaxHalf; i++)
    f.inv[i] = 2 * i < head_dim ? rope_inv_freq(i, head_dim, theta) : 0.0f;
  return f;
}

/* angle = (float)pos * inv_freq: one rounded f32 multiply. */
MOE4J_HD float rope_angle(int32_t pos, float inv_freq) {
#ifdef __CUDA_ARCH__
  return __fmul_rn((float)pos, inv_freq);
#else
  return (float)pos * inv_freq;
#endif
}

MOE4J_HD void rope_sin_cos(float angle, float *c, float *s) {
#ifdef __CUDA_ARCH__
  sincosf(angle, s, c);
#else
  *s = sinf(angle);
  *c = cosf(angle);
#endif
}

/* Forward rotation of the pair (x0 = x[i], x1 = x[i + D/2]):
 *   o0 = x0 c - x1 s,  o1 = x1 c + x0 s  (each product and the sum rounded separately). */
MOE4J_HD void rope_rotate(float x0, float x1, float c, float s, float *o0, float *o1) {
#ifdef __CUDA_ARCH__
  *o0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
  *o1 = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s));
#else
  *o0 = x0 * c - x1 * s;
  *o1 = x1 * c + x0 * s;
#endif
}

/* Transposed rotation (the backward): d0 c + d1 s, d1 c - d0 s. Equal bitwise to
 * rope_rotate(d0, d1, c, -s), which is how the twins apply it (a negated sin table). */
MOE4J_HD void rope_rotate_t(float d0, float d1, float c, float s, float *o0, float *o1) {
  rope_rotate(d0, d1, c, -s, o0, o1);
}

}  // namespace moe4j
