/*
 * RMSNorm math shared by the CPU twin (native/src/cpu_rmsnorm.cpp) and the CUDA kernels
 * (kernels/rmsnorm.cu), so both compute the same thing in the same order.
 *
 *   forward:  rstd = 1 / sqrt(sum(x^2) / cols + eps),  y = (x * rstd) * w
 *   backward: g = w * dy,  coef = rstd^2 * sum(g * x) / cols,  dx = rstd * (g - x * coef)
 *             dweight[c] = sum over rows of (dy * x) * rstd
 *
 * Fixed summation orders (bitwise reproducible, independent of SIMD width and thread count):
 *  - A row sum (x^2 forward, g*x backward) runs in kRmsLanes lanes: lane l takes elements
 *    l, l + 16, l + 32, ... in order; the lanes are then combined by a fixed pairwise tree
 *    (l += l + 8, then + 4, + 2, + 1). The CPU twin vectorizes exactly this; the GPU reference
 *    kernels run it per thread. (The optimized GPU kernels use a warp reduction instead: close,
 *    not bitwise.)
 *  - dweight: rows are cut into blocks of rmsnorm_dweight_block_rows(rows) rows (at most
 *    kRmsMaxRowBlocks blocks; depends on rows only). Each block sums its rows in order from 0;
 *    the block sums are added in block order from 0; then added to dweight when accumulating.
 *    CPU, GPU reference and GPU optimized kernels all follow this schedule: bitwise equal.
 * Products and sums are rounded one at a time (mul_rn / add_rn / sub_rn: no fused multiply-add;
 * the CPU file turns off FMA contraction), so a contraction on one side cannot make them differ.
 */
#pragma once
#include <math.h>
#include <stdint.h>

#include "hd.h"
#include "numerics.h"

namespace moe4j {

constexpr int kRmsLanes = 16;
constexpr int64_t kRmsMaxRowBlocks = 256;
constexpr int64_t kRmsMinBlockRows = 16;

/* Separately rounded f32 operations: the device intrinsics are never contracted into an FMA. */
MOE4J_HD float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

MOE4J_HD float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

MOE4J_HD float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

/* IEEE division and square root on both sides (nvcc default -prec-div/-prec-sqrt). */
MOE4J_HD float rmsnorm_rstd(float sum_squares, int64_t cols, float eps) {
  return 1.0f / sqrtf(sum_squares / (float)cols + eps);
}

MOE4J_HD float rmsnorm_y(float x, float rstd, float w) { return mul_rn(mul_rn(x, rstd), w); }

/* One term of the backward row sum: (w * dy) * x. */
MOE4J_HD float rmsnorm_gx(float dy, float x, float w) { return mul_rn(mul_rn(w, dy), x); }

/* rstd^2 * mean(g * x) */
MOE4J_HD float rmsnorm_dx_coef(float sum_gx, int64_t cols, float rstd) {
  return mul_rn(mul_rn(rstd, rstd), sum_gx / (float)cols);
}

MOE4J_HD float rmsnorm_dx(float dy, float x, float w, float rstd, float coef) {
  return mul_rn(rstd, sub_rn(mul_rn(w, dy), mul_rn(x, coef)));
}

MOE4J_HD float rmsnorm_dweight_term(float dy, float x, float rstd) {
  return mul_rn(mul_rn(dy, x), rstd);
}

/* Rows per dweight block: at least kRmsMinBlockRows, and at most kRmsMaxRowBlocks blocks. */
MOE4J_HD int64_t rmsnorm_dweight_block_rows(int64_t rows) {
  int64_t b = (rows + kRmsMaxRowBlocks - 1) / kRmsMaxRowBlocks;
  return b < kRmsMinBlockRows ? kRmsMinBlockRows : b;
}

/* The fixed pairwise tree over the lanes (lane l += lane l + 8, then + 4, + 2, + 1); returns the
 * row total. Written out so every index is a constant (registers on the GPU). */
static_assert(kRmsLanes == 16, "rmsnorm_combine_lanes is written for 16 lanes");
MOE4J_HD float rmsnorm_combine_lanes(float *acc) {
  MOE4J_UNROLL
  for (int l = 0; l < 8; l++) acc[l] = add_rn(acc[l], acc[l + 8]);
  MOE4J_UNROLL
  for (int l = 0; l < 4; l++) acc[l] = add_rn(acc[l], acc[l + 4]);
  acc[0] = add_rn(acc[0], acc[2]);
  acc[1] = add_rn(acc[1], acc[3]);
  return add_rn(acc[0], acc[1]);
}

/* sum(x^2) over a row in the fixed lane order. */
template <typename T>
MOE4J_HD float rmsnorm_row_sum_squares(const T *x, int64_t cols) {
  float acc[kRmsLanes];
  MOE4J_UNROLL
  for (int l = 0; l < kRmsLanes; l++) acc[l] = 0.0f;
  int64_t full = cols - cols % kRmsLanes;
  for (int64_t i = 0; i < full; i += kRmsLanes) {
    MOE4J_UNROLL
    for (int l = 0; l < kRmsLanes; l++) {
      float v = to_f32(x[i + l]);
      acc[l] = add_rn(acc[l], mul_rn(v, v));
    }
  }
  MOE4J_UNROLL
  for (int l = 0; l < kRmsLanes; l++) {
    if (full + l < cols) {
      float v = to_f32(x[full + l]);
      acc[l] = add_rn(acc[l], mul_rn(v, v));
    }
  }
  return rmsnorm_combine_lanes(acc);
}

/* sum((w * dy) * x) over a row in the fixed lane order. */
template <typename T>
MOE4J_HD float rmsnorm_row_sum_gx(const T *dy, const T *x, const T *w, int64_t cols) {
  float acc[kRmsLanes];
  MOE4J_UNROLL
  for (int l = 0; l < kRmsLanes; l++) acc[l] = 0.0f;
  int64_t full = cols - cols % kRmsLanes;
  for (int64_t i = 0; i < full; i += kRmsLanes) {
    MOE4J_UNROLL
    for (int l = 0; l < kRmsLanes; l++)
      acc[l] = add_rn(acc[l], rmsnorm_gx(to_f32(dy[i + l]), to_f32(x[i + l]), to_f32(w[i + l])));
  }
  MOE4J_UNROLL
  for (int l = 0; l < kRmsLanes; l++) {
    if (full + l < cols)
      acc[l] = add_rn(acc[l], rmsnorm_gx(to_f32(dy[full + l]), to_f32(x[full + l]),
                                         to_f32(w[full + l])));
  }
  return rmsnorm_combine_lanes(acc);
}

template <typename T>
MOE4J_HD void rmsnorm_row_forward(const T *x, const T *w, T *y, int64_t cols, float rstd) {
  for (int64_t c = 0; c < cols; c++)
    y[c] = from_f32<T>(rmsnorm_y(to_f32(x[c]), rstd, to_f32(w[c])));
}

template <typename T>
MOE4J_HD void rmsnorm_row_dx(const T *dy, const T *x, const T *w, T *dx, int64_t cols, float rstd,
                             float coef) {
  for (int64_t c = 0; c < cols; c++)
    dx[c] = from_f32<T>(rmsnorm_dx(to_f32(dy[c]), to_f32(x[c]), to_f32(w[c]), rstd, coef));
}

}  // namespace moe4j
