/*
 * Naive (materialized) attention on the CPU: the textbook algorithm that `moe4j bench attention`
 * measures the flash twin (cpu_attention.cpp) against, and an oracle for it that needs no fp64.
 *
 * One OpenMP work item per (batch, query head), three passes over a full S x S f32 matrix:
 *   1. scores: P[i][j] = scale * q_i . k_j for the keys row i may attend;
 *   2. mask + softmax per row: max, p = exp(s - max), sum, p /= sum, lse = max + log(sum);
 *   3. out_i = sum_j P[i][j] v_j.
 * The allowed keys of row i form one contiguous range [lo, hi) (causal: j <= i; window: j > i - w),
 * so passes 1-3 only touch that range of the row; the rest of the row is masked out and never
 * read. That skips the same work the flash twin skips by whole tiles, so the comparison measures
 * materialization and locality, not wasted FLOPs on masked scores.
 *
 * It is meant to be a fair baseline, not a slow one: both products are written in the loop order
 * of a plain vectorizable matrix multiply (i-k-j: the innermost loop runs over the contiguous index
 * — keys of the transposed K in pass 1, head_dim of V in pass 3 — with one multiply-add per element
 * and no reassociated reduction), so the SIMD clones vectorize them; there is no register blocking
 * or tiling beyond that. K of the item's kv head is transposed (and V widened) once per item.
 *
 * Scratch, per thread that runs an item: S*S (P) + 2*S*D (K transposed, V widened) + D floats,
 * heap-allocated by the thread (heap, not stack: the caller may be a JVM thread with a small
 * stack). An allocation failure in any thread makes the call return MOE4J_ERR_OUT_OF_MEMORY.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "attention_args.h"
#include "attention_tiles.h"
#include "cpu_common.h"
#include "softmax_math.h"

using namespace moe4j;

namespace {

struct Shape {
  int64_t batch, seq, hq, hkv, d;
  bool causal;
  int64_t w; /* attn_window(window, seq) */
  float scale;
};

/* The keys row i may attend: [lo, hi) (empty when lo >= hi). */
struct KeyRange {
  int64_t lo, hi;
};

KeyRange allowed_keys(int64_t i, const Shape &sh) {
  const int64_t lo = sh.w > 0 && i - sh.w + 1 > 0 ? i - sh.w + 1 : 0;
  const int64_t hi = sh.causal ? i + 1 : sh.seq;
  return KeyRange{lo, hi};
}

/* p[j] = scale * sum_d q[d] kt[d][j] for j in [lo, hi): i-k-j order, vectorized over j. */
MOE4J_SIMD_CLONES void score_row(const float *__restrict__ q, const float *__restrict__ kt,
                                 float *__restrict__ p, int64_t lo, int64_t hi, int64_t S,
                                 int64_t D, float scale) {
  for (int64_t j = lo; j < hi; j++) p[j] = 0.0f;
  for (int64_t d = 0; d < D; d++) {
    const float x = q[d];
    const float *k = kt + d * S;
    for (int64_t j = lo; j < hi; j++) p[j] += x * k[j];
  }
  for (int64_t j = lo; j < hi; j++) p[j] *= scale;
}

/* Softmax of p[lo, hi) in place; returns the log-sum-exp (-inf for an empty range). */
MOE4J_SIMD_CLONES float softmax_row(float *__restrict__ p, int64_t lo, int64_t hi) {
  float m = -INFINITY;
  for (int64_t j = lo; j < hi; j++) m = fmaxf(m, p[j]);
  float sum = 0.0f;
  for (int64_t j = lo; j < hi; j++) {
    p[j] = softmax_exp(p[j], m);
    sum += p[j];
  }
  if (sum == 0.0f) return -INFINITY;
  const float inv = 1.0f / sum;
  for (int64_t j = lo; j < hi; j++) p[j] *= inv;
  return m + logf(sum);
}

/* o[:] = sum_{j in [lo, hi)} p[j] v[j][:]: i-k-j order, vectorized over d. */
MOE4J_SIMD_CLONES void pv_row(const float *__restrict__ p, const float *__restrict__ v,
                              float *__restrict__ o, int64_t lo, int64_t hi, int64_t D) {
  for (int64_t d = 0; d < D; d++) o[d] = 0.0f;
  for (int64_t j = lo; j < hi; j++) {
    const float a = p[j];
    const float *vj = v + j * D;
    for (int64_t d = 0; d < D; d++) o[d] += a * vj[d];
  }
}

/* Per-thread buffers of one item. */
struct Buffers {
  float *p, *kt, *vf, *row;
};

template <typename T>
void naive_item(const T *q, const T *k, const T *v, T *out, float *lse, const Shape &sh,
                int64_t b, int64_t h, const Buffers &buf) {
  const int64_t S = sh.seq, D = sh.d, kvh = h / (sh.hq / sh.hkv);
  for (int64_t j = 0; j < S; j++) {
    const T *kr = k + ((b * S + j) * sh.hkv + kvh) * D;
    const T *vr = v + ((b * S + j) * sh.hkv + kvh) * D;
    for (int64_t d = 0; d < D; d++) {
      buf.kt[d * S + j] = to_f32(kr[d]);
      buf.vf[j * D + d] = to_f32(vr[d]);
    }
  }
  /* pass 1: the score matrix */
  for (int64_t i = 0; i < S; i++) {
    const T *qr = q + ((b * S + i) * sh.hq + h) * D;
    for (int64_t d = 0; d < D; d++) buf.row[d] = to_f32(qr[d]);
    const KeyRange r = allowed_keys(i, sh);
    score_row(buf.row, buf.kt, buf.p + i * S, r.lo, r.hi, S, D, sh.scale);
  }
  /* pass 2: mask + softmax, row by row over the materialized matrix */
  float *lse_bh = lse + (b * sh.hq + h) * S;
  for (int64_t i = 0; i < S; i++) {
    const KeyRange r = allowed_keys(i, sh);
    lse_bh[i] = softmax_row(buf.p + i * S, r.lo, r.hi);
  }
  /* pass 3: out = P V (an empty row gives 0, like the flash twin) */
  for (int64_t i = 0; i < S; i++) {
    const KeyRange r = allowed_keys(i, sh);
    pv_row(buf.p + i * S, buf.vf, buf.row, r.lo, lse_bh[i] == -INFINITY ? r.lo : r.hi, D);
    T *orow = out + ((b * S + i) * sh.hq + h) * D;
    for (int64_t d = 0; d < D; d++) orow[d] = from_f32<T>(buf.row[d]);
  }
}

/* Floats one thread needs; false when the count does not fit in size_t bytes. */
bool scratch_floats(int64_t S, int64_t D, int64_t *floats) {
  int64_t ss = 0, sd = 0, total = 0;
  if (__builtin_mul_overflow(S, S, &ss) || __builtin_mul_overflow(S, 2 * D, &sd) ||
      __builtin_add_overflow(ss, sd, &total) || __builtin_add_overflow(total, D, &total) ||
      total > (int64_t)(SIZE_MAX / sizeof(float) / 2))
    return false;
  *floats = total;
  return true;
}

/* Runs every (b, h) item; returns false when some thread could not allocate its buffers. */
template <typename T>
bool naive_forward(const T *q, const T *k, const T *v, T *out, float *lse, const Shape &sh,
                   int64_t floats) {
  const int64_t items = sh.batch * sh.hq;
  int failed = 0;
#pragma omp parallel if (items > 1) reduction(| : failed)
  {
    float *mem = nullptr;
    bool tried = false;
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; item++) {
      if (!tried) { /* only threads that get an item allocate */
        tried = true;
        mem = (float *)aligned_alloc(64, ((size_t)floats * sizeof(float) + 63) / 64 * 64);
        if (mem == nullptr) failed = 1;
      }
      if (mem == nullptr) continue;
      const int64_t S = sh.seq, D = sh.d;
      const Buffers buf{mem, mem + S * S, mem + S * S + S * D, mem + S * S + 2 * S * D};
      naive_item(q, k, v, out, lse, sh, item / sh.hq, item % sh.hq, buf);
    }
    free(mem);
  }
  return failed == 0;
}

}  // namespace

extern "C" {

int32_t moe4j_cpu_attention_naive_forward(int32_t dtype, const void *q, const void *k,
                                          const void *v, void *out, float *lse, int64_t batch,
                                          int64_t seq, int64_t q_heads, int64_t kv_heads,
                                          int64_t head_dim, int32_t causal, int64_t window,
                                          float scale) {
  const char *fn = "moe4j_cpu_attention_naive_forward";
  ArgCheck chk(fn);
  check_attention_forward(chk, dtype, q, k, v, out, lse, /*cu_seqlens=*/nullptr, batch, seq,
                          q_heads, kv_heads, head_dim, causal, window, scale);
  if (chk.failed()) return chk.status();
  if (batch * seq == 0) return MOE4J_OK;
  int64_t floats = 0;
  if (!scratch_floats(seq, head_dim, &floats))
    return fail(MOE4J_ERR_OUT_OF_MEMORY,
                "%s: the %lld x %lld score matrix does not fit in memory (size overflow)", fn,
                (long long)seq, (long long)seq);
  const Shape sh{batch, seq, q_heads, kv_heads, head_dim, causal != 0, attn_window(window, seq),
                 scale};
  bool ok = true;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    ok = naive_forward((const T *)q, (const T *)k, (const T *)v, (T *)out, lse, sh, floats);
  });
  if (!ok)
    return fail(MOE4J_ERR_OUT_OF_MEMORY,
                "%s: cannot allocate the %lld-byte per-thread score matrix and K/V copies", fn,
                (long long)(floats * (int64_t)sizeof(float)));
  return MOE4J_OK;
}

}  // extern "C"
