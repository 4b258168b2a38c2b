/*
 * CPU twin of KV-cache decode (flash-decoding), following the chunking, workspace layout and merge
 * rule of kernels/common/decode_math.h that the CUDA kernel shares.
 *
 * 1. Append: the new keys / values of (b, t) are copied byte for byte into the caches at position
 *    lengths[b] + t (OpenMP over the rows). Nothing else in the caches is written.
 * 2. Partials: one work item per (b, new token i, kv head, split s), OpenMP over the items; the
 *    item computes the partial of every query head h of the kv head's GQA group (each K / V tile
 *    is read once for the group, each head's partial computed as if alone). The query rows are
 *    widened to f32 once; the keys of chunk s of [lo, hi) (decode_key_range, decode_chunk) are
 *    visited in ascending tiles of kTile keys, read in place from the cache for f32 (bf16 rows
 *    are widened into a tile buffer): scores x_c = scale * q · k_c with the dot product in 16
 *    lanes (lane l sums d = l, l + 16, ... in order, then a fixed halving tree over the lanes),
 *    the running max is raised to the tile max (rescaling l and acc once), then per key in
 *    ascending order p = exp(x - m), l += p, acc += p * v. m, l and acc go to the workspace
 *    slots of the partial. The next tile's rows are prefetched: consecutive keys of one kv head
 *    are Hkv * D elements apart (a new 4 KiB page per key at 8 heads of 128 f32), beyond the
 *    hardware prefetchers' reach.
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

constexpr int kTile = 32; /* keys per tile */
constexpr int kLanes = 16; /* partial sums of a dot product */

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

/* key tile, value tile (bf16 widened), scores, then per head of a GQA group: q row, max, sum. */
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

/* s[c] = scale * q · k_c for the nc rows k_c = k + c * ldk: per row 16 lane sums (lane l adds
 * d = l, l + 16, ... in order), then lanes l += l + 8, l + 4, l + 2, l + 1. Each lane is its own
 * chain, so every SIMD clone rounds alike. */
MOE4J_SIMD_CLONES void tile_scores(const float *__restrict__ q, const float *__restrict__ k,
                                   int64_t ldk, int nc, int64_t D, float scale,
                                   float *__restrict__ s) {
  for (int c = 0; c < nc; c++) {
    const float *kr = k + c * ldk;
    float lane[kLanes] = {};
    int64_t d0 = 0;
    for (; d0 + kLanes <= D; d0 += kLanes)
      for (int l = 0; l < kLanes; l++) lane[l] += q[d0 + l] * kr[d0 + l];
    for (int64_t d = d0; d < D; d++) lane[d - d0] += q[d] * kr[d];
    for (int w = kLanes / 2; w >= 1; w /= 2)
      for (int l = 0; l < w; l++) lane[l] += lane[l + w];
    s[c] = scale * lane[0];
  }
}

/* acc[:] = acc[:] * alpha (alpha != 1). */
MOE4J_SIMD_CLONES void scale_row(float *__restrict__ acc, float alpha, int64_t D) {
  for (int64_t d = 0; d < D; d++) acc[d] *= alpha;
}

/* acc[:] += p[c] * v_c[:] for c ascending (v_c = v + c * ldv; p[c] == 0 skipped). */
MOE4J_SIMD_CLONES void tile_accumulate(float *__restrict__ acc, const float *__restrict__ p,
                                       const float *__restrict__ v, int64_t ldv, int nc,
                                       int64_t D) {
  for (int c = 0; c < nc; c++) {
    if (p[c] == 0.0f) continue;
    const float pc = p[c], *vr = v + c * ldv;
    for (int64_t d = 0; d < D; d++) acc[d] += pc * vr[d];
  }
}

/* The K and V rows of keys [j, j + n) of kv head kvh into the caches (see the header). */
template <typename T>
void prefetch_rows(const T *k_cache, const T *v_cache, int64_t row, int64_t stride, int64_t n,
                   int64_t D) {
  for (int64_t c = 0; c < n; c++) {
    const char *k = (const char *)(k_cache + row + c * stride);
    const char *v = (const char *)(v_cache + row + c * stride);
    for (int64_t off = 0; off < D * (int64_t)sizeof(T); off += 64) {
      __builtin_prefetch(k + off, 0, 2); /* into L2 (prefetcht1): measured faster than into L1 */
      __builtin_prefetch(v + off, 0, 2);
    }
  }
}

/* A tile of nc cache rows as f32: in place for f32 (row stride ld), else widened into buf (stride D). */
inline const float *tile_rows(const float *rows, int64_t ld, int, int64_t, float *, int64_t *out_ld) {
  *out_ld = ld;
  return rows;
}
inline const float *tile_rows(const bf16_t *rows, int64_t ld, int nc, int64_t D, float *buf,
                              int64_t *out_ld) {
  for (int c = 0; c < nc; c++)
    for (int64_t d = 0; d < D; d++) buf[c * D + d] = to_f32(rows[c * ld + d]);
  *out_ld = D;
  return buf;
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
  float *kbuf = buf, *vbuf = kbuf + D * kTile, *sc = vbuf + kTile * D, *qf = sc + kTile;
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
  const int64_t stride = sh.hkv * D; /* elements from one key's row of kvh to the next key's */
  for (int64_t j0 = begin; j0 < end; j0 += kTile) {
    const int nc = (int)(end - j0 < kTile ? end - j0 : kTile);
    const int64_t row = sh.cache_row(b, j0, kvh);
    if (j0 + kTile < end)
      prefetch_rows(k_cache, v_cache, row + kTile * stride, stride,
                    end - j0 - kTile < kTile ? end - j0 - kTile : kTile, D);
    int64_t ldk, ldv;
    const float *kf = tile_rows(k_cache + row, stride, nc, D, kbuf, &ldk);
    const float *vf = tile_rows(v_cache + row, stride, nc, D, vbuf, &ldv);
    for (int64_t g = 0; g < G; g++) {
      float *acc = ws + decode_ws_acc_offset(
                            decode_partial_index(b, i, h0 + g, s, sh.t, sh.hq, sh.split_k), D);
      tile_scores(qf + g * D, kf, ldk, nc, D, sh.scale, sc);
      float tile_max = -INFINITY;
      for (int c = 0; c < nc; c++) tile_max = fmaxf(tile_max, sc[c]);
      const float m = fmaxf(mx[g], tile_max);
      const float alpha = softmax_rescale(mx[g], m);
      sum[g] *= alpha;
      mx[g] = m;
      if (alpha != 1.0f) scale_row(acc, alpha, D);
      for (int c = 0; c < nc; c++) {
        sc[c] = softmax_exp(sc[c], m);
        sum[g] += sc[c];
      }
      tile_accumulate(acc, sc, vf, ldv, nc, D);
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
