/*
 * The device code of KV-cache decode (see kernels/decode.cu for what, layouts and why): append,
 * split (flash-decoding chunk per block), merge and reference kernels, in a header so a CPU test
 * can run the very same kernels under a warp emulator (native/tests/test_decode_emulated.cpp).
 * The includer provides the CUDA builtins: decode.cu includes cuda_check.cuh, the emulation test
 * native/tests/warp_emulator.h. Include once per translation unit (internal linkage).
 */
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "decode_math.h"
#include "hd.h"
#include "numerics.h"
#include "softmax_math.h"
#include "warp_reduce.cuh"

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
MOE4J_UNROLL
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
MOE4J_UNROLL
  for (int j = 0; j < NJ; j++) dst[j] = to_f32(e[j]);
}

/* grid: x = B * N (query rows), y = Hkv * groups_per_kv, z = split_k. */
template <typename T, int NJ, bool VEC>
__global__ void __launch_bounds__(kDecodeThreads)
decode_split_kernel(const T *q, const T *k_cache, const T *v_cache, const int32_t *lengths,
                    T *out, float *ws, int64_t new_tokens, int64_t max_seq, int q_heads,
                    int kv_heads, int head_dim, int groups_per_kv, int64_t window, float scale) {
  /* per-warp partials for the block merge: m, l [warps][kGroup], acc [warps][kGroup][D] */
  MOE4J_STATIC_SHARED float s_m[kDecodeWarps][kGroup], s_l[kDecodeWarps][kGroup];
  MOE4J_STATIC_SHARED float s_acc[kDecodeWarps][kGroup][NJ * 32];

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
MOE4J_UNROLL
  for (int g = 0; g < kGroup; g++)
MOE4J_UNROLL
    for (int j = 0; j < NJ; j++) {
      const int d = lane_elem<NJ, VEC>(lane, j);
      qr[g][j] = (g < gc && d < D) ? to_f32(qrow[(int64_t)g * D + d]) * scale : 0.0f;
    }

  float m[kGroup], l[kGroup], acc[kGroup][NJ];
MOE4J_UNROLL
  for (int g = 0; g < kGroup; g++) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
MOE4J_UNROLL
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
MOE4J_UNROLL
      for (int j = 0; j < NJ; j++) {
        const int d = lane + 32 * j;
        kr[j] = d < D ? to_f32(kb[p * kv_stride + d]) : 0.0f;
        vr[j] = d < D ? to_f32(vb[p * kv_stride + d]) : 0.0f;
      }
    }
MOE4J_UNROLL
    for (int g = 0; g < kGroup; g++) {
      if (g < gc) { /* uniform over the block */
        float s = 0.0f;
MOE4J_UNROLL
        for (int j = 0; j < NJ; j++) s = fmaf(qr[g][j], kr[j], s);
        s = warp_sum(s);
        const float mn = fmaxf(m[g], s);
        const float c = softmax_rescale(m[g], mn), pexp = softmax_exp(s, mn);
        m[g] = mn;
        l[g] = l[g] * c + pexp;
MOE4J_UNROLL
        for (int j = 0; j < NJ; j++) acc[g][j] = fmaf(pexp, vr[j], acc[g][j] * c);
      }
    }
  }

  /* merge the warps in warp order */
MOE4J_UNROLL
  for (int g = 0; g < kGroup; g++) {
    if (lane == 0) {
      s_m[warp][g] = m[g];
      s_l[warp][g] = l[g];
    }
MOE4J_UNROLL
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

}  // namespace

}  // namespace moe4j
