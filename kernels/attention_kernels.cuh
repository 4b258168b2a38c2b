/*
 * The device code of the reference attention kernels (forward, dq, dk/dv; a thread per row) (see
 * kernels/attention.cu for what, layouts and why), in a header so a CPU test can run the very same
 * kernels under a warp emulator (native/tests/test_attention_emulated.cpp). The includer provides
 * the CUDA builtins: attention.cu includes cuda_check.cuh, the emulation test
 * native/tests/warp_emulator.h.
 * Include once per translation unit (internal linkage).
 */
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "attention_args.h"
#include "attention_tiles.h"
#include "hd.h"
#include "numerics.h"
#include "softmax_math.h"

namespace moe4j {

namespace {

constexpr int kAttnRefThreads = 128;
constexpr int kMaxD = (int)kAttnMaxHeadDim;

/* Element (token, h, 0) of a [tokens, H, D] tensor (a uniform batch's token b * S + i). */
__device__ __forceinline__ int64_t row_offset(int64_t token, int64_t h, int64_t heads, int D) {
  return (token * heads + h) * (int64_t)D;
}

/* f32 dot product of two rows of D elements, summed in d order. */
template <typename T>
__device__ __forceinline__ float row_dot(const T *a, const T *b, int D) {
  float acc = 0.0f;
  for (int d = 0; d < D; d++) acc += to_f32(a[d]) * to_f32(b[d]);
  return acc;
}

/* Row r of a tensor with `heads` heads (r = lse index for heads = Hq): its sequence, head and
 * position in the sequence. A row in no sequence becomes position 0 of an empty sequence that
 * starts at its own token (see the file comment). */
struct RowPos {
  AttnSeq s;
  int64_t h, i;
};

__device__ __forceinline__ RowPos locate_row(int64_t r, const int32_t *cu, int64_t batch,
                                             int64_t seq, int64_t heads, int64_t q_heads) {
  const int64_t pos = r % seq, hh = r / seq;
  if (cu == nullptr)
    return RowPos{attn_sequence(nullptr, hh / heads, seq, q_heads), hh % heads, pos};
  const int64_t b = attn_find_sequence(cu, batch, seq, pos);
  if (b < 0) return RowPos{AttnSeq{pos, 0, pos}, hh, 0};
  const AttnSeq s = attn_sequence(cu, b, seq, q_heads);
  return RowPos{s, hh, pos - s.start};
}

/* ---- forward ------------------------------------------------------------------------------ */

/* thread r = the lse index of the query row. */
template <typename T>
__global__ void __launch_bounds__(kAttnRefThreads)
attention_forward_ref(const T *q, const T *k, const T *v, T *out, float *lse, const int32_t *cu,
                      int64_t batch, int64_t seq, int64_t rows, int q_heads, int kv_heads, int D,
                      bool causal, int64_t window, float scale) {
  const int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const RowPos p = locate_row(r, cu, batch, seq, q_heads, q_heads);
  const int64_t kvh = p.h / (q_heads / kv_heads), w = attn_window(window, p.s.len);
  const T *qr = q + row_offset(p.s.start + p.i, p.h, q_heads, D);
  float acc[kMaxD];
  for (int d = 0; d < D; d++) acc[d] = 0.0f;
  SoftmaxStats st = softmax_stats_empty();
  for (int64_t j = 0; j < p.s.len; j++) {
    if (!attn_allowed(p.i, j, causal, w)) continue;
    const int64_t kvo = row_offset(p.s.start + j, kvh, kv_heads, D);
    const float s = scale * row_dot(qr, k + kvo, D);
    const float m = fmaxf(st.max, s);
    const float alpha = softmax_rescale(st.max, m);
    st.sum *= alpha;
    st.max = m;
    const float pj = softmax_exp(s, m);
    st.sum += pj;
    const T *vr = v + kvo;
    for (int d = 0; d < D; d++) acc[d] = acc[d] * alpha + pj * to_f32(vr[d]);
  }
  T *orow = out + row_offset(p.s.start + p.i, p.h, q_heads, D);
  if (st.sum == 0.0f) { /* no visible key */
    for (int d = 0; d < D; d++) orow[d] = from_f32<T>(0.0f);
    lse[r] = -INFINITY;
  } else {
    for (int d = 0; d < D; d++) orow[d] = from_f32<T>(acc[d] / st.sum);
    lse[r] = softmax_lse(st);
  }
}

/* ---- backward ----------------------------------------------------------------------------- */

/* P = exp(scale * q.k - lse) of a visible (i, j); 0 for a row with no key (lse = -inf). */
__device__ __forceinline__ float recompute_p(float qk, float scale, float l) {
  return l == -INFINITY ? 0.0f : expf(scale * qk - l);
}

/* thread r = the lse index of the query row. */
template <typename T>
__global__ void __launch_bounds__(kAttnRefThreads)
attention_backward_dq_ref(const T *q, const T *k, const T *v, const T *out, const T *dout,
                          const float *lse, T *dq, const int32_t *cu, int64_t batch, int64_t seq,
                          int64_t rows, int q_heads, int kv_heads, int D, bool causal,
                          int64_t window, float scale) {
  const int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const RowPos p = locate_row(r, cu, batch, seq, q_heads, q_heads);
  const int64_t kvh = p.h / (q_heads / kv_heads), w = attn_window(window, p.s.len);
  const int64_t qo = row_offset(p.s.start + p.i, p.h, q_heads, D);
  const T *qr = q + qo, *gr = dout + qo;
  const float di = row_dot(gr, out + qo, D); /* Σ_d dO·O, d order */
  const float l = lse[r];
  float acc[kMaxD];
  for (int d = 0; d < D; d++) acc[d] = 0.0f;
  for (int64_t j = 0; j < p.s.len; j++) {
    if (!attn_allowed(p.i, j, causal, w)) continue;
    const int64_t kvo = row_offset(p.s.start + j, kvh, kv_heads, D);
    const T *kr = k + kvo;
    const float pj = recompute_p(row_dot(qr, kr, D), scale, l);
    const float dp = row_dot(gr, v + kvo, D);
    const float ds = pj * (dp - di);
    for (int d = 0; d < D; d++) acc[d] += ds * to_f32(kr[d]);
  }
  T *o = dq + qo;
  for (int d = 0; d < D; d++) o[d] = from_f32<T>(acc[d] * scale);
}

/* thread r = key row: uniform (b * Hkv + kvh) * S + j, varlen kvh * T + t. */
template <typename T>
__global__ void __launch_bounds__(kAttnRefThreads)
attention_backward_dkv_ref(const T *q, const T *k, const T *v, const T *out, const T *dout,
                           const float *lse, T *dk, T *dv, const int32_t *cu, int64_t batch,
                           int64_t seq, int64_t rows, int q_heads, int kv_heads, int D,
                           bool causal, int64_t window, float scale) {
  const int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const RowPos p = locate_row(r, cu, batch, seq, kv_heads, q_heads);
  const int64_t kvh = p.h, j = p.i, w = attn_window(window, p.s.len);
  const int64_t group = q_heads / kv_heads;
  const int64_t kvo = row_offset(p.s.start + j, kvh, kv_heads, D);
  const T *kr = k + kvo, *vr = v + kvo;
  float dka[kMaxD], dva[kMaxD];
  for (int d = 0; d < D; d++) dka[d] = dva[d] = 0.0f;
  for (int64_t g = 0; g < group; g++) {
    const int64_t h = kvh * group + g;
    const float *lse_h = lse + p.s.lse_base + h * seq;
    for (int64_t i = 0; i < p.s.len; i++) {
      if (!attn_allowed(i, j, causal, w)) continue;
      const int64_t qo = row_offset(p.s.start + i, h, q_heads, D);
      const T *qr = q + qo, *gr = dout + qo;
      const float di = row_dot(gr, out + qo, D); /* recomputed inline, same order as dq_ref */
      const float pi = recompute_p(row_dot(qr, kr, D), scale, lse_h[i]);
      const float dp = row_dot(gr, vr, D);
      const float ds = pi * (dp - di);
      for (int d = 0; d < D; d++) {
        dva[d] += pi * to_f32(gr[d]);
        dka[d] += ds * to_f32(qr[d]);
      }
    }
  }
  T *ko = dk + kvo, *vo = dv + kvo;
  for (int d = 0; d < D; d++) {
    ko[d] = from_f32<T>(dka[d] * scale);
    vo[d] = from_f32<T>(dva[d]);
  }
}

}  // namespace

}  // namespace moe4j
