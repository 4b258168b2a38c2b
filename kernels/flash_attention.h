/*
 * The fast flash-attention path (kernels/flash_attention.cu): FlashAttention-2 forward and
 * backward on bf16 tensor cores for head_dim 32, 64 and 128. Internal to libmoe4j_cuda; the
 * moe4j_cuda_attention_* launchers (kernels/attention.cu) pick it over the *_ref kernels.
 *
 * Arguments are those of moe4j_cuda_attention_forward / _backward (moe4j.h), already checked by
 * the shared rules (native/src/attention_args.h): device pointers, cu_seqlens nullable (packed
 * varlen batch when given), window raw (normalized per sequence with attn_window). The launchers
 * return a moe4j status (MOE4J_ERR_CUDA with a message when a launch fails).
 */
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include <initializer_list>

namespace moe4j {

/* dtype and head_dim the fast kernels implement: BF16 with head_dim 32, 64 or 128. */
bool flash_attention_fast_supported(int32_t dtype, int64_t head_dim);

/* Everything the fast path needs beyond dtype / head_dim: every buffer 16-byte aligned (rows go
 * through 16-byte cp.async) and the grid within CUDA's limits (q_heads <= 65535; uniform batch
 * <= 65535; varlen T / 64 + batch < 2^31). When false the caller uses the *_ref kernels. */
bool flash_attention_fast_path(int32_t dtype, int64_t head_dim, bool varlen, int64_t batch,
                               int64_t seq, int64_t q_heads,
                               std::initializer_list<const void *> buffers);

int32_t flash_attention_forward(const char *fn, const void *q, const void *k, const void *v,
                                void *out, float *lse, const int32_t *cu_seqlens, int64_t batch,
                                int64_t seq, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                                bool causal, int64_t window, float scale, cudaStream_t stream);

/* workspace: device memory for D_i = rowsum(dO * O), one f32 per lse entry (B * Hq * S, or Hq * T
 * for varlen): the caller has checked it against attention_backward_workspace_need. */
int32_t flash_attention_backward(const char *fn, const void *q, const void *k, const void *v,
                                 const void *out, const void *dout, const float *lse, void *dq,
                                 void *dk, void *dv, const int32_t *cu_seqlens, int64_t batch,
                                 int64_t seq, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                                 bool causal, int64_t window, float scale, void *workspace,
                                 cudaStream_t stream);

}  // namespace moe4j
