/*
 * Micro-kernels and packing routines of the CPU grouped GEMM (native/src/cpu_gemm.cpp), BLIS
 * style. Three variants chosen at run time: AVX-512 (MR x NR = 14 x 32, 28 zmm accumulators),
 * AVX2+FMA (6 x 16, 12 ymm accumulators) and portable scalar (4 x 8).
 *
 * Packed formats (f32, zero padded to full MR / NR, so the micro-kernels have no edge cases):
 *   A micro-panel: a[p * MR + i], p < kc, i < MR;  B micro-panel: b[p * NR + j], j < NR.
 * Every output element is one fused multiply-add chain over p = 0, 1, ..., K-1 in order (the
 * micro-kernel reloads the partial sum from the C buffer at each KC block and continues the
 * chain), so the result depends neither on the blocking nor on the thread count, and the AVX2,
 * AVX-512 and scalar (fmaf) variants give bitwise the same numbers.
 * bf16 operands are widened to f32 inside the packing routines.
 */
#pragma once
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../../kernels/common/numerics.h"

namespace moe4j {
namespace gemm {

/* ---- scalar ----------------------------------------------------------------------------- */

constexpr int kScalarMR = 4, kScalarNR = 8;

/* c[MR x NR] (row stride ldc) = (load_c ? c : 0) + sum_p a[p] (x) b[p] */
inline void ukr_scalar(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                       bool load_c) {
  float acc[kScalarMR][kScalarNR];
  for (int i = 0; i < kScalarMR; i++)
    for (int j = 0; j < kScalarNR; j++) acc[i][j] = load_c ? c[i * ldc + j] : 0.0f;
  for (int64_t p = 0; p < kc; p++, a += kScalarMR, b += kScalarNR)
    for (int i = 0; i < kScalarMR; i++)
      for (int j = 0; j < kScalarNR; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
  for (int i = 0; i < kScalarMR; i++)
    for (int j = 0; j < kScalarNR; j++) c[i * ldc + j] = acc[i][j];
}

/* Packs a panel of W (MR or NR) lines: dst[p * W + r] = src[r * rs + p * ps] for r < valid,
 * 0 for valid <= r < W. */
template <typename T>
inline void pack_scalar(const T *src, int64_t rs, int64_t ps, int64_t valid, int64_t kc, int W,
                        float *dst) {
  for (int64_t p = 0; p < kc; p++) {
    float *d = dst + p * W;
    const T *s = src + p * ps;
    for (int64_t r = 0; r < valid; r++) d[r] = to_f32(s[r * rs]);
    for (int64_t r = valid; r < W; r++) d[r] = 0.0f;
  }
}

/* ---- AVX2 + FMA ------------------------------------------------------------------------- */

constexpr int kAvx2MR = 6, kAvx2NR = 16;

__attribute__((target("avx2,fma"))) inline void ukr_avx2(int64_t kc, const float *a,
                                                         const float *b, float *c, int64_t ldc,
                                                         bool load_c) {
  __m256 acc[kAvx2MR][2];
  for (int i = 0; i < kAvx2MR; i++) {
    acc[i][0] = load_c ? _mm256_loadu_ps(c + i * ldc) : _mm256_setzero_ps();
    acc[i][1] = load_c ? _mm256_loadu_ps(c + i * ldc + 8) : _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < kc; p++, a += kAvx2MR, b += kAvx2NR) {
    __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < kAvx2MR; i++) {
      __m256 ai = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
  for (int i = 0; i < kAvx2MR; i++) {
    _mm256_storeu_ps(c + i * ldc, acc[i][0]);
    _mm256_storeu_ps(c + i * ldc + 8, acc[i][1]);
  }
}

template <typename T>
__attribute__((target("avx2,fma"))) void pack_avx2(const T *src, int64_t rs, int64_t ps,
                                                   int64_t valid, int64_t kc, int W, float *dst) {
  pack_scalar(src, rs, ps, valid, kc, W, dst); /* auto-vectorized under this target */
}

/* ---- AVX-512 ---------------------------------------------------------------------------- */

constexpr int kAvx512MR = 14, kAvx512NR = 32;

#define MOE4J_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

/* GCC 12 reports the deliberately undefined pass-through operand inside its own AVX-512
 * intrinsic headers (_mm512_undefined_*) as maybe-uninitialized; a known false positive. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

MOE4J_AVX512 inline void ukr_avx512(int64_t kc, const float *a, const float *b, float *c,
                                    int64_t ldc, bool load_c) {
  __m512 acc[kAvx512MR][2];
  if (load_c) {
#pragma GCC unroll 14
    for (int i = 0; i < kAvx512MR; i++) {
      acc[i][0] = _mm512_loadu_ps(c + i * ldc);
      acc[i][1] = _mm512_loadu_ps(c + i * ldc + 16);
    }
  } else {
#pragma GCC unroll 14
    for (int i = 0; i < kAvx512MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  }
  /* two k steps per trip: half the loop overhead on the ports the FMAs use */
  int64_t p = 0;
  for (; p + 2 <= kc; p += 2) {
#pragma GCC unroll 2
    for (int u = 0; u < 2; u++, a += kAvx512MR, b += kAvx512NR) {
      __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 14
      for (int i = 0; i < kAvx512MR; i++) {
        __m512 ai = _mm512_set1_ps(a[i]);
        acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
      }
    }
  }
  for (; p < kc; p++, a += kAvx512MR, b += kAvx512NR) {
    __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 14
    for (int i = 0; i < kAvx512MR; i++) {
      __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 14
  for (int i = 0; i < kAvx512MR; i++) {
    _mm512_storeu_ps(c + i * ldc, acc[i][0]);
    _mm512_storeu_ps(c + i * ldc + 16, acc[i][1]);
  }
}

MOE4J_AVX512 inline __m512 load16_masked(const float *p, __mmask16 m) {
  return _mm512_maskz_loadu_ps(m, p);
}
MOE4J_AVX512 inline __m512 load16_masked(const bf16_t *p, __mmask16 m) {
  __m256i h = _mm256_maskz_loadu_epi16(m, (const void *)p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* In-register transpose of 16 x 16 floats. */
MOE4J_AVX512 inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int q = 0; q < 4; q++) { /* rows 4q..4q+3 from t[4q..4q+3] */
    __m512 *u = t + 4 * q;
    r[4 * q + 0] = _mm512_shuffle_ps(u[0], u[2], 0x44);
    r[4 * q + 1] = _mm512_shuffle_ps(u[0], u[2], 0xEE);
    r[4 * q + 2] = _mm512_shuffle_ps(u[1], u[3], 0x44);
    r[4 * q + 3] = _mm512_shuffle_ps(u[1], u[3], 0xEE);
  }
  for (int h = 0; h < 2; h++) { /* pairs (r[8h+i], r[8h+4+i]) */
    for (int i = 0; i < 4; i++) {
      t[8 * h + i] = _mm512_shuffle_f32x4(r[8 * h + i], r[8 * h + 4 + i], 0x88);
      t[8 * h + 4 + i] = _mm512_shuffle_f32x4(r[8 * h + i], r[8 * h + 4 + i], 0xDD);
    }
  }
  for (int i = 0; i < 8; i++) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
  }
}

/* Packing reads its source (x, w: often not in cache) along p in 64-byte steps on up to 16
 * lines at once; software prefetch 4 lines ahead on each (measured +2-3% on 2048^3). */
constexpr int64_t kPackPrefetch = 64; /* elements ahead along p */

template <typename T>
MOE4J_AVX512 void pack_avx512(const T *src, int64_t rs, int64_t ps, int64_t valid, int64_t kc,
                              int W, float *dst) {
  if (ps == 1 && rs != 1) {
    /* lines contiguous along p: 16 lines x 16 p at a time through a register transpose */
    for (int r0 = 0; r0 < W; r0 += 16) {
      const int width = W - r0 < 16 ? W - r0 : 16;
      const __mmask16 store_mask = (__mmask16)((1u << width) - 1u);
      int64_t lines = valid - r0;
      lines = lines < 0 ? 0 : (lines > width ? width : lines);
      for (int64_t p0 = 0; p0 < kc; p0 += 16) {
        const int64_t pl = kc - p0 < 16 ? kc - p0 : 16;
        const __mmask16 m = (__mmask16)((1u << pl) - 1u);
        __m512 v[16];
        if (p0 + kPackPrefetch < kc)
          for (int t = 0; t < lines; t++)
            _mm_prefetch((const char *)(src + (r0 + t) * rs + p0 + kPackPrefetch), _MM_HINT_T0);
        for (int t = 0; t < 16; t++)
          v[t] = t < lines ? load16_masked(src + (r0 + t) * rs + p0, m) : _mm512_setzero_ps();
        transpose16(v);
        for (int64_t q = 0; q < pl; q++) _mm512_mask_storeu_ps(dst + (p0 + q) * W + r0, store_mask, v[q]);
      }
    }
    return;
  }
  if (rs == 1) {
    /* lines contiguous along r: a masked copy per p */
    for (int64_t p = 0; p < kc; p++) {
      const T *s = src + p * ps;
      float *d = dst + p * W;
      for (int r0 = 0; r0 < W; r0 += 16) {
        const int width = W - r0 < 16 ? W - r0 : 16;
        int64_t lines = valid - r0;
        lines = lines < 0 ? 0 : (lines > width ? width : lines);
        __m512 x = load16_masked(s + r0, (__mmask16)((1u << lines) - 1u));
        _mm512_mask_storeu_ps(d + r0, (__mmask16)((1u << width) - 1u), x);
      }
    }
    return;
  }
  pack_scalar(src, rs, ps, valid, kc, W, dst);
}

#pragma GCC diagnostic pop

}  // namespace gemm
}  // namespace moe4j
