/*
 * KV-cache decode (flash-decoding): moe4j.h "KV-cache decode" — append the new keys/values to the
 * caches, then attend the new queries to the cache, the context cut into split_k chunks merged with
 * their log-sum-exps. CPU twin: native/src/cpu_decode.cpp (moe4j_cpu_attention_decode); index
 * math and merge: common/decode_math.h; argument rules: native/src/decode_args.h.
 *
 * Layouts: q, out [B, N, Hq, D]; k_new, v_new [B, N, Hkv, D]; k_cache, v_cache [B, max_seq, Hkv, D];
 * lengths I32 [B] on the device (read, never advanced). GQA: query head h reads kv head
 * h / (Hq / Hkv). New query i of sequence b (L = lengths[b]) sees key positions p with
 * p <= L + i (every cached key, the new keys <= i) and, when window > 0, p > L + i - window.
 *
 * Kernels (one stream, in order):
 *   1. decode_append_kernel: k_cache[b, L + i] = k_new[b, i], same for v (grid-stride, one element
 *      a thread; L read on the device).
 *   2. decode_split_kernel: one block per (b * N + i, kv head x head group, split). The visible
 *      keys [lo, hi) of the query are cut into split_k chunks (decode_math.h decode_chunk); a block
 *      handles chunk `split` for up to kGroup query heads of the GQA group at once, so each cached
 *      K/V row is read once per group (not once per query head). Its 4 warps stride over the
 *      chunk's keys; a lane holds NJ = ceil(D / 32) elements of q (all heads, pre-scaled), of the
 *      key and value rows and of the accumulators: when D == 32 NJ (32/64/128/256) and the caches
 *      are aligned, elements lane * NJ .. + NJ - 1 read with one vector load (16 bytes for bf16
 *      D 256 and f32 D >= 128, 8 bytes for bf16 D 128), else elements lane + 32 j (element loads,
 *      coalesced: one 64/128-byte transaction per warp per j); scores are warp reductions (every lane gets the sum), then each
 *      head updates an online softmax (m, l, acc). The 4 warps' partials are merged in warp order
 *      through shared memory, giving the chunk partial (m, l, acc[D]) of decode_math.h.
 *      split_k == 1: out = acc / l directly (exactly the one-chunk merge); split_k > 1: the partial
 *      goes to the workspace (decode_math.h layout: acc at p * D, m at N * D + p, l at
 *      N * D + N + p, p = decode_partial_index).
 *   3. decode_merge_kernel (split_k > 1): one warp per (b, i, q head) merges its split_k partials
 *      in ascending split (decode_merge_max / _denominator / _value) and writes out, rounded once.
 *
 * Why: decode is memory-bound (one query row per head against a long cache); reading each K/V
 * row once per GQA group and splitting long contexts over blocks keeps HBM busy when B * Hkv is
 * small. Deterministic: no atomics, fixed reduction orders (keys within a warp in order, warps in
 * order, splits in order), so a fixed split_k is bitwise reproducible; different split_k differ by
 * f32 rounding only. The summation order inside a chunk differs from the CPU twin's (4 interleaved
 * warp streams), so the twins agree to f32 rounding, not bitwise.
 *
 * Limits: head_dim even in [2, 256] (NJ <= 8), split_k <= 1024, B * N < 2^31, Hkv * ceil(Hq / Hkv
 * / 8) <= 65535 (decode_args.h rules plus the grid); the workspace is required by the shared rules
 * even for split_k == 1 (that path does not touch it). lengths are on the device and cannot be
 * validated before launch: a sequence with L < 0 or L + N > max_seq is not appended to and gets NaN
 * outputs (the CPU twin reports an error instead). A query sees at least its own key, so l > 0.
 * Reference kernel (moe4j_cuda_use_reference_kernels): one thread per (b, i, q head), a plain
 * two-pass softmax over the visible keys (max, then exp/sum/acc; acc[256] in local memory), split_k
 * and the workspace ignored.
 *
 * Not yet done: measuring against HBM bandwidth (compiled, not yet run on a GPU). Each warp has one
 * key row in flight and NJ = 8 needs ~190 registers (2 blocks, 8 warps an SM), which probably limits
 * the bytes in flight below what 80% of HBM needs; the next steps are two or more keys a warp per
 * iteration and q in shared memory instead of registers.
 */
#include <math.h>
#include <string.h>

#include "cuda_check.cuh"
#include "decode_args.h"
#include "decode_math.h"
#include "numerics.h"
#include "softmax_math.h"

namespace moe4j {

namespace {

constexpr int kDecodeMaxHeadDim = 256;
constexpr int kDecodeWarps = 4;
constexpr int kDecodeThreads = kDecodeWarps * 32;
constexpr int kGroup = 8; /* query heads of one GQA group handled by one block */
constexpr int kRefThreads = 128;
constexpr int kMergeThreads = 128;
constexpr int kAppendThreads = 256;

/* ---- kernels --------------------------------------------------------------------------- */

template <typename T>
__global__ void __launch_bounds__(kAppendThreads)
decode_append_kernel(const T *k_new, const T *v_new, T *k_cache, T *v_cache,
                     const int32_t *lengths, int64_t batch, int64_t new_tokens, int64_t max_seq,
                     int64_t row /* Hkv * D */) {
  const int64_t per_seq = new_tokens * row, n = batch * per_seq;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = e / per_seq, r = e - b * per_seq;
    const int64_t i = r / row, c = r - i * row;
    const int64_t L = lengths[b];
    if (L < 0 || L + new_tokens > max_seq) continue; /* invalid length: not appended */
    const int64_t dst = (b * max_seq + L + i) * row + c;
    k_cache[dst] = k_new[e];
    v_cache[dst] = v_new[e];
  }
}

/* Element of lane `lane`'s j-th register: contiguous (lane * NJ + j, one vector load a lane) when
 * VEC (head_dim == 32 * NJ and the caches aligned to the vector), else strided (lane + 32 j). */
template <int NJ, bool VEC>
__device__ __forceinline__ int lane_elem(int lane, int j) {
  return VEC ? lane * NJ + j : lane + 32 * j;
}

/* NJ contiguous elements at src (aligned to min(16, NJ * sizeof(T)) bytes) as f32: 16-byte loads
 * (uint4) when NJ * sizeof(T) >= 16, else one 8/4/2-byte load. */
template <typename T, int NJ>
__device__ __forceinline__ void load_vec(const T *src, float (&dst)[NJ]) {
  constexpr int kBytes = NJ * (int)sizeof(T);
  T e[NJ];
  if constexpr (kBytes >= 16) {
    uint4 raw[kBytes / 16];
#pragma unroll
    for (int v = 0; v < kBytes / 16; v++) raw[v] = reinterpret_cast<const uint4 *>(src)[v];
    memcpy(e, raw, kBytes);
  } else if constexpr (kBytes == 8) {
    const uint2 raw = *reinterpret_cast<const uint2 *>(src);
    memcpy(e, &raw, kBytes);
  } else if constexpr (kBytes == 4) {
    const uint32_t raw = *reinterpret_cast<const uint32_t *>(src);
    memcpy(e, &raw, kBytes);
  } else {
    const uint16_t raw = *reinterpret_cast<const uint16_t *>(src);
    memcpy(e, &raw, kBytes);
  }
#pragma unroll
  for (int j = 0; j < NJ; j++) dst[j] = to_f32(e[j]);
}

/* grid: x = B * N (query rows), y = Hkv * groups_per_kv, z = split_k. */
template <typename T, int NJ, bool VEC>
__global__ void __launch_bounds__(kDecodeThreads)
decode_split_kernel(const T *q, const T *k_cache, const T *v_cache, const int32_t *lengths,
                    T *out, float *ws, int64_t new_tokens, int64_t max_seq, int q_heads,
                    int kv_heads, int head_dim, int groups_per_kv, int64_t window, float scale) {
  /* per-warp partials for the block merge: m, l [warps][kGroup], acc [warps][kGroup][D] */
  __shared__ float s_m[kDecodeWarps][kGroup], s_l[kDecodeWarps][kGroup];
  __shared__ float s_acc[kDecodeWarps][kGroup][NJ * 32];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row = blockIdx.x; /* b * N + i */
  const int64_t b = row / new_tokens, i = row - b * new_tokens;
  const int kvh = blockIdx.y / groups_per_kv, grp = blockIdx.y - kvh * groups_per_kv;
  const int split = blockIdx.z, split_k = gridDim.z;
  const int heads_per_kv = q_heads / kv_heads;
  const int h0 = kvh * heads_per_kv + grp * kGroup; /* first query head of this block */
  int gc = heads_per_kv - grp * kGroup;
  if (gc > kGroup) gc = kGroup;
  const int D = head_dim;

  const int64_t L = lengths[b];
  const bool valid = L >= 0 && L + new_tokens <= max_seq;
  int64_t lo = 0, hi = 0; /* this split's keys: chunk `split` of the visible range */
  if (valid) {
    int64_t vlo, vhi;
    decode_key_range(L, i, window, &vlo, &vhi);
    decode_chunk(vlo, vhi, split_k, split, &lo, &hi);
  }

  /* q of the block's heads, pre-scaled (the score is scale * q.k; rounding of q * scale is the
   * only difference from scaling the dot product, well inside the tolerance). */
  float qr[kGroup][NJ];
  const T *qrow = q + (row * q_heads + h0) * (int64_t)D;
#pragma unroll
  for (int g = 0; g < kGroup; g++)
#pragma unroll
    for (int j = 0; j < NJ; j++) {
      const int d = lane_elem<NJ, VEC>(lane, j);
      qr[g][j] = (g < gc && d < D) ? to_f32(qrow[(int64_t)g * D + d]) * scale : 0.0f;
    }

  float m[kGroup], l[kGroup], acc[kGroup][NJ];
#pragma unroll
  for (int g = 0; g < kGroup; g++) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int j = 0; j < NJ; j++) acc[g][j] = 0.0f;
  }

  const int64_t kv_stride = (int64_t)kv_heads * D; /* between positions */
  const T *kb = k_cache + (b * max_seq * kv_heads + kvh) * (int64_t)D;
  const T *vb = v_cache + (b * max_seq * kv_heads + kvh) * (int64_t)D;
  for (int64_t p = lo + warp; p < hi; p += kDecodeWarps) {
    float kr[NJ], vr[NJ];
    if constexpr (VEC) { /* D == 32 * NJ: every element in range */
      load_vec<T, NJ>(kb + p * kv_stride + lane * NJ, kr);
      load_vec<T, NJ>(vb + p * kv_stride + lane * NJ, vr);
    } else {
#pragma unroll
      for (int j = 0; j < NJ; j++) {
        const int d = lane + 32 * j;
        kr[j] = d < D ? to_f32(kb[p * kv_stride + d]) : 0.0f;
        vr[j] = d < D ? to_f32(vb[p * kv_stride + d]) : 0.0f;
      }
    }
#pragma unroll
    for (int g = 0; g < kGroup; g++) {
      if (g < gc) { /* uniform over the block */
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < NJ; j++) s = fmaf(qr[g][j], kr[j], s);
        s = warp_sum(s);
        const float mn = fmaxf(m[g], s);
        const float c = softmax_rescale(m[g], mn), pexp = softmax_exp(s, mn);
        m[g] = mn;
        l[g] = l[g] * c + pexp;
#pragma unroll
        for (int j = 0; j < NJ; j++) acc[g][j] = fmaf(pexp, vr[j], acc[g][j] * c);
      }
    }
  }

  /* merge the warps in warp order */
#pragma unroll
  for (int g = 0; g < kGroup; g++) {
    if (lane == 0) {
      s_m[warp][g] = m[g];
      s_l[warp][g] = l[g];
    }
#pragma unroll
    for (int j = 0; j < NJ; j++) s_acc[warp][g][lane_elem<NJ, VEC>(lane, j)] = acc[g][j];
  }
  __syncthreads();
  const int64_t n_partials = gridDim.x * (int64_t)q_heads * split_k;
  for (int e = threadIdx.x; e < gc * D; e += kDecodeThreads) {
    const int g = e / D, d = e - g * D;
    float M = -INFINITY;
    for (int w = 0; w < kDecodeWarps; w++) M = fmaxf(M, s_m[w][g]);
    float lsum = 0.0f, a = 0.0f;
    for (int w = 0; w < kDecodeWarps; w++) {
      const float c = softmax_rescale(s_m[w][g], M);
      lsum += s_l[w][g] * c;
      a += s_acc[w][g][d] * c;
    }
    const int64_t orow = row * q_heads + h0 + g; /* (b, i, q head) */
    if (!valid) { /* a NaN partial with weight 1: the merge yields NaN */
      a = NAN;
      M = 0.0f;
      lsum = 1.0f;
    }
    if (split_k == 1) { /* the one-chunk merge is exactly acc / l (decode_math.h) */
      out[orow * D + d] = from_f32<T>(lsum > 0.0f ? a / lsum : 0.0f);
    } else {
      const int64_t p = decode_partial_index(b, i, h0 + g, split, new_tokens, q_heads, split_k);
      ws[decode_ws_acc_offset(p, D) + d] = a;
      if (d == 0) {
        ws[decode_ws_m_offset(p, n_partials, D)] = M;
        ws[decode_ws_l_offset(p, n_partials, D)] = lsum;
      }
    }
  }
}

/* One warp per (b, i, q head) row r; merges its split_k partials (partials r * split_k + s) in
 * ascending s by the decode_math.h rule. */
template <typename T>
__global__ void __launch_bounds__(kMergeThreads)
decode_merge_kernel(const float *ws, T *out, int64_t rows, int head_dim, int split_k) {
  const int lane = threadIdx.x & 31;
  const int64_t r = blockIdx.x * (int64_t)(kMergeThreads / 32) + (threadIdx.x >> 5);
  if (r >= rows) return;
  const int64_t n_partials = rows * split_k, p0 = r * split_k;
  const float *m = ws + decode_ws_m_offset(p0, n_partials, head_dim);
  const float *l = ws + decode_ws_l_offset(p0, n_partials, head_dim);
  const float M = decode_merge_max(m, 1, split_k);
  const float den = decode_merge_denominator(m, l, 1, split_k, M);
  const float *acc = ws + decode_ws_acc_offset(p0, head_dim);
  for (int d = lane; d < head_dim; d += 32)
    out[r * head_dim + d] =
        from_f32<T>(decode_merge_value(m, 1, acc + d, head_dim, split_k, M, den));
}

/* Reference: one thread per (b, i, q head); plain two-pass softmax over the visible keys. */
template <typename T>
__global__ void __launch_bounds__(kRefThreads)
decode_ref_kernel(const T *q, const T *k_cache, const T *v_cache, const int32_t *lengths, T *out,
                  int64_t batch, int64_t new_tokens, int64_t max_seq, int q_heads, int kv_heads,
                  int head_dim, int64_t window, float scale) {
  const int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= batch * new_tokens * q_heads) return;
  const int64_t bi = r / q_heads, h = r - bi * q_heads;
  const int64_t b = bi / new_tokens, i = bi - b * new_tokens;
  const int kvh = (int)(h / (q_heads / kv_heads));
  const int D = head_dim;
  const int64_t L = lengths[b];
  T *o = out + r * D;
  if (L < 0 || L + new_tokens > max_seq) {
    for (int d = 0; d < D; d++) o[d] = from_f32<T>(NAN);
    return;
  }
  int64_t lo, hi;
  decode_key_range(L, i, window, &lo, &hi);
  const T *qr = q + r * D;
  const int64_t stride = (int64_t)kv_heads * D;
  const T *kb = k_cache + (b * max_seq * kv_heads + kvh) * (int64_t)D;
  const T *vb = v_cache + (b * max_seq * kv_heads + kvh) * (int64_t)D;
  float mx = -INFINITY;
  for (int64_t p = lo; p < hi; p++) {
    float s = 0.0f;
    for (int d = 0; d < D; d++) s += to_f32(qr[d]) * to_f32(kb[p * stride + d]);
    mx = fmaxf(mx, s * scale);
  }
  float acc[kDecodeMaxHeadDim];
  for (int d = 0; d < D; d++) acc[d] = 0.0f;
  float sum = 0.0f;
  for (int64_t p = lo; p < hi; p++) {
    float s = 0.0f;
    for (int d = 0; d < D; d++) s += to_f32(qr[d]) * to_f32(kb[p * stride + d]);
    const float e = softmax_exp(s * scale, mx);
    sum += e;
    for (int d = 0; d < D; d++) acc[d] += e * to_f32(vb[p * stride + d]);
  }
  for (int d = 0; d < D; d++) o[d] = from_f32<T>(acc[d] / sum);
}

template <typename T, int NJ>
int32_t launch_split(const char *fn, const T *q, const T *kc, const T *vc, const int32_t *lengths,
                     T *out, float *ws, int64_t batch, int64_t new_tokens, int64_t max_seq,
                     int q_heads, int kv_heads, int head_dim, int64_t window, float scale,
                     int split_k, cudaStream_t st) {
  const int heads_per_kv = q_heads / kv_heads;
  const int groups = (heads_per_kv + kGroup - 1) / kGroup;
  const dim3 grid((unsigned)(batch * new_tokens), (unsigned)(kv_heads * groups),
                  (unsigned)split_k);
  /* vector path: whole rows of 32 * NJ elements, caches aligned to the lane's vector */
  const uintptr_t unit = NJ * sizeof(T) < 16 ? NJ * sizeof(T) : 16;
  const bool vec = head_dim == 32 * NJ && ((uintptr_t)kc % unit) == 0 && ((uintptr_t)vc % unit) == 0;
  if (vec)
    decode_split_kernel<T, NJ, true><<<grid, kDecodeThreads, 0, st>>>(
        q, kc, vc, lengths, out, ws, new_tokens, max_seq, q_heads, kv_heads, head_dim, groups,
        window, scale);
  else
    decode_split_kernel<T, NJ, false><<<grid, kDecodeThreads, 0, st>>>(
        q, kc, vc, lengths, out, ws, new_tokens, max_seq, q_heads, kv_heads, head_dim, groups,
        window, scale);
  return check_launch(fn, "decode_split_kernel");
}

template <typename T>
int32_t decode_launch(const char *fn, const T *q, const T *k_new, const T *v_new, T *kc, T *vc,
                      const int32_t *lengths, T *out, int64_t batch, int64_t new_tokens,
                      int64_t max_seq, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                      int64_t window, float scale, int32_t split_k, float *ws, cudaStream_t st) {
  const int64_t row = kv_heads * head_dim;
  decode_append_kernel<T><<<blocks_for(batch * new_tokens * row, kAppendThreads), kAppendThreads,
                            0, st>>>(k_new, v_new, kc, vc, lengths, batch, new_tokens, max_seq,
                                     row);
  int32_t s = check_launch(fn, "decode_append_kernel");
  if (s != MOE4J_OK) return s;
  const int64_t rows = batch * new_tokens * q_heads;
  if (reference_kernels_enabled()) {
    decode_ref_kernel<T><<<blocks_for(rows, kRefThreads, INT32_MAX), kRefThreads, 0, st>>>(
        q, kc, vc, lengths, out, batch, new_tokens, max_seq, (int)q_heads, (int)kv_heads,
        (int)head_dim, window, scale);
    return check_launch(fn, "decode_ref_kernel");
  }
  const int nj = (int)((head_dim + 31) / 32);
  const int qh = (int)q_heads, kh = (int)kv_heads, hd = (int)head_dim;
  if (nj <= 1)
    s = launch_split<T, 1>(fn, q, kc, vc, lengths, out, ws, batch, new_tokens, max_seq, qh, kh,
                           hd, window, scale, split_k, st);
  else if (nj <= 2)
    s = launch_split<T, 2>(fn, q, kc, vc, lengths, out, ws, batch, new_tokens, max_seq, qh, kh,
                           hd, window, scale, split_k, st);
  else if (nj <= 4)
    s = launch_split<T, 4>(fn, q, kc, vc, lengths, out, ws, batch, new_tokens, max_seq, qh, kh,
                           hd, window, scale, split_k, st);
  else
    s = launch_split<T, 8>(fn, q, kc, vc, lengths, out, ws, batch, new_tokens, max_seq, qh, kh,
                           hd, window, scale, split_k, st);
  if (s != MOE4J_OK || split_k == 1) return s;
  decode_merge_kernel<T><<<blocks_for(rows, kMergeThreads / 32, INT32_MAX), kMergeThreads, 0,
                           st>>>(ws, out, rows, hd, split_k);
  return check_launch(fn, "decode_merge_kernel");
}

}  // namespace

}  // namespace moe4j

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_attention_decode_workspace_bytes(int64_t batch, int64_t new_tokens,
                                                    int64_t q_heads, int64_t head_dim,
                                                    int32_t split_k, int64_t *out_bytes) {
  const char *fn = "moe4j_cuda_attention_decode_workspace_bytes";
  ArgCheck chk(fn);
  check_attention_decode_workspace_bytes(chk, batch, new_tokens, q_heads, head_dim, split_k,
                                         out_bytes);
  if (chk.failed()) return chk.status();
  *out_bytes = attention_decode_workspace_bytes(batch, new_tokens, q_heads, head_dim, split_k);
  return MOE4J_OK;
}

int32_t moe4j_cuda_attention_decode(int32_t dtype, const void *q, const void *k_new,
                                    const void *v_new, void *k_cache, void *v_cache,
                                    const int32_t *lengths, void *out, int64_t batch,
                                    int64_t new_tokens, int64_t max_seq, int64_t q_heads,
                                    int64_t kv_heads, int64_t head_dim, int64_t window,
                                    float scale, int32_t split_k, void *workspace,
                                    int64_t workspace_bytes, void *stream) {
  const char *fn = "moe4j_cuda_attention_decode";
  ArgCheck chk(fn);
  check_attention_decode(chk, dtype, q, k_new, v_new, k_cache, v_cache, lengths, out, batch,
                         new_tokens, max_seq, q_heads, kv_heads, head_dim, window, scale, split_k,
                         workspace, workspace_bytes);
  if (chk.failed()) return chk.status();
  if (batch == 0 || new_tokens == 0) return MOE4J_OK;
  chk.require(batch * new_tokens <= INT32_MAX && kv_heads * ((q_heads / kv_heads + kGroup - 1) /
                                                             kGroup) <= 65535 && split_k <= 65535,
              "grid too large: batch * new_tokens %lld, kv head groups %lld, split_k %d",
              (long long)(batch * new_tokens),
              (long long)(kv_heads * ((q_heads / kv_heads + kGroup - 1) / kGroup)), (int)split_k);
  if (chk.failed()) return chk.status();
  cudaStream_t st = as_stream(stream);
  if (dtype == MOE4J_DTYPE_BF16)
    return decode_launch<bf16_t>(fn, (const bf16_t *)q, (const bf16_t *)k_new,
                                 (const bf16_t *)v_new, (bf16_t *)k_cache, (bf16_t *)v_cache,
                                 lengths, (bf16_t *)out, batch, new_tokens, max_seq, q_heads,
                                 kv_heads, head_dim, window, scale, split_k, (float *)workspace,
                                 st);
  return decode_launch<float>(fn, (const float *)q, (const float *)k_new, (const float *)v_new,
                              (float *)k_cache, (float *)v_cache, lengths, (float *)out, batch,
                              new_tokens, max_seq, q_heads, kv_heads, head_dim, window, scale,
                              split_k, (float *)workspace, st);
}

}  // extern "C"
