/*
 * Tile kernels of the CPU flash-attention forward (cpu_attention.cpp): the score tile S = Q K^T,
 * the row step p = exp(s - max) with the tile's row sum, and O += P V.
 *
 * Two variants, chosen per call (attn_wide()): AVX-512 intrinsics, register-blocked over 4 query
 * rows x 64 columns (16 zmm accumulators), and a portable one written with fmaf in plain loops
 * (MOE4J_SIMD_CLONES, so the x86-64-v3 clone still vectorizes it; the baseline clone calls fmaf).
 * They give bitwise the same numbers: every product element is one fused multiply-add chain in a
 * fixed order (S: over d ascending from 0; O: over the keys c ascending, starting from the current
 * O), the exponential is the same sequence of IEEE operations in both (below), and the row sum is
 * the same fixed 16-lane tree. MOE4J_CPU_ATTN_VARIANT=portable forces the portable variant
 * (tests compare the two bitwise; read at every call, so a test can switch it).
 *
 * exp: Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2 (n = round(x log2 e) by the 1.5*2^23
 * trick, ln2 split in a 16-bit head and a tail, both steps fused), a degree-7 Taylor polynomial
 * in Horner form with fmaf (truncation error < 6e-9 relative) and the exact scaling by 2^n built
 * in the exponent bits. Measured against double exp over [-87, 0]: see test_attention
 * (vector_exp_is_accurate_and_handles_the_edges: max 7.3e-8 relative over ~0.8 M sampled
 * values, asserted <= 1.5e-7, about 1 ulp).
 * Domain: x = s - max <= 0 (max is the row max, so this always holds here); x < -88 is clamped
 * to -88, which gives n = -127 and an exact 0 — results below 2^-126 (exp(x) < 1.2e-38, weight
 * < 1e-38 of the row max) are flushed to 0. A NaN x propagates; s == -inf (masked) gives 0.
 */
#pragma once
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_common.h"

namespace moe4j {
namespace attn {

constexpr int kCols = 64; /* columns of a score tile (== kAttnBlockK) */

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kMagic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
constexpr float kLn2Hi = 0.693145751953125f;
constexpr float kLn2Lo = 1.428606765330187045e-06f;
constexpr float kExpMin = -88.0f;
constexpr float kC2 = 0.5f, kC3 = 1.0f / 6, kC4 = 1.0f / 24, kC5 = 1.0f / 120, kC6 = 1.0f / 720,
                kC7 = 1.0f / 5040;

/* True: the AVX-512 variant; false: portable. */
inline bool attn_wide() {
  const char *force = getenv("MOE4J_CPU_ATTN_VARIANT");
  if (force != nullptr && strcmp(force, "portable") == 0) return false;
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("fma");
}

/* Rows of the P V block that starts at row r of `rows`: 6 while they fit, then 4, then 1. The
 * caller gives the rows of a block one common key range (cpu_attention.cpp), so both variants run
 * the same chains. */
inline int pv_block_rows(int r, int rows) { return r + 6 <= rows ? 6 : r + 4 <= rows ? 4 : 1; }

/* ---- portable ---------------------------------------------------------------------------- */

inline float bits_to_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

/* exp(s - m) as described in the header comment; 0 for s == -inf. */
inline float exp_shifted(float s, float m) {
  float x = s - m;
  x = kExpMin > x ? kExpMin : x; /* NaN compares false and stays NaN */
  const float t = fmaf(x, kLog2e, kMagic);
  const float n = t - kMagic;
  float r = fmaf(n, -kLn2Hi, x);
  r = fmaf(n, -kLn2Lo, r);
  float p = fmaf(kC7, r, kC6);
  p = fmaf(p, r, kC5);
  p = fmaf(p, r, kC4);
  p = fmaf(p, r, kC3);
  p = fmaf(p, r, kC2);
  p = fmaf(p, r, 1.0f);
  p = fmaf(p, r, 1.0f);
  const uint32_t scale = (f32_to_bits(t) - f32_to_bits(kMagic) + 127u) << 23;
  const float e = p * bits_to_f32(scale);
  return s == -INFINITY ? 0.0f : e;
}

/* One key tile of the online softmax for 64 query rows, on the transposed scores
 * st[c * 64 + r] (c < nc): outside [lo[r], hi[r]) -inf, else scale * s; the running max mx[r] is
 * raised to the tile max (alpha[r] = exp(old - new), exactly 1 when unchanged), st becomes
 * p = exp(s - max) and sum[r] = sum[r] * alpha[r] + (p[0] + p[1] + ... in key order). Vectorized
 * over the rows, so each row's sum is one chain in key order in every variant. */
MOE4J_SIMD_CLONES inline void softmax_tile(float *__restrict__ st, int nc,
                                           const int *__restrict__ lo, const int *__restrict__ hi,
                                           float scale, float *__restrict__ mx,
                                           float *__restrict__ sum, float *__restrict__ alpha) {
  float tmax[kCols], ts[kCols];
  for (int r = 0; r < kCols; r++) tmax[r] = -INFINITY;
  for (int c = 0; c < nc; c++) {
    float *sc = st + c * kCols;
    for (int r = 0; r < kCols; r++) {
      const float x = c >= lo[r] && c < hi[r] ? scale * sc[r] : -INFINITY;
      sc[r] = x;
      tmax[r] = x > tmax[r] ? x : tmax[r]; /* a NaN score is ignored here, as by fmaxf */
    }
  }
  for (int r = 0; r < kCols; r++) {
    const float m = tmax[r] > mx[r] ? tmax[r] : mx[r];
    alpha[r] = mx[r] == m ? 1.0f : exp_shifted(mx[r], m);
    mx[r] = m;
    ts[r] = 0.0f;
  }
  for (int c = 0; c < nc; c++) {
    float *sc = st + c * kCols;
    for (int r = 0; r < kCols; r++) {
      const float p = exp_shifted(sc[r], mx[r]);
      sc[r] = p;
      ts[r] += p;
    }
  }
  for (int r = 0; r < kCols; r++) sum[r] = sum[r] * alpha[r] + ts[r];
}

/* The backward's recomputed probabilities for one query row of a tile: s[c] becomes
 * p = exp(scale * s[c] - l) for the keys c in [lo, hi) the row may attend, 0 elsewhere (and 0 for
 * a row with no key, l == -inf), and ds[c] (dO V^T on entry) becomes dS = p * (ds[c] - di). The
 * exp is the forward's, vectorized over the 64 keys. */
MOE4J_SIMD_CLONES inline void grad_scores_row(float *__restrict__ s, float *__restrict__ ds, int lo,
                                              int hi, float scale, float l, float di) {
  const bool any = l != -INFINITY;
  for (int c = 0; c < kCols; c++) {
    const float p = any && c >= lo && c < hi ? exp_shifted(scale * s[c], l) : 0.0f;
    s[c] = p;
    ds[c] = p * (ds[c] - di);
  }
}

/* s[r * 64 + c] = Σ_d a[r * lda + d] bt[d * 64 + c] (fma chain over d from 0). */
MOE4J_SIMD_CLONES inline void scores_portable(const float *__restrict__ a, int64_t lda,
                                              const float *__restrict__ bt, float *__restrict__ s,
                                              int rows, int64_t D) {
  for (int r = 0; r < rows; r++) {
    float acc[kCols];
    for (int c = 0; c < kCols; c++) acc[c] = 0.0f;
    for (int64_t d = 0; d < D; d++) {
      const float x = a[r * lda + d];
      const float *b = bt + d * kCols;
      for (int c = 0; c < kCols; c++) acc[c] = fmaf(x, b[c], acc[c]);
    }
    for (int c = 0; c < kCols; c++) s[r * kCols + c] = acc[c];
  }
}

/* o[r * D + :] = fma chain over c in [lo_r, hi_r) of pt[c * 64 + r] * v[c * ldv + :]. */
MOE4J_SIMD_CLONES inline void pv_portable(const float *__restrict__ pt, const float *__restrict__ v,
                                          int64_t ldv, float *__restrict__ o, int rows, int64_t D,
                                          const int *lo, const int *hi) {
  for (int r = 0; r < rows; r++) {
    float *orow = o + r * D;
    for (int c = lo[r]; c < hi[r]; c++) {
      const float a = pt[c * kCols + r];
      const float *vc = v + c * ldv;
      for (int64_t d = 0; d < D; d++) orow[d] = fmaf(a, vc[d], orow[d]);
    }
  }
}

/* ---- AVX-512 ----------------------------------------------------------------------------- */

#define MOE4J_ATTN_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))

/* GCC 12 reports the deliberately undefined pass-through operand inside its own AVX-512
 * intrinsic headers (_mm512_undefined_*) as uninitialized; a known false positive. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

template <int R>
MOE4J_ATTN_AVX512 inline void scores_block_avx512(const float *a, int64_t lda, const float *bt,
                                                  float *s, int64_t D) {
  __m512 acc[R][4];
  for (int i = 0; i < R; i++)
    for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; d++) {
    const float *b = bt + d * kCols;
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16),
                 b2 = _mm512_loadu_ps(b + 32), b3 = _mm512_loadu_ps(b + 48);
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
      const __m512 x = _mm512_set1_ps(a[i * lda + d]);
      acc[i][0] = _mm512_fmadd_ps(x, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(x, b1, acc[i][1]);
      acc[i][2] = _mm512_fmadd_ps(x, b2, acc[i][2]);
      acc[i][3] = _mm512_fmadd_ps(x, b3, acc[i][3]);
    }
  }
  for (int i = 0; i < R; i++)
    for (int j = 0; j < 4; j++) _mm512_storeu_ps(s + i * kCols + 16 * j, acc[i][j]);
}

MOE4J_ATTN_AVX512 inline void scores_avx512(const float *a, int64_t lda, const float *bt, float *s,
                                            int rows, int64_t D) {
  int r = 0;
  for (; r + 6 <= rows; r += 6) scores_block_avx512<6>(a + r * lda, lda, bt, s + r * kCols, D);
  for (; r + 2 <= rows; r += 2) scores_block_avx512<2>(a + r * lda, lda, bt, s + r * kCols, D);
  for (; r < rows; r++) scores_block_avx512<1>(a + r * lda, lda, bt, s + r * kCols, D);
}

/* R rows x 16*NV columns of O starting at column j0; keys [clo, chi) (the union of the rows'
 * ranges: outside its own range a row's p is an exact 0, and fma(0, v, o) == o for finite v). */
template <int R, int NV>
MOE4J_ATTN_AVX512 inline void pv_block_avx512(const float *pt, const float *v, int64_t ldv,
                                              float *o, int64_t D, int64_t j0, int clo, int chi) {
  __m512 acc[R][NV];
  for (int i = 0; i < R; i++)
    for (int j = 0; j < NV; j++) acc[i][j] = _mm512_loadu_ps(o + i * D + j0 + 16 * j);
  for (int c = clo; c < chi; c++) {
    const float *vc = v + c * ldv + j0;
    __m512 b[NV];
    for (int j = 0; j < NV; j++) b[j] = _mm512_loadu_ps(vc + 16 * j);
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
      const __m512 a = _mm512_set1_ps(pt[c * kCols + i]);
      for (int j = 0; j < NV; j++) acc[i][j] = _mm512_fmadd_ps(a, b[j], acc[i][j]);
    }
  }
  for (int i = 0; i < R; i++)
    for (int j = 0; j < NV; j++) _mm512_storeu_ps(o + i * D + j0 + 16 * j, acc[i][j]);
}

template <int R>
MOE4J_ATTN_AVX512 inline void pv_rows_avx512(const float *pt, const float *v, int64_t ldv, float *o,
                                             int64_t D, const int *lo, const int *hi) {
  int clo = lo[0], chi = hi[0];
  for (int i = 1; i < R; i++) {
    clo = lo[i] < clo ? lo[i] : clo;
    chi = hi[i] > chi ? hi[i] : chi;
  }
  if (clo >= chi) return;
  int64_t j0 = 0;
  for (; j0 + 64 <= D; j0 += 64) pv_block_avx512<R, 4>(pt, v, ldv, o, D, j0, clo, chi);
  for (; j0 + 16 <= D; j0 += 16) pv_block_avx512<R, 1>(pt, v, ldv, o, D, j0, clo, chi);
  for (int i = 0; i < R; i++) /* column tail: the same chains, one element at a time */
    for (int64_t d = j0; d < D; d++) {
      float acc = o[i * D + d];
      for (int c = clo; c < chi; c++) acc = fmaf(pt[c * kCols + i], v[c * ldv + d], acc);
      o[i * D + d] = acc;
    }
}

MOE4J_ATTN_AVX512 inline void pv_avx512(const float *pt, const float *v, int64_t ldv, float *o,
                                        int rows, int64_t D, const int *lo, const int *hi) {
  for (int r = 0, n = 0; r < rows; r += n) {
    n = pv_block_rows(r, rows);
    if (n == 6)
      pv_rows_avx512<6>(pt + r, v, ldv, o + r * D, D, lo + r, hi + r);
    else if (n == 4)
      pv_rows_avx512<4>(pt + r, v, ldv, o + r * D, D, lo + r, hi + r);
    else
      pv_rows_avx512<1>(pt + r, v, ldv, o + r * D, D, lo + r, hi + r);
  }
}

#pragma GCC diagnostic pop

/* ---- dispatch ---------------------------------------------------------------------------- */

inline void scores(bool wide, const float *a, int64_t lda, const float *bt, float *s, int rows,
                   int64_t D) {
  if (wide)
    scores_avx512(a, lda, bt, s, rows, D);
  else
    scores_portable(a, lda, bt, s, rows, D);
}

inline void pv(bool wide, const float *pt, const float *v, int64_t ldv, float *o, int rows,
               int64_t D, const int *lo, const int *hi) {
  if (wide)
    pv_avx512(pt, v, ldv, o, rows, D, lo, hi);
  else
    pv_portable(pt, v, ldv, o, rows, D, lo, hi);
}

}  // namespace attn
}  // namespace moe4j
