/*
 * Flash attention on CUDA (moe4j.h "Attention": moe4j_cuda_attention_forward / _backward), same
 * semantics as the CPU twin native/src/cpu_attention.cpp (moe4j_cpu_attention_forward /
 * _backward). Masks and the window rule: common/attention_tiles.h (attn_window, attn_allowed — the
 * same MOE4J_HD helpers the twin uses, so both agree on which keys a query sees); argument rules:
 * native/src/attention_args.h (check_attention_forward / _backward, shared with the twin).
 *
 * Layouts (moe4j.h): uniform (cu_seqlens == NULL) q, out, dout, dq [B, S, Hq, D]; k, v, dk, dv
 * [B, S, Hkv, D]; lse F32 [B, Hq, S]. Varlen (cu_seqlens: device I32 [B + 1], seq = T packed
 * tokens): the same tensors as [T, H, D], lse [Hq, T]. GQA: query head h reads kv head
 * h / (Hq / Hkv). Query i sees key j (positions in their sequence) iff
 * attn_allowed(i, j, causal, w) with w = attn_window(window, len) of that sequence.
 *
 * Rows: in both layouts the lse index r of (sequence, head h, position i) enumerates the query
 * rows — uniform r = (b * Hq + h) * S + i, varlen r = h * T + t — so the reference kernels run one
 * thread per r and locate_row() turns r into (sequence, h, i): directly for a uniform batch, by a
 * binary search of cu_seqlens (attn_find_sequence, O(log B) reads) for a varlen one. cu_seqlens is
 * device memory the host never reads: every offset is clamped to [0, T] and a row that lies in no
 * sequence (only for an invalid cu_seqlens) is handled as an empty sequence of its own (out = 0,
 * lse = -inf, zero gradients), so no access leaves the buffers.
 *
 * Two implementations. The fast one is FlashAttention-2 on bf16 tensor cores (mma.sync, ldmatrix,
 * cp.async double buffering; kernels/flash_attention.cu, compiled but not yet verified on a GPU):
 * forward_launch / backward_launch (the one dispatch point per direction) pick it for BF16 with
 * head_dim 32, 64 or 128 and 16-byte aligned buffers unless moe4j_cuda_use_reference_kernels(1) is
 * set. Everything else (F32, other head_dim, the reference switch) runs THE SIMPLE REFERENCE
 * KERNELS of this file (one thread per output row, plain loops, f32 accumulation, obviously
 * correct, slow), which stay to check the fast ones.
 *
 * Kernels:
 *   attention_forward_ref: one thread per query row (sequence, q head h, query i). Online softmax
 *     over the visible keys j in ascending order: s = scale * (q_i . k_j) (f32, d order); raise
 *     the running max m (rescaling the sum l and the accumulator acc[D] by exp(m_old - m_new),
 *     softmax_math.h), then p = exp(s - m), l += p, acc += p * v_j. out = acc / l (rounded once),
 *     lse = m + log(l). A row with no visible key: out = 0, lse = -inf.
 *   attention_backward_dq_ref: one thread per query row. D_i = Σ_d dO·O (f32, d order);
 *     then over the visible keys j in order: p = exp(scale * q_i.k_j − lse_i), dp = dO_i . v_j,
 *     ds = p (dp − D_i), dq += ds * k_j; dq = scale * dq, rounded once.
 *   attention_backward_dkv_ref: one thread per key row (sequence, kv head, key j). For the
 *     group's query heads h in order and the queries i that see j in order: D_i recomputed inline
 *     (the same Σ_d dO·O loop as dq_ref, so both kernels use bitwise the same D_i), p, dp, ds as
 *     above; dv += p * dO_i, dk += ds * q_i; dk = scale * dk, dv rounded once. GQA gradients are
 *     thereby summed over the group's query heads, in head order.
 *   Every output element is owned by one thread and summed in a fixed order: deterministic, no
 *   atomics, no scratch memory (the caller's workspace is for the FA2 backward's D_i), dq/dk/dv
 *   overwritten.
 *
 * Stack use: each thread keeps f32 accumulators of kAttnMaxHeadDim (256) floats in local memory —
 * forward acc[256] (1 KiB), dq acc[256] (1 KiB), dkv dk[256] + dv[256] (2 KiB). Local memory is
 * per-thread stack (L1/L2 cached), acceptable for a reference kernel; ptxas reports it as the stack
 * frame, and "0 bytes spill" is checked in the build log.
 *
 * Numerics vs the CPU twin: the same f32 formulas, but the twin sums tile-wise (its online softmax
 * rescales per 64-key tile, the kernel per key) so results agree to f32 rounding, not bitwise.
 *
 * Limits: tokens * Hq < 2^31 threads (tokens = B * S or T; checked in the launchers).
 * Device code: kernels/attention_kernels.cuh (also run on the CPU under the warp emulator by
 * native/tests/test_attention_emulated.cpp); this file holds the launchers and the C ABI.
 */
#include <math.h>
#include <stdint.h>

#include "attention_args.h"
#include "attention_kernels.cuh"
#include "cuda_check.cuh"
#include "flash_attention.h"

namespace moe4j {

namespace {

/* ---- launchers ---------------------------------------------------------------------------- */

/* One call's arguments after validation (device pointers; window as given, normalized per
 * sequence in the kernels). tokens = B * S or T. */
struct AttnCall {
  const int32_t *cu;
  int64_t batch, seq, tokens, q_heads, kv_heads, head_dim;
  bool causal;
  int64_t window;
  float scale;
  void *workspace; /* >= attention_backward_workspace_need bytes; unused by the *_ref kernels */
  cudaStream_t stream;
};

template <typename T>
int32_t forward_ref(const char *fn, const T *q, const T *k, const T *v, T *out, float *lse,
                    const AttnCall &c) {
  const int64_t rows = c.tokens * c.q_heads;
  attention_forward_ref<T><<<blocks_for(rows, kAttnRefThreads, INT32_MAX), kAttnRefThreads, 0,
                             c.stream>>>(q, k, v, out, lse, c.cu, c.batch, c.seq, rows,
                                         (int)c.q_heads, (int)c.kv_heads, (int)c.head_dim,
                                         c.causal, c.window, c.scale);
  return check_launch(fn, "attention_forward_ref");
}

template <typename T>
int32_t backward_ref(const char *fn, const T *q, const T *k, const T *v, const T *out,
                     const T *dout, const float *lse, T *dq, T *dk, T *dv, const AttnCall &c) {
  const int64_t q_rows = c.tokens * c.q_heads, kv_rows = c.tokens * c.kv_heads;
  attention_backward_dq_ref<T><<<blocks_for(q_rows, kAttnRefThreads, INT32_MAX), kAttnRefThreads,
                                 0, c.stream>>>(q, k, v, out, dout, lse, dq, c.cu, c.batch, c.seq,
                                                q_rows, (int)c.q_heads, (int)c.kv_heads,
                                                (int)c.head_dim, c.causal, c.window, c.scale);
  int32_t s = check_launch(fn, "attention_backward_dq_ref");
  if (s != MOE4J_OK) return s;
  attention_backward_dkv_ref<T><<<blocks_for(kv_rows, kAttnRefThreads, INT32_MAX),
                                  kAttnRefThreads, 0, c.stream>>>(
      q, k, v, out, dout, lse, dk, dv, c.cu, c.batch, c.seq, kv_rows, (int)c.q_heads,
      (int)c.kv_heads, (int)c.head_dim, c.causal, c.window, c.scale);
  return check_launch(fn, "attention_backward_dkv_ref");
}

/* The dispatch point of each direction: the FlashAttention-2 kernels (kernels/flash_attention.cu)
 * go first here, when reference_kernels_enabled() is off and they support the call
 * (flash_attention_fast_path: BF16, head_dim 32 / 64 / 128, 16-byte aligned buffers); everything else
 * runs the *_ref kernels above. */
template <typename T>
constexpr int32_t dtype_of() {
  return sizeof(T) == 2 ? MOE4J_DTYPE_BF16 : MOE4J_DTYPE_F32;
}

template <typename T>
int32_t forward_launch(const char *fn, const T *q, const T *k, const T *v, T *out, float *lse,
                       const AttnCall &c) {
  if (!reference_kernels_enabled() &&
      flash_attention_fast_path(dtype_of<T>(), c.head_dim, c.cu != nullptr, c.batch, c.seq,
                                c.q_heads, {q, k, v, out}))
    return flash_attention_forward(fn, q, k, v, out, lse, c.cu, c.batch, c.seq, c.q_heads,
                                   c.kv_heads, c.head_dim, c.causal, c.window, c.scale, c.stream);
  return forward_ref(fn, q, k, v, out, lse, c);
}

template <typename T>
int32_t backward_launch(const char *fn, const T *q, const T *k, const T *v, const T *out,
                        const T *dout, const float *lse, T *dq, T *dk, T *dv, const AttnCall &c) {
  if (!reference_kernels_enabled() &&
      flash_attention_fast_path(dtype_of<T>(), c.head_dim, c.cu != nullptr, c.batch, c.seq,
                                c.q_heads, {q, k, v, out, dout, dq, dk, dv}))
    return flash_attention_backward(fn, q, k, v, out, dout, lse, dq, dk, dv, c.cu, c.batch, c.seq,
                                    c.q_heads, c.kv_heads, c.head_dim, c.causal, c.window,
                                    c.scale, c.workspace, c.stream);
  return backward_ref(fn, q, k, v, out, dout, lse, dq, dk, dv, c);
}

/* The grid of the reference kernels: one thread per (head, token), < 2^31 blocks * 128. */
void check_ref_grid(ArgCheck &chk, int64_t tokens, int64_t q_heads) {
  const int64_t rows = tokens * q_heads; /* fits: checked by the shared rules */
  chk.require(rows <= (int64_t)INT32_MAX, "grid too large: tokens * q_heads = %lld > %lld",
              (long long)rows, (long long)INT32_MAX);
}

}  // namespace

}  // namespace moe4j

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_attention_forward(int32_t dtype, const void *q, const void *k, const void *v,
                                     void *out, float *lse, const int32_t *cu_seqlens,
                                     int64_t batch, int64_t seq, int64_t q_heads,
                                     int64_t kv_heads, int64_t head_dim, int32_t causal,
                                     int64_t window, float scale, void *stream) {
  const char *fn = "moe4j_cuda_attention_forward";
  ArgCheck chk(fn);
  check_attention_forward(chk, dtype, q, k, v, out, lse, cu_seqlens, batch, seq, q_heads,
                          kv_heads, head_dim, causal, window, scale);
  if (chk.failed()) return chk.status();
  const int64_t tokens = cu_seqlens != nullptr ? seq : batch * seq;
  if (batch == 0 || tokens == 0) return MOE4J_OK;
  check_ref_grid(chk, tokens, q_heads);
  if (chk.failed()) return chk.status();
  const AttnCall c{cu_seqlens, batch, seq, tokens, q_heads, kv_heads, head_dim, causal != 0,
                   window, scale, nullptr, as_stream(stream)};
  if (dtype == MOE4J_DTYPE_BF16)
    return forward_launch<bf16_t>(fn, (const bf16_t *)q, (const bf16_t *)k, (const bf16_t *)v,
                                  (bf16_t *)out, lse, c);
  return forward_launch<float>(fn, (const float *)q, (const float *)k, (const float *)v,
                               (float *)out, lse, c);
}

int32_t moe4j_cuda_attention_backward_workspace_bytes(int64_t batch, int64_t seq, int64_t q_heads,
                                                      int64_t head_dim, int64_t *out_bytes) {
  ArgCheck chk("moe4j_cuda_attention_backward_workspace_bytes");
  check_attention_backward_workspace_bytes(chk, batch, seq, q_heads, head_dim, out_bytes);
  if (chk.failed()) return chk.status();
  *out_bytes = attention_backward_workspace_bytes(batch, seq, q_heads);
  return MOE4J_OK;
}

int32_t moe4j_cuda_attention_backward(int32_t dtype, const void *q, const void *k, const void *v,
                                      const void *out, const void *dout, const float *lse,
                                      void *dq, void *dk, void *dv, const int32_t *cu_seqlens,
                                      int64_t batch, int64_t seq, int64_t q_heads,
                                      int64_t kv_heads, int64_t head_dim, int32_t causal,
                                      int64_t window, float scale, void *workspace,
                                      int64_t workspace_bytes, void *stream) {
  const char *fn = "moe4j_cuda_attention_backward";
  ArgCheck chk(fn);
  check_attention_backward(chk, dtype, q, k, v, out, dout, lse, dq, dk, dv, cu_seqlens, batch,
                           seq, q_heads, kv_heads, head_dim, causal, window, scale, workspace,
                           workspace_bytes);
  if (chk.failed()) return chk.status();
  const int64_t tokens = cu_seqlens != nullptr ? seq : batch * seq;
  if (batch == 0 || tokens == 0) return MOE4J_OK;
  check_ref_grid(chk, tokens, q_heads); /* kv_heads <= q_heads: covers the dk/dv grid too */
  if (chk.failed()) return chk.status();
  const AttnCall c{cu_seqlens, batch, seq, tokens, q_heads, kv_heads, head_dim, causal != 0,
                   window, scale, workspace, as_stream(stream)};
  if (dtype == MOE4J_DTYPE_BF16)
    return backward_launch<bf16_t>(fn, (const bf16_t *)q, (const bf16_t *)k, (const bf16_t *)v,
                                   (const bf16_t *)out, (const bf16_t *)dout, lse, (bf16_t *)dq,
                                   (bf16_t *)dk, (bf16_t *)dv, c);
  return backward_launch<float>(fn, (const float *)q, (const float *)k, (const float *)v,
                                (const float *)out, (const float *)dout, lse, (float *)dq,
                                (float *)dk, (float *)dv, c);
}

}  // extern "C"
