/*
 * Argument rules of flash attention (moe4j.h "Attention": attention_forward, attention_backward,
 * attention_backward_workspace_bytes), shared by the CPU twin (native/src/cpu_attention.cpp) and
 * the CUDA launchers (kernels/attention.cu), like op_args.h, so both report the same messages:
 *
 *   ArgCheck chk(fn);
 *   check_attention_<forward|backward>(chk, ...);
 *   if (chk.failed()) return chk.status();
 *
 * Rules: dtype F32 | BF16; batch, seq >= 0; q_heads, kv_heads >= 1 with q_heads % kv_heads == 0;
 * head_dim even in [2, 256]; scale finite and > 0; window any value (<= 0: none); every size
 * product fits int64; buffers non-NULL and aligned unless empty (no tokens); outputs must not
 * overlap the inputs or each other. With cu_seqlens (varlen): seq (= T) <= INT32_MAX and
 * batch < INT32_MAX (int32 offsets), cu_seqlens I32 [batch + 1] non-NULL and aligned, tensors
 * sized for T tokens. Backward: workspace_bytes >= attention_backward_workspace_need(...) and
 * workspace non-NULL (4-byte aligned) when that is > 0.
 *
 * The values of cu_seqlens are host-checked only by the CPU twin (check_cu_seqlens_values): on
 * CUDA they live in device memory and the kernels clamp them instead (attention_tiles.h).
 */
#pragma once
#include <stdint.h>

#include "status.h"

namespace moe4j {

constexpr int64_t kAttnMaxHeadDim = 256;

void check_attention_forward(ArgCheck &chk, int32_t dtype, const void *q, const void *k,
                             const void *v, void *out, float *lse, const int32_t *cu_seqlens,
                             int64_t batch, int64_t seq, int64_t q_heads, int64_t kv_heads,
                             int64_t head_dim, int32_t causal, int64_t window, float scale);
void check_attention_backward(ArgCheck &chk, int32_t dtype, const void *q, const void *k,
                              const void *v, const void *out, const void *dout, const float *lse,
                              void *dq, void *dk, void *dv, const int32_t *cu_seqlens,
                              int64_t batch, int64_t seq, int64_t q_heads, int64_t kv_heads,
                              int64_t head_dim, int32_t causal, int64_t window, float scale,
                              void *workspace, int64_t workspace_bytes);

/* Rules of attention_backward_workspace_bytes: out_bytes non-NULL; batch, seq >= 0; q_heads >= 1;
 * head_dim as above; the byte count fits. */
void check_attention_backward_workspace_bytes(ArgCheck &chk, int64_t batch, int64_t seq,
                                              int64_t q_heads, int64_t head_dim,
                                              const int64_t *out_bytes);
/* 4 * batch * seq * q_heads rounded up to 256 (one F32 row sum D_i per query row); only after
 * the checks above passed. */
int64_t attention_backward_workspace_bytes(int64_t batch, int64_t seq, int64_t q_heads);
/* What the backward of this layout needs: the size above for (batch, seq), or for (1, T) when
 * cu_seqlens != NULL. */
int64_t attention_backward_workspace_need(const int32_t *cu_seqlens, int64_t batch, int64_t seq,
                                          int64_t q_heads);

/* Host memory only: cu_seqlens[0] == 0, non-decreasing, cu_seqlens[batch] == seq. Call after the
 * forward/backward checks passed (they check the buffer itself). */
void check_cu_seqlens_values(ArgCheck &chk, const int32_t *cu_seqlens, int64_t batch,
                             int64_t seq);

}  // namespace moe4j
