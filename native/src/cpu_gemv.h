/*
 * Small-M kernels of the CPU grouped GEMM forward (native/src/cpu_gemm.cpp): a group of at most 16
 * rows (decode: M = batch, or the 0..8 rows an expert gets per step) is a memory-bound GEMV.
 * Packing its weight into f32 panels (read bf16, write f32, read again) would move ~3x the weight
 * bytes; here every weight row is read once from memory, widened in registers, and multiplied
 * against all M activation rows (f32, zero padded to kGemvLanes, in L1) while it is in registers.
 *
 * Summation order (fixed, so results are deterministic and the same for every SIMD variant and
 * thread count): each output is accumulated in kGemvLanes = 16 lanes, lane l holding the terms
 * p = l, l + 16, l + 32, ... as one FMA chain in p order (the k tail padded with zeros), and the
 * 16 lanes are then summed by the fixed tree (l, l+8), (l, l+4), (l, l+2), (0, 1). The AVX-512
 * (one zmm per chain), AVX2 (two ymm) and scalar (fmaf) kernels are bitwise identical. The packed
 * path sums each output as one chain in p order, so the two paths agree to f32 rounding of the
 * k-sum, not bitwise.
 */
#pragma once
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <utility>

#include "../../kernels/common/numerics.h"

namespace moe4j {
namespace gemm {

constexpr int kGemvLanes = 16;
/* Weight rows computed together: each x load feeds R FMAs and each weight load M FMAs. */
constexpr int kGemvRows = 4;

/* Sum of 16 lanes in the fixed tree order shared by all variants. */
inline float gemv_reduce16(const float *a) {
  float v8[8], v4[4];
  for (int l = 0; l < 8; l++) v8[l] = a[l] + a[l + 8];
  for (int l = 0; l < 4; l++) v4[l] = v8[l] + v8[l + 4];
  return (v4[0] + v4[2]) + (v4[1] + v4[3]);
}

/* The last k % 16 elements of a weight row as 16 zero-padded floats. */
template <typename T>
inline void gemv_tail(const T *w, int64_t count, float *dst) {
  for (int64_t i = 0; i < count; i++) dst[i] = to_f32(w[i]);
  for (int64_t i = count; i < kGemvLanes; i++) dst[i] = 0.0f;
}

/* Every kernel: dots[r * M + i] = w_r . x_i for the weight rows r < rows and x rows i < M.
 * w: rows of length k (stride k), F32 or BF16; x: M rows of f32 with stride ldx, a multiple of 16
 * >= k, zero padded up to round_up(k, 16). */

/* ---- scalar ----------------------------------------------------------------------------- */

template <typename T, int M>
void gemv_scalar(const T *w, int64_t k, int rows, const float *x, int64_t ldx, float *dots) {
  const int64_t kfull = k / kGemvLanes * kGemvLanes;
  for (int r = 0; r < rows; r++) {
    const T *wr = w + r * k;
    float acc[M][kGemvLanes];
    for (int i = 0; i < M; i++)
      for (int l = 0; l < kGemvLanes; l++) acc[i][l] = 0.0f;
    float wt[kGemvLanes];
    for (int64_t p0 = 0; p0 < k; p0 += kGemvLanes) {
      const float *wv = wt;
      if (p0 < kfull) {
        for (int l = 0; l < kGemvLanes; l++) wt[l] = to_f32(wr[p0 + l]);
      } else {
        gemv_tail(wr + p0, k - p0, wt);
      }
      for (int i = 0; i < M; i++)
        for (int l = 0; l < kGemvLanes; l++) acc[i][l] = fmaf(wv[l], x[i * ldx + p0 + l], acc[i][l]);
    }
    for (int i = 0; i < M; i++) dots[r * M + i] = gemv_reduce16(acc[i]);
  }
}

/* ---- AVX2 + FMA: two ymm per chain ------------------------------------------------------- */

__attribute__((target("avx2,fma"))) inline __m256 gemv_load8(const float *p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma"))) inline __m256 gemv_load8(const bf16_t *p) {
  __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* x rows per pass for a register budget of `cap` rows: M split into equal passes (the later
 * passes read the same weight rows again, from L1). */
constexpr int gemv_rows_per_pass(int m, int cap) { return (m + (m + cap - 1) / cap - 1) / ((m + cap - 1) / cap); }

/* 16 ymm registers: R x MI chains x 2 halves <= 8 (R = 2 for M <= 2, else 1 and MI <= 4). */
template <typename T, int M>
__attribute__((target("avx2,fma"))) void gemv_avx2(const T *w, int64_t k, int rows, const float *x,
                                                    int64_t ldx, float *dots) {
  constexpr int R = M <= 2 ? 2 : 1;
  constexpr int MI = gemv_rows_per_pass(M, 4);
  const int64_t kfull = k / kGemvLanes * kGemvLanes;
  alignas(32) float wt[R][kGemvLanes];
  for (int r0 = 0; r0 < rows; r0 += R) {
    const int nr = rows - r0 < R ? rows - r0 : R;
    const T *wr[R];
    for (int r = 0; r < R; r++) wr[r] = w + (r0 + (r < nr ? r : 0)) * k;
    for (int i0 = 0; i0 < M; i0 += MI) {
      const int mi = M - i0 < MI ? M - i0 : MI;
      __m256 acc[R][MI][2];
      for (int r = 0; r < R; r++)
        for (int i = 0; i < MI; i++) acc[r][i][0] = acc[r][i][1] = _mm256_setzero_ps();
      for (int64_t p0 = 0; p0 < k; p0 += kGemvLanes) {
        __m256 w0[R], w1[R];
        for (int r = 0; r < R; r++) {
          if (p0 < kfull) {
            w0[r] = gemv_load8(wr[r] + p0);
            w1[r] = gemv_load8(wr[r] + p0 + 8);
          } else {
            gemv_tail(wr[r] + p0, k - p0, wt[r]);
            w0[r] = _mm256_load_ps(wt[r]);
            w1[r] = _mm256_load_ps(wt[r] + 8);
          }
        }
#pragma GCC unroll 4
        for (int i = 0; i < MI; i++) {
          if (i >= mi) break;
          const float *xi = x + (i0 + i) * ldx + p0;
          const __m256 x0 = _mm256_loadu_ps(xi), x1 = _mm256_loadu_ps(xi + 8);
          for (int r = 0; r < R; r++) {
            acc[r][i][0] = _mm256_fmadd_ps(w0[r], x0, acc[r][i][0]);
            acc[r][i][1] = _mm256_fmadd_ps(w1[r], x1, acc[r][i][1]);
          }
        }
      }
      alignas(32) float lanes[kGemvLanes];
      for (int r = 0; r < nr; r++)
        for (int i = 0; i < mi; i++) {
          _mm256_store_ps(lanes, acc[r][i][0]);
          _mm256_store_ps(lanes + 8, acc[r][i][1]);
          dots[(r0 + r) * M + i0 + i] = gemv_reduce16(lanes);
        }
    }
  }
}

/* ---- AVX-512: one zmm per chain ---------------------------------------------------------- */

#define MOE4J_GEMV_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

/* GCC 12's false positive on the undefined pass-through operand inside its own AVX-512 headers
 * (see cpu_gemm_kernels.h). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

MOE4J_GEMV_AVX512 inline __m512 gemv_load16(const float *p) { return _mm512_loadu_ps(p); }
MOE4J_GEMV_AVX512 inline __m512 gemv_load16(const bf16_t *p) {
  __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Software prefetch this many weight bytes ahead on each of the R row streams, so the R
 * concurrent streams per thread do not depend on the L2 streamer alone (a guess: its effect was
 * not measured separately on the loaded VM). */
constexpr int64_t kGemvPrefetchBytes = 512;

/* R = kGemvRows weight rows x MI x rows <= 16 zmm chains, plus the loads: M > 4 takes several
 * passes over the same R rows (the later ones from L1). */
template <typename T, int M>
MOE4J_GEMV_AVX512 void gemv_avx512(const T *w, int64_t k, int rows, const float *x, int64_t ldx,
                                    float *dots) {
  constexpr int R = kGemvRows;
  constexpr int MI = gemv_rows_per_pass(M, 4);
  const int64_t kfull = k / kGemvLanes * kGemvLanes;
  constexpr int64_t ahead = kGemvPrefetchBytes / (int64_t)sizeof(T);
  alignas(64) float wt[R][kGemvLanes];
  for (int r0 = 0; r0 < rows; r0 += R) {
    const int nr = rows - r0 < R ? rows - r0 : R;
    const T *wr[R];
    for (int r = 0; r < R; r++) wr[r] = w + (r0 + (r < nr ? r : 0)) * k;
    for (int i0 = 0; i0 < M; i0 += MI) {
      const int mi = M - i0 < MI ? M - i0 : MI;
      __m512 acc[R][MI];
#pragma GCC unroll 4
      for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int i = 0; i < MI; i++) acc[r][i] = _mm512_setzero_ps();
      int64_t p0 = 0;
      for (; p0 < kfull; p0 += kGemvLanes) {
        __m512 wv[R];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
          if (i0 == 0 && p0 + ahead < k) _mm_prefetch((const char *)(wr[r] + p0 + ahead), _MM_HINT_T0);
          wv[r] = gemv_load16(wr[r] + p0);
        }
#pragma GCC unroll 8
        for (int i = 0; i < MI; i++) {
          if (i >= mi) break;
          const __m512 xv = _mm512_loadu_ps(x + (i0 + i) * ldx + p0);
#pragma GCC unroll 4
          for (int r = 0; r < R; r++) acc[r][i] = _mm512_fmadd_ps(wv[r], xv, acc[r][i]);
        }
      }
      if (p0 < k) {
        __m512 wv[R];
        for (int r = 0; r < R; r++) {
          gemv_tail(wr[r] + p0, k - p0, wt[r]);
          wv[r] = _mm512_load_ps(wt[r]);
        }
        for (int i = 0; i < mi; i++) {
          const __m512 xv = _mm512_loadu_ps(x + (i0 + i) * ldx + p0);
          for (int r = 0; r < R; r++) acc[r][i] = _mm512_fmadd_ps(wv[r], xv, acc[r][i]);
        }
      }
      alignas(64) float lanes[kGemvLanes];
      for (int r = 0; r < nr; r++)
        for (int i = 0; i < mi; i++) {
          _mm512_store_ps(lanes, acc[r][i]);
          dots[(r0 + r) * M + i0 + i] = gemv_reduce16(lanes);
        }
    }
  }
}

#pragma GCC diagnostic pop

/* Kernel for M rows (1..kGemvMaxRows) and variant (0 scalar, 1 AVX2, 2 AVX-512). */
constexpr int kGemvMaxRows = 16;

template <typename T>
using GemvFn = void (*)(const T *, int64_t, int, const float *, int64_t, float *);

template <typename T, int M>
GemvFn<T> gemv_pick_m(int variant) {
  return variant == 2 ? gemv_avx512<T, M> : (variant == 1 ? gemv_avx2<T, M> : gemv_scalar<T, M>);
}

template <typename T, int... Ms>
GemvFn<T> gemv_pick(int variant, int m, std::integer_sequence<int, Ms...>) {
  GemvFn<T> table[] = {gemv_pick_m<T, Ms + 1>(variant)...};
  return table[m - 1];
}

template <typename T>
GemvFn<T> gemv_kernel(int variant, int m) {
  return gemv_pick<T>(variant, m, std::make_integer_sequence<int, kGemvMaxRows>{});
}

}  // namespace gemm
}  // namespace moe4j
