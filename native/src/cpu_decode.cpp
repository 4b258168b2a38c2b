/*
 * CPU twin of KV-cache decode (flash-decoding), following the chunking, workspace layout and merge
 * rule of kernels/common/decode_math.h that the CUDA kernel shares.
 *
 * 1. Append: the new keys / values of (b, t) are copied byte for byte into the caches at position
 *    lengths[b] + t (OpenMP over the rows). Nothing else in the caches is written.
 * 2. Partials: one work item per (b, new token i, kv head, split s), OpenMP over the items; the
 *    item computes the partial of every query head h of the kv head's GQA group (the K / V tiles
 *    are loaded once for the group, each head's partial computed as if alone). The query rows are
 *    widened to f32 once; the keys of chunk s of [lo, hi) (decode_key_range,
 *    decode_chunk) are visited in ascending tiles of kTile keys: the tile is transposed into
 *    kt[D][kTile], scores x_c = scale * Σ_d q[d] kt[d][c] (each summed in d order), the running max
 *    is raised to the tile max (rescaling l and acc once), then per key in ascending order
 *    p = exp(x - m), l += p, acc += p * v. m, l and acc go to the workspace slots of the partial.
 * 3. Merge: one item per (b, i, h): decode_merge_* over the splits in ascending order, out rounded
 *    to the storage type once.
 * Every partial and every merged row is computed by one thread in a fixed order, so the result is
 * bitwise identical for any thread count and schedule at a fixed split_k; no atomics. The inner
 * loops are vectorized over keys (scores) and over d (acc), never by reassociating a sum, so the
 * SIMD clones (-ffp-contract=off) round exactly like the baseline.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_common.h"
#include "decode_args.h"
#include "decode_math.h"
#include "softmax_math.h"

using namespace moe4j;

namespace {

constexpr int kTile = 64; /* keys per score tile */

/* Per-thread scratch (heap, not stack: the caller may be a JVM thread with a small stack):
 * `floats` per thread, 64-byte aligned. */
struct Scratch {
  float *base = nullptr;
  int64_t per_thread = 0;
  bool alloc(int64_t floats) {
    per_thread = (floats + 15) / 16 * 16;
    const int64_t threads = omp_get_max_threads();
    base = (float *)aligned_alloc(64, (size_t)(per_thread * threads) * sizeof(float));
    return base != nullptr;
  }
  float *mine() const { return base + per_thread * omp_get_thread_num(); }
  ~Scratch() { free(base); }
};

/* transposed key tile, value tile, scores, then per head of a GQA group: q row, max, sum. */
int64_t scratch_floats(int64_t D, int64_t group) {
  return 2 * D * kTile + kTile + group * (D + 2);
}

struct Shape {
  int64_t batch, t, max_seq, hq, hkv, d, window;
  float scale;
  int32_t split_k;
  int64_t group() const { return hq / hkv; }
  int64_t cache_row(int64_t b, int64_t pos, int64_t kvh) const {
    return ((b * max_seq + pos) * hkv + kvh) * d;
  }
  int64_t q_row(int64_t b, int64_t i, int64_t h) const { return ((b * t + i) * hq + h) * d; }
};

/* s[c] = Σ_d q[d] * kt[d * kTile + c] for all kTile columns (d ascending per column). */
MOE4J_SIMD_CLONES void tile_scores(const float *__restrict__ q, const float *__restrict__ kt,
                                   float *__restrict__ s, int64_t D) {
  float acc[kTile];
  for (int c = 0; c < kTile; c++) acc[c] = 0.0f;
  for (int64_t d = 0; d < D; d++) {
    const float x = q[d];
    const float *k = kt + d * kTile;
    for (int c = 0; c < kTile; c++) acc[c] += x * k[c];
  }
  for (int c = 0; c < kTile; c++) s[c] = acc[c];
}

/* acc[:] = acc[:] * alpha (alpha != 1). */
MOE4J_SIMD_CLONES void scale_row(float *__restrict__ acc, float alpha, int64_t D) {
  for (int64_t d = 0; d < D; d++) acc[d] *= alpha;
}

/* acc[:] += p * v[:]. */
MOE4J_SIMD_CLONES void axpy_row(float *__restrict__ acc, float p, const float *__restrict__ v,
                                int64_t D) {
  for (int64_t d = 0; d < D; d++) acc[d] += p * v[d];
}

/* Appends the new rows of every (b, t) to the caches (exact copies). */
template <typename T>
void append(const T *k_new, const T *v_new, T *k_cache, T *v_cache, const int32_t *lengths,
            const Shape &sh) {
  const int64_t rows = sh.batch * sh.t, row_elems = sh.hkv * sh.d;
#pragma omp parallel for schedule(static) if (rows > 1 && rows * row_elems >= kChunk)
  for (int64_t r = 0; r < rows; r++) {
    const int64_t b = r / sh.t, i = r % sh.t;
    const int64_t dst = sh.cache_row(b, (int64_t)lengths[b] + i, 0);
    memcpy(k_cache + dst, k_new + r * row_elems, (size_t)row_elems * sizeof(T));
    memcpy(v_cache + dst, v_new + r * row_elems, (size_t)row_elems * sizeof(T));
  }
}

/* The partials (m, l, acc) of chunk s of (b, i, h) for every query head h of kv head kvh's GQA
 * group, into the workspace: the K / V tiles are loaded once per group. Each head's partial is
 * computed exactly as if alone (its own running max, sums in key order), so the grouping does not
 * change any result. */
template <typename T>
void partial_item(const T *q, const T *k_cache, const T *v_cache, const int32_t *lengths,
                  const Shape &sh, int64_t b, int64_t i, int64_t kvh, int32_t s, float *ws,
                  int64_t n_partials, float *buf) {
  const int64_t D = sh.d, G = sh.group(), h0 = kvh * G;
  int64_t lo, hi, begin, end;
  decode_key_range(lengths[b], i, sh.window, &lo, &hi);
  decode_chunk(lo, hi, sh.split_k, s, &begin, &end);
  float *kt = buf, *vf = kt + D * kTile, *sc = vf + kTile * D, *qf = sc + kTile;
  float *mx = qf + G * D, *sum = mx + G; /* per head of the group */
  for (int64_t g = 0; g < G; g++) {
    const T *qrow = q + sh.q_row(b, i, h0 + g);
    for (int64_t d = 0; d < D; d++) qf[g * D + d] = to_f32(qrow[d]);
    float *acc = ws + decode_ws_acc_offset(
                          decode_partial_index(b, i, h0 + g, s, sh.t, sh.hq, sh.split_k), D);
    for (int64_t d = 0; d < D; d++) acc[d] = 0.0f;
    mx[g] = -INFINITY;
    sum[g] = 0.0f;
  }
  for (int64_t j0 = begin; j0 < end; j0 += kTile) {
    const int nc = (int)(end - j0 < kTile ? end - j0 : kTile);
    for (int c = 0; c < nc; c++) {
      const T *krow = k_cache + sh.cache_row(b, j0 + c, kvh);
      const T *vrow = v_cache + sh.cache_row(b, j0 + c, kvh);
      for (int64_t d = 0; d < D; d++) {
        kt[d * kTile + c] = to_f32(krow[d]);
        vf[c * D + d] = to_f32(vrow[d]);
      }
    }
    for (int64_t d = 0; d < D; d++)
      for (int c = nc; c < kTile; c++) kt[d * kTile + c] = 0.0f;
    for (int64_t g = 0; g < G; g++) {
      float *acc = ws + decode_ws_acc_offset(
                            decode_partial_index(b, i, h0 + g, s, sh.t, sh.hq, sh.split_k), D);
      tile_scores(qf + g * D, kt, sc, D);
      float tile_max = -INFINITY;
      for (int c = 0; c < nc; c++) {
        sc[c] = sh.scale * sc[c];
        tile_max = fmaxf(tile_max, sc[c]);
      }
      const float m = fmaxf(mx[g], tile_max);
      const float alpha = softmax_rescale(mx[g], m);
      sum[g] *= alpha;
      mx[g] = m;
      if (alpha != 1.0f) scale_row(acc, alpha, D);
      for (int c = 0; c < nc; c++) {
        const float e = softmax_exp(sc[c], m);
        sum[g] += e;
        if (e != 0.0f) axpy_row(acc, e, vf + c * D, D);
      }
    }
  }
  for (int64_t g = 0; g < G; g++) {
    const int64_t p = decode_partial_index(b, i, h0 + g, s, sh.t, sh.hq, sh.split_k);
    ws[decode_ws_m_offset(p, n_partials, D)] = mx[g];
    ws[decode_ws_l_offset(p, n_partials, D)] = sum[g];
  }
}

/* Merges the splits of (b, i, h) into out (rounded once). */
template <typename T>
void merge_item(const float *ws, int64_t n_partials, T *out, const Shape &sh, int64_t b,
                int64_t i, int64_t h) {
  const int64_t D = sh.d;
  const int64_t p0 = decode_partial_index(b, i, h, 0, sh.t, sh.hq, sh.split_k);
  const float *m = ws + decode_ws_m_offset(p0, n_partials, D);
  const float *l = ws + decode_ws_l_offset(p0, n_partials, D);
  const float *acc = ws + decode_ws_acc_offset(p0, D);
  const float gmax = decode_merge_max(m, 1, sh.split_k);
  const float den = decode_merge_denominator(m, l, 1, sh.split_k, gmax);
  T *orow = out + sh.q_row(b, i, h);
  for (int64_t d = 0; d < D; d++)
    orow[d] = from_f32<T>(decode_merge_value(m, 1, acc + d, D, sh.split_k, gmax, den));
}

template <typename T>
void decode(const T *q, const T *k_new, const T *v_new, T *k_cache, T *v_cache,
            const int32_t *lengths, T *out, float *ws, const Shape &sh, const Scratch &scratch) {
  append(k_new, v_new, k_cache, v_cache, lengths, sh);
  const int64_t rows = sh.batch * sh.t * sh.hq;
  const int64_t n_partials = rows * sh.split_k, items = sh.batch * sh.t * sh.hkv * sh.split_k;
#pragma omp parallel for schedule(dynamic, 1) if (items > 1)
  for (int64_t item = 0; item < items; item++) {
    const int32_t s = (int32_t)(item % sh.split_k);
    const int64_t r = item / sh.split_k, kvh = r % sh.hkv, bi = r / sh.hkv;
    partial_item(q, k_cache, v_cache, lengths, sh, bi / sh.t, bi % sh.t, kvh, s, ws, n_partials,
                 scratch.mine());
  }
#pragma omp parallel for schedule(static) if (rows > 1 && rows * sh.d * sh.split_k >= kChunk)
  for (int64_t r = 0; r < rows; r++) {
    const int64_t h = r % sh.hq, bi = r / sh.hq;
    merge_item(ws, n_partials, out, sh, bi / sh.t, bi % sh.t, h);
  }
}

}  // namespace

extern "C" {

int32_t moe4j_cpu_attention_decode_workspace_bytes(int64_t batch, int64_t new_tokens,
                                                   int64_t q_heads, int64_t head_dim,
                                                   int32_t split_k, int64_t *out_bytes) {
  ArgCheck chk("moe4j_cpu_attention_decode_workspace_bytes");
  check_attention_decode_workspace_bytes(chk, batch, new_tokens, q_heads, head_dim, split_k,
                                         out_bytes);
  if (chk.failed()) return chk.status();
  *out_bytes = attention_decode_workspace_bytes(batch, new_tokens, q_heads, head_dim, split_k);
  return MOE4J_OK;
}

int32_t moe4j_cpu_attention_decode(int32_t dtype, const void *q, const void *k_new,
                                   const void *v_new, void *k_cache, void *v_cache,
                                   const int32_t *lengths, void *out, int64_t batch,
                                   int64_t new_tokens, int64_t max_seq, int64_t q_heads,
                                   int64_t kv_heads, int64_t head_dim, int64_t window,
                                   float scale, int32_t split_k, void *workspace,
                                   int64_t workspace_bytes) {
  const char *fn = "moe4j_cpu_attention_decode";
  ArgCheck chk(fn);
  check_attention_decode(chk, dtype, q, k_new, v_new, k_cache, v_cache, lengths, out, batch,
                         new_tokens, max_seq, q_heads, kv_heads, head_dim, window, scale, split_k,
                         workspace, workspace_bytes);
  if (chk.failed()) return chk.status();
  /* CPU only (host memory): every new token must fit behind the cached ones. */
  const int64_t max_len = max_seq - new_tokens;
  for (int64_t b = 0; b < batch; b++) {
    chk.require(lengths[b] >= 0 && lengths[b] <= max_len,
                "lengths[%lld] = %d is out of range [0, %lld] (max_seq %lld - new_tokens %lld)",
                (long long)b, (int)lengths[b], (long long)max_len, (long long)max_seq,
                (long long)new_tokens);
    if (chk.failed()) return chk.status();
  }
  if (batch * new_tokens == 0) return MOE4J_OK;
  Scratch scratch;
  if (!scratch.alloc(scratch_floats(head_dim, q_heads / kv_heads)))
    return fail(MOE4J_ERR_OUT_OF_MEMORY, "%s: cannot allocate the per-thread tile buffers", fn);
  const Shape sh{batch, new_tokens, max_seq, q_heads, kv_heads, head_dim, window, scale, split_k};
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    decode((const T *)q, (const T *)k_new, (const T *)v_new, (T *)k_cache, (T *)v_cache, lengths,
           (T *)out, (float *)workspace, sh, scratch);
  });
  return MOE4J_OK;
}

}  // extern "C"
