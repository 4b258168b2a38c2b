/*
 * KV-cache decode (flash-decoding): index math and the split merge, shared by the CPU twin
 * (native/src/cpu_decode.cpp) and the CUDA kernel, so both cut the context into the same chunks,
 * use the same workspace layout and merge the chunk partials by the same rule.
 *
 * Visible keys. Sequence b holds `length` = lengths[b] cached tokens; the call appends the
 * new_tokens new keys at positions length .. length + new_tokens - 1. New query i sits at position
 * length + i and sees keys [lo, hi) with hi = length + i + 1 (causal) and lo = max(0, hi - window)
 * when window > 0, else 0 (decode_key_range). The range is never empty (hi - lo >= 1).
 *
 * Split-K. [lo, hi) is cut into split_k chunks of ceil(n / split_k) keys (n = hi - lo), the last
 * ones shorter or empty (decode_chunk); more splits than keys leaves the trailing chunks empty.
 *
 * Partials. Chunk s of (b, i, h) yields, over its keys j with scores x_j = scale * (q . k_j):
 *   m = max_j x_j (-inf for an empty chunk), l = Σ_j exp(x_j - m), acc[d] = Σ_j exp(x_j - m) v_j[d]
 * (unnormalized; an empty chunk has m = -inf, l = 0, acc = 0). m is exact whatever the order of
 * the keys; l and acc depend on the summation order, which each twin fixes for itself.
 *
 * Workspace (F32, decode_workspace_floats floats). Partial p = decode_partial_index(b, i, h, s)
 * (s fastest, then h, i, b), N = decode_partial_count(...) partials in all:
 *   acc of p: floats [p * D, p * D + D)       (offset 0: rows aligned like the workspace; D even)
 *   m   of p: float  N * D + p
 *   l   of p: float  N * D + N + p
 *
 * Merge (deterministic, in chunk order). M = max_s m_s (exact, any order); w_s =
 * decode_merge_weight(m_s, M) (0 for an empty chunk, 1 exactly for m_s == M);
 * L = Σ_{s = 0..split_k-1} w_s * l_s and out[d] = (Σ_{s = 0..split_k-1} w_s * acc_s[d]) / L, both
 * sums accumulated in f32 in ascending s, then rounded once to the output type. With split_k = 1
 * this is exactly acc / l. decode_merge_* below implement it.
 */
#pragma once
#include <math.h>
#include <stdint.h>

#include "hd.h"

namespace moe4j {

constexpr int32_t kDecodeMaxSplitK = 1024;

/* Keys visible to new query i of a sequence with `length` cached tokens: [*lo, *hi). */
MOE4J_HD void decode_key_range(int64_t length, int64_t i, int64_t window, int64_t *lo,
                               int64_t *hi) {
  const int64_t h = length + i + 1;
  int64_t l = 0;
  if (window > 0 && h - window > 0) l = h - window;
  *lo = l;
  *hi = h;
}

/* Keys per chunk when [lo, hi) is cut into split_k chunks: ceil((hi - lo) / split_k). */
MOE4J_HD int64_t decode_chunk_size(int64_t lo, int64_t hi, int32_t split_k) {
  const int64_t n = hi > lo ? hi - lo : 0;
  return (n + split_k - 1) / split_k;
}

/* Chunk s (0 <= s < split_k) of [lo, hi): [*begin, *end), empty (begin == end) past the keys. */
MOE4J_HD void decode_chunk(int64_t lo, int64_t hi, int32_t split_k, int32_t s, int64_t *begin,
                           int64_t *end) {
  const int64_t c = decode_chunk_size(lo, hi, split_k);
  int64_t b = lo + (int64_t)s * c;
  if (b > hi) b = hi;
  int64_t e = b + c;
  if (e > hi) e = hi;
  *begin = b;
  *end = e;
}

/* Number of partials: batch * new_tokens * q_heads * split_k. */
MOE4J_HD int64_t decode_partial_count(int64_t batch, int64_t new_tokens, int64_t q_heads,
                                      int32_t split_k) {
  return batch * new_tokens * q_heads * (int64_t)split_k;
}

/* Index of the partial of (b, i, h, s): s fastest, then h, then i, then b. */
MOE4J_HD int64_t decode_partial_index(int64_t b, int64_t i, int64_t h, int32_t s,
                                      int64_t new_tokens, int64_t q_heads, int32_t split_k) {
  return ((b * new_tokens + i) * q_heads + h) * (int64_t)split_k + s;
}

/* Workspace size in floats: N * (head_dim + 2) (the callers check that the products fit). */
MOE4J_HD int64_t decode_workspace_floats(int64_t batch, int64_t new_tokens, int64_t q_heads,
                                         int64_t head_dim, int32_t split_k) {
  return decode_partial_count(batch, new_tokens, q_heads, split_k) * (head_dim + 2);
}

/* Offsets (in floats from the workspace start) of partial p's acc, m and l; N partials. */
MOE4J_HD int64_t decode_ws_acc_offset(int64_t p, int64_t head_dim) { return p * head_dim; }
MOE4J_HD int64_t decode_ws_m_offset(int64_t p, int64_t n_partials, int64_t head_dim) {
  return n_partials * head_dim + p;
}
MOE4J_HD int64_t decode_ws_l_offset(int64_t p, int64_t n_partials, int64_t head_dim) {
  return n_partials * head_dim + n_partials + p;
}

/* Weight of a chunk with max m_s under the global max M: 0 for an empty chunk (m_s = -inf),
 * 1 exactly when m_s == M, else exp(m_s - M). */
MOE4J_HD float decode_merge_weight(float m_s, float global_max) {
  if (m_s == -INFINITY) return 0.0f;
  return m_s == global_max ? 1.0f : expf(m_s - global_max);
}

/* The global max over the chunk maxima m[s * m_stride], s = 0..split_k-1 (-inf if all empty). */
MOE4J_HD float decode_merge_max(const float *m, int64_t m_stride, int32_t split_k) {
  float g = -INFINITY;
  for (int32_t s = 0; s < split_k; s++) g = fmaxf(g, m[(int64_t)s * m_stride]);
  return g;
}

/* L = Σ_s w_s * l_s in ascending s (w_s from decode_merge_weight). */
MOE4J_HD float decode_merge_denominator(const float *m, const float *l, int64_t stride,
                                        int32_t split_k, float global_max) {
  float sum = 0.0f;
  for (int32_t s = 0; s < split_k; s++) {
    const float w = decode_merge_weight(m[(int64_t)s * stride], global_max);
    sum += w * l[(int64_t)s * stride];
  }
  return sum;
}

/* out[d] before rounding: (Σ_s w_s * acc_s[d], ascending s) / L; acc_s at acc + s * acc_stride.
 * L = 0 (cannot happen: every query sees a key) gives 0 rather than NaN. */
MOE4J_HD float decode_merge_value(const float *m, int64_t m_stride, const float *acc,
                                  int64_t acc_stride, int32_t split_k, float global_max,
                                  float denominator) {
  float sum = 0.0f;
  for (int32_t s = 0; s < split_k; s++) {
    const float w = decode_merge_weight(m[(int64_t)s * m_stride], global_max);
    sum += w * acc[(int64_t)s * acc_stride];
  }
  return denominator > 0.0f ? sum / denominator : 0.0f;
}

}  // namespace moe4j
