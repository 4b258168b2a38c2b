/*
 * Argument rules of KV-cache decode (moe4j.h "KV-cache decode": attention_decode_workspace_bytes,
 * attention_decode), shared by the CPU twin (native/src/cpu_decode.cpp) and the CUDA launchers,
 * like op_args.h:
 *
 *   ArgCheck chk(fn);
 *   check_attention_decode(chk, ...);
 *   if (chk.failed()) return chk.status();
 *
 * Rules: dtype F32 | BF16; batch, new_tokens >= 0; max_seq >= new_tokens; q_heads, kv_heads >= 1
 * with q_heads % kv_heads == 0; head_dim even in [2, 256]; scale finite and > 0; split_k in
 * [1, 1024]; window any value (<= 0: none); every size product fits int64; q, k_new, v_new, out
 * non-NULL and aligned unless batch * new_tokens == 0; k_cache, v_cache unless batch * max_seq == 0;
 * lengths unless batch == 0; workspace_bytes >= the required size (decode_math.h) and workspace
 * non-NULL (4-byte aligned) when that size is > 0; the outputs (k_cache, v_cache, out, workspace)
 * must not overlap the inputs (q, k_new, v_new, lengths) or each other.
 * Not checked here (the launchers cannot read device memory): lengths[b] in
 * [0, max_seq - new_tokens] — the CPU twin scans them after these checks.
 */
#pragma once
#include <stdint.h>

#include "status.h"

namespace moe4j {

/* out_bytes non-NULL; batch, new_tokens >= 0; q_heads >= 1; head_dim even in [2, 256];
 * split_k in [1, 1024]; the size fits int64. */
void check_attention_decode_workspace_bytes(ArgCheck &chk, int64_t batch, int64_t new_tokens,
                                            int64_t q_heads, int64_t head_dim, int32_t split_k,
                                            const int64_t *out_bytes);

/* The workspace size in bytes; only after check_attention_decode_workspace_bytes (or
 * check_attention_decode) passed for these values. */
int64_t attention_decode_workspace_bytes(int64_t batch, int64_t new_tokens, int64_t q_heads,
                                         int64_t head_dim, int32_t split_k);

void check_attention_decode(ArgCheck &chk, int32_t dtype, const void *q, const void *k_new,
                            const void *v_new, void *k_cache, void *v_cache,
                            const int32_t *lengths, void *out, int64_t batch, int64_t new_tokens,
                            int64_t max_seq, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                            int64_t window, float scale, int32_t split_k, void *workspace,
                            int64_t workspace_bytes);

}  // namespace moe4j
