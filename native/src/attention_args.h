/*
 * Argument rules of flash attention (moe4j.h "Attention": attention_forward / attention_backward),
 * shared by the CPU twin (native/src/cpu_attention.cpp) and the CUDA launchers (later), like
 * op_args.h:
 *
 *   ArgCheck chk(fn);
 *   check_attention_<forward|backward>(chk, ...);
 *   if (chk.failed()) return chk.status();
 *
 * Rules: dtype F32 | BF16; batch, seq >= 0; q_heads, kv_heads >= 1 with q_heads % kv_heads == 0;
 * head_dim even in [2, 256]; scale finite and > 0; window any value (<= 0: none); every size
 * product fits int64; buffers non-NULL and aligned unless empty (batch * seq == 0); outputs must
 * not overlap the inputs or each other.
 */
#pragma once
#include <stdint.h>

#include "status.h"

namespace moe4j {

constexpr int64_t kAttnMaxHeadDim = 256;

void check_attention_forward(ArgCheck &chk, int32_t dtype, const void *q, const void *k,
                             const void *v, void *out, float *lse, int64_t batch, int64_t seq,
                             int64_t q_heads, int64_t kv_heads, int64_t head_dim, int32_t causal,
                             int64_t window, float scale);
void check_attention_backward(ArgCheck &chk, int32_t dtype, const void *q, const void *k,
                              const void *v, const void *out, const void *dout, const float *lse,
                              void *dq, void *dk, void *dv, int64_t batch, int64_t seq,
                              int64_t q_heads, int64_t kv_heads, int64_t head_dim, int32_t causal,
                              int64_t window, float scale);

}  // namespace moe4j
