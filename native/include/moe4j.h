/*
 * moe4j C ABI — the only interface between Java (JNA direct mapping) and the two native libraries.
 *
 *   libmoe4j_cpu.so   always built; functions prefixed moe4j_cpu_ (plus moe4j_last_error)
 *   libmoe4j_cuda.so  built when a CUDA toolkit is found; functions prefixed moe4j_cuda_
 *
 * Conventions (DESIGN.md §3):
 *  - Plain C, raw addresses (void*) and int64_t sizes; no structs in calls.
 *  - Every function returns a status (MOE4J_OK or an error code); on error the thread-local
 *    message from moe4j_last_error() / moe4j_cuda_last_error() says which argument, what was
 *    expected and what came. Arguments are validated before any work. Nothing aborts.
 *  - Tensors are contiguous row-major. `dtype` is one of MOE4J_DTYPE_*. Statistics saved for
 *    backward (rstd, lse) and optimizer state are always F32.
 *  - CUDA functions take the CUstream as the last argument (0 = legacy default stream), run
 *    asynchronously on it in the caller's current context, and check every launch.
 *  - Forward kernels use no float atomics: results are bitwise reproducible run to run.
 */
#ifndef MOE4J_H
#define MOE4J_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define MOE4J_API __declspec(dllexport)
#else
#define MOE4J_API __attribute__((visibility("default")))
#endif

/* status codes */
#define MOE4J_OK 0
#define MOE4J_ERR_INVALID_ARGUMENT 1
#define MOE4J_ERR_UNSUPPORTED 2
#define MOE4J_ERR_OUT_OF_MEMORY 3
#define MOE4J_ERR_CUDA 4
#define MOE4J_ERR_NO_DEVICE 5
#define MOE4J_ERR_INTERNAL 6

/* dtype codes (match io.moe4j.tensor.DType.code()) */
#define MOE4J_DTYPE_F32 0
#define MOE4J_DTYPE_BF16 1
#define MOE4J_DTYPE_F16 2
#define MOE4J_DTYPE_I32 3
#define MOE4J_DTYPE_I64 4
#define MOE4J_DTYPE_U8 5

/* ======================================================================================
 * libmoe4j_cpu
 * ====================================================================================== */

/* Message of the last failed call on this thread ("" if none). */
MOE4J_API const char *moe4j_last_error(void);
/* "key=value;key=value" describing the build: version, compiler, flags, OpenMP. */
MOE4J_API const char *moe4j_cpu_build_info(void);
/* SIMD level the dispatched kernels use on this CPU: "avx512", "avx2" or "baseline". */
MOE4J_API const char *moe4j_cpu_simd_level(void);
/* OpenMP threads the kernels use. */
MOE4J_API int32_t moe4j_cpu_num_threads(void);
/* Does nothing; measures the JNA call overhead. */
MOE4J_API int32_t moe4j_cpu_noop(void);

/* Runs a register-only FMA loop on every thread for `seconds` with the widest vector unit and
 * writes the achieved GFLOP/s: the measured peak that benchmarks report fractions of. */
MOE4J_API int32_t moe4j_cpu_measure_fma_peak(double seconds, double *out_gflops);

/* Host memory, 64-byte aligned (AVX-512 lines). *out_address receives the address. */
MOE4J_API int32_t moe4j_cpu_alloc(int64_t bytes, int64_t *out_address);
MOE4J_API int32_t moe4j_cpu_free(void *ptr);
MOE4J_API int32_t moe4j_cpu_memset_zero(void *ptr, int64_t bytes);

/* out = a + b (n elements, F32 or BF16; bf16 sums computed in f32, rounded to nearest even) */
MOE4J_API int32_t moe4j_cpu_add(int32_t dtype, const void *a, const void *b, void *out, int64_t n);
/* out = alpha * x (may alias) */
MOE4J_API int32_t moe4j_cpu_scale(int32_t dtype, const void *x, void *out, int64_t n, float alpha);
/* dst = src, bytes (may not overlap) */
MOE4J_API int32_t moe4j_cpu_copy(const void *src, void *dst, int64_t bytes);
/* dst = convert(src): any pair among F32, BF16, F16 (round to nearest even; NaN preserved) */
MOE4J_API int32_t moe4j_cpu_cast(int32_t src_dtype, const void *src, int32_t dst_dtype, void *dst,
                                 int64_t n);

/* RMSNorm over the last dim: y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps), statistics in f32.
 * x, w, y: dtype (F32|BF16); rstd: F32 [rows] (may be NULL in forward). */
MOE4J_API int32_t moe4j_cpu_rmsnorm_forward(int32_t dtype, const void *x, const void *weight,
                                            void *y, float *rstd, int64_t rows, int64_t cols,
                                            float eps);
/* dx: dtype [rows, cols]; dweight: F32 [cols], overwritten or (accumulate != 0) added to.
 * Reduction over rows is in a fixed order (deterministic). */
MOE4J_API int32_t moe4j_cpu_rmsnorm_backward(int32_t dtype, const void *dy, const void *x,
                                             const void *weight, const float *rstd, void *dx,
                                             float *dweight, int64_t rows, int64_t cols,
                                             int32_t accumulate);

/* SwiGLU: out = silu(gate) * up. gate/up rows are `in_stride` elements apart (in_stride == cols for
 * separate tensors; 2*cols for a combined [rows, 2*cols] gate|up buffer); out is [rows, cols]. */
MOE4J_API int32_t moe4j_cpu_swiglu_forward(int32_t dtype, const void *gate, const void *up,
                                           void *out, int64_t rows, int64_t cols,
                                           int64_t in_stride);
/* dgate/dup use the same layout (in_stride) as gate/up. */
MOE4J_API int32_t moe4j_cpu_swiglu_backward(int32_t dtype, const void *gate, const void *up,
                                            const void *dout, void *dgate, void *dup,
                                            int64_t rows, int64_t cols, int64_t in_stride);

/* Embedding lookup: out[i, :] = table[ids[i], :]. ids: I32 [num_ids], each in [0, vocab). */
MOE4J_API int32_t moe4j_cpu_embedding_forward(int32_t dtype, const void *table, const int32_t *ids,
                                              void *out, int64_t num_ids, int64_t vocab,
                                              int64_t dim);
/* dtable[ids[i], :] += dout[i, :] in id order (deterministic). dtable: F32 [vocab, dim],
 * zeroed first unless accumulate != 0. dout: dtype. */
MOE4J_API int32_t moe4j_cpu_embedding_backward(int32_t dtype, const void *dout, const int32_t *ids,
                                               float *dtable, int64_t num_ids, int64_t vocab,
                                               int64_t dim, int32_t accumulate);

/* Softmax cross-entropy per row: losses[r] = lse[r] - logits[r, target[r]]; rows whose target ==
 * ignore_index get loss 0 (lse still written). logits: dtype [rows, vocab]; targets: I32 [rows];
 * losses, lse: F32 [rows]. Targets other than ignore_index must be in [0, vocab). */
MOE4J_API int32_t moe4j_cpu_cross_entropy_forward(int32_t dtype, const void *logits,
                                                  const int32_t *targets, float *losses,
                                                  float *lse, int64_t rows, int64_t vocab,
                                                  int32_t ignore_index);
/* dlogits = (softmax(logits) - onehot(target)) * grad_scale; ignored rows get 0.
 * dlogits may alias logits (in place: no second full-size buffer). */
MOE4J_API int32_t moe4j_cpu_cross_entropy_backward(int32_t dtype, const void *logits,
                                                   const int32_t *targets, const float *lse,
                                                   void *dlogits, int64_t rows, int64_t vocab,
                                                   int32_t ignore_index, float grad_scale);

/* Fused AdamW step on n elements (PyTorch AdamW semantics, decoupled weight decay):
 *   g = grad * s, s = *grad_scale (1 when grad_scale is NULL; on CUDA a device address, so the
 *   clip coefficient from moe4j_cuda_clip_coefficient is used without a host round trip);  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr * (wd * p + (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps))
 * param, m, v: F32 master state; grad: grad_dtype (F32|BF16); param_copy (may be NULL): a
 * copy of the updated param written in copy_dtype (BF16|F16|F32). step >= 1. */
MOE4J_API int32_t moe4j_cpu_adamw_step(float *param, int32_t grad_dtype, const void *grad, float *m,
                                       float *v, int32_t copy_dtype, void *param_copy, int64_t n,
                                       float lr, float beta1, float beta2, float eps,
                                       float weight_decay, int64_t step,
                                       const float *grad_scale);

/* out[0] = sum(x^2) over n elements of dtype (F32|BF16), fixed summation order. */
MOE4J_API int32_t moe4j_cpu_sum_squares(int32_t dtype, const void *x, int64_t n, float *out);
/* From per-tensor sums of squares: out[0] = global L2 norm = sqrt(sum partials),
 * out[1] = clip coefficient min(1, max_norm / (norm + 1e-6)). */
MOE4J_API int32_t moe4j_cpu_clip_coefficient(const float *partials, int64_t count, float max_norm,
                                             float *out);

/* ---- Grouped-expert GEMM (dense GEMM is the one-group case) -------------------------------
 * Rows of x are sorted by group: group e owns rows offsets[e] .. offsets[e+1]. offsets: I64
 * [num_groups + 1], offsets[0] == 0, non-decreasing, offsets[num_groups] == total_rows (on CUDA a
 * device array that the host never reads). offsets == NULL means one group of all rows (dense
 * GEMM; num_groups must be 1). Weights are HF [out, in] per group: w [num_groups, n, k].
 * in_dtype (x, w, dy): F32 | BF16, accumulated in f32; out_dtype: F32 | BF16. With accumulate != 0
 * the result is added to the output (read in out_dtype, summed in f32, rounded once).
 * Group sizes may be 0, smaller than a tile, or hold every row. */

/* forward: y[t, :] (=|+=) row_scale[t] * (x[t, :] . w_e^T); x [T, k], y [T, n];
 * row_scale F32 [T] (routing weights) or NULL for 1. On the CPU, groups of at most 16 rows (decode
 * steps, small expert groups) take a bandwidth-bound GEMV path that reads each weight row once
 * (native/src/cpu_gemv.h; MOE4J_CPU_GEMV_MAX_ROWS=0..16 overrides the threshold); it agrees with the
 * packed path to f32 rounding of the k-sum, and both are deterministic. */
MOE4J_API int32_t moe4j_cpu_grouped_gemm_forward(int32_t in_dtype, const void *x, const void *w,
                                                 int32_t out_dtype, void *y,
                                                 const int64_t *offsets, int64_t num_groups,
                                                 int64_t total_rows, int64_t n, int64_t k,
                                                 const float *row_scale, int32_t accumulate);
/* data gradient: dx[t, :] (=|+=) dy[t, :] . w_e; dy [T, n], dx [T, k]. */
MOE4J_API int32_t moe4j_cpu_grouped_gemm_dgrad(int32_t in_dtype, const void *dy, const void *w,
                                               int32_t out_dtype, void *dx,
                                               const int64_t *offsets, int64_t num_groups,
                                               int64_t total_rows, int64_t n, int64_t k,
                                               int32_t accumulate);
/* weight gradient: dw_e (=|+=) dy_e^T . x_e; dy [T, n], x [T, k], dw [num_groups, n, k] in
 * out_dtype. A group with no rows gets zeros (or is left unchanged when accumulating). */
MOE4J_API int32_t moe4j_cpu_grouped_gemm_wgrad(int32_t in_dtype, const void *dy, const void *x,
                                               int32_t out_dtype, void *dw,
                                               const int64_t *offsets, int64_t num_groups,
                                               int64_t total_rows, int64_t n, int64_t k,
                                               int32_t accumulate);
/* forward with the SwiGLU epilogue fused: for a combined weight w13 [num_groups, 2f, k] (rows
 * 0..f-1 gate, f..2f-1 up), g = x . w_gate^T, u = x . w_up^T, h = silu(g) * u; h [T, f].
 * gate_up [T, 2f] (may be NULL) receives the pre-activations g|u per row for the backward, which
 * is moe4j_*_swiglu_backward(gate_up, gate_up + f, dh, ..., in_stride = 2f) followed by dgrad and
 * wgrad with n = 2f. */
MOE4J_API int32_t moe4j_cpu_grouped_gemm_swiglu_forward(int32_t in_dtype, const void *x,
                                                        const void *w13, int32_t out_dtype,
                                                        void *h, void *gate_up,
                                                        const int64_t *offsets,
                                                        int64_t num_groups, int64_t total_rows,
                                                        int64_t f, int64_t k);

/* ---- Routing (token choice) ------------------------------------------------------------------
 * Router logits F32 [T, E] (from the router GEMM) -> scores -> per-token top-k experts -> a
 * dispatch plan that sorts assignments by expert (the grouped GEMM's layout) -> gather rows ->
 * experts -> combine back in token order. All on the device on CUDA, no host synchronization.
 * Determinism: selection ties break to the lower expert index; combine sums each token's
 * assignments in rank order j = 0..k-1 (no float atomics). */

/* scores = softmax over the E experts of each row (score_fn 0) or sigmoid per element
 * (score_fn 1), in f32. logits and scores [T, E]. */
MOE4J_API int32_t moe4j_cpu_router_scores(const float *logits, float *scores, int64_t tokens,
                                          int64_t experts, int32_t score_fn);
/* d_logits from d_scores through the same function (scores saved from the forward). */
MOE4J_API int32_t moe4j_cpu_router_scores_backward(const float *scores, const float *d_scores,
                                                   float *d_logits, int64_t tokens,
                                                   int64_t experts, int32_t score_fn);
/* Token choice: for each token the k experts with the largest scores[t, e] + bias[e] (bias F32 [E]
 * or NULL: aux-loss-free balancing, used for selection only), in descending order, ties to the
 * lower index. expert_ids I32 [T, k]; weights F32 [T, k] = the selected scores (without bias),
 * divided by their sum when renormalize != 0. 1 <= k <= E. */
MOE4J_API int32_t moe4j_cpu_route_topk(const float *scores, const float *bias, int64_t tokens,
                                       int64_t experts, int32_t k, int32_t renormalize,
                                       int32_t *expert_ids, float *weights);
/* Backward of route_topk: d_scores [T, E] (overwritten; zero for unselected experts) from
 * d_weights [T, k], through the renormalization when renormalize != 0. */
MOE4J_API int32_t moe4j_cpu_route_topk_backward(const float *scores, const int32_t *expert_ids,
                                                const float *d_weights, float *d_scores,
                                                int64_t tokens, int64_t experts, int32_t k,
                                                int32_t renormalize);
/* Dispatch plan. capacity <= 0: dropless; else each expert keeps at most `capacity` assignments,
 * chosen by priority: higher weight first, then lower token index (then lower rank). Outputs:
 * offsets I64 [E + 1] (rows of expert e in the sorted buffer; offsets[E] = kept assignments);
 * sorted_token I32 [T * k] (token of each sorted row, rows past offsets[E] set to -1);
 * slot_of I32 [T, k] (sorted row of assignment (t, j), or -1 when dropped). Within an expert,
 * rows are in token order (stable). counts I64 [E] (may be NULL): assignments per expert before
 * dropping (load metrics). */
MOE4J_API int32_t moe4j_cpu_route_plan(const int32_t *expert_ids, const float *weights,
                                       int64_t tokens, int64_t experts, int32_t k,
                                       int64_t capacity, int64_t *offsets, int32_t *sorted_token,
                                       int32_t *slot_of, int64_t *counts);
/* gather: rows[r, :] = x[sorted_token[r], :] for r < rows (sorted_token[r] >= 0). x [T, H],
 * rows [R, H], dtype F32|BF16. */
MOE4J_API int32_t moe4j_cpu_route_gather(int32_t dtype, const void *x, const int32_t *sorted_token,
                                         void *rows, int64_t num_rows, int64_t tokens,
                                         int64_t hidden);
/* gather backward: dx[t, :] (=|+=) sum over j of d_rows[slot_of[t, j], :] (kept slots, j order). */
MOE4J_API int32_t moe4j_cpu_route_gather_backward(int32_t dtype, const void *d_rows,
                                                  const int32_t *slot_of, void *dx,
                                                  int64_t tokens, int32_t k, int64_t num_rows,
                                                  int64_t hidden, int32_t accumulate);
/* combine: y[t, :] = sum over j of weights[t, j] * rows[slot_of[t, j], :] (dropped slots add 0;
 * weights NULL = 1, for when the down projection already applied them as row_scale). */
MOE4J_API int32_t moe4j_cpu_route_combine(int32_t dtype, const void *rows, const int32_t *slot_of,
                                          const float *weights, void *y, int64_t tokens,
                                          int32_t k, int64_t num_rows, int64_t hidden);
/* combine backward: d_rows[slot, :] = w * dy[t, :] for each kept (t, j); d_weights[t, j] =
 * <dy[t, :], rows[slot, :]> (0 for dropped; d_weights may be NULL). d_rows rows not referenced by
 * any slot are zeroed. */
MOE4J_API int32_t moe4j_cpu_route_combine_backward(int32_t dtype, const void *dy, const void *rows,
                                                   const int32_t *slot_of, const float *weights,
                                                   void *d_rows, float *d_weights,
                                                   int64_t tokens, int32_t k, int64_t num_rows,
                                                   int64_t hidden);

/* ---- Expert Choice routing and balancing -----------------------------------------------------
 * Expert Choice (Zhou et al. 2022): within each routing group of `group_size` consecutive tokens
 * (a sequence, or the whole batch: tokens % group_size == 0), each expert takes its `capacity`
 * highest-scoring tokens (ties to the lower token index; capacity = ceil(group_size * cf / E),
 * computed by the caller, at most group_size). A token may get 0..E experts. It sees the whole
 * group, so it is not causal: decode an EC-trained model with the documented fallback, token choice
 * with k = round(cf) on the same router (moe4j_*_route_topk). Outputs, in the layout route_combine
 * and route_combine_backward take with k = E:
 *   offsets I64 [E + 1] (expert e owns groups * capacity rows), sorted_token I32 [E * groups *
 *   capacity] (rows of expert e in group order, then token order), slot_of I32 [T, E] (row of
 *   (t, e) or -1), weights F32 [T, E] (the score where (t, e) was chosen, else 0),
 *   uncovered I64 [1] (may be NULL): tokens that no expert chose.
 * The gradient to the scores is the combine's d_weights masked to the chosen pairs (d_weights is 0
 * elsewhere already), so no separate backward is needed. */
MOE4J_API int32_t moe4j_cpu_route_expert_choice(const float *scores, int64_t tokens,
                                                int64_t experts, int64_t group_size,
                                                int64_t capacity, int64_t *offsets,
                                                int32_t *sorted_token, int32_t *slot_of,
                                                float *weights, int64_t *uncovered);
/* Switch/GShard load-balancing loss for token choice: loss = coef * E * sum_e f_e * P_e, f_e =
 * (assignments to e) / (T * k) (from expert_ids, no gradient), P_e = mean over tokens of
 * scores[t, e]. out[0] = loss. d_scores (may be NULL) += coef * E * f_e / T (accumulated, so the
 * caller adds it to the gradient from the weights). */
MOE4J_API int32_t moe4j_cpu_router_balance_loss(const float *scores, const int32_t *expert_ids,
                                                int64_t tokens, int64_t experts, int32_t k,
                                                float coef, float *out, float *d_scores);
/* Router z-loss: loss = coef * mean_t(logsumexp(logits[t, :])^2); out[0] = loss; d_logits (may be
 * NULL) += coef * 2 * lse_t / T * softmax(logits[t, :]). */
MOE4J_API int32_t moe4j_cpu_router_z_loss(const float *logits, int64_t tokens, int64_t experts,
                                          float coef, float *out, float *d_logits);
/* Aux-loss-free balancing (bias used for selection only): after a step, with counts I64 [E] from
 * route_plan, bias[e] += rate * sign(mean_count - counts[e]) (sign(0) = 0). */
MOE4J_API int32_t moe4j_cpu_router_bias_update(float *bias, const int64_t *counts, int64_t experts,
                                               float rate);

/* ---- Attention: RoPE, flash attention (uniform and varlen batches), KV-cache decode ------
 * RoPE, rotate-half convention (HF): for each row of head_dim values and i < head_dim / 2, with
 * angle = positions[t] * theta^(-2i / head_dim): out[i] = x[i] cos - x[i + D/2] sin,
 * out[i + D/2] = x[i + D/2] cos + x[i] sin. x, out [T, heads, head_dim] (T = batch * seq, or packed
 * tokens); positions I32 [T] (decode offsets / varlen positions); head_dim even; out may alias x.
 * Angles are computed in f32 from the shared header, identically on both twins. */
MOE4J_API int32_t moe4j_cpu_rope_forward(int32_t dtype, const void *x, void *out,
                                         const int32_t *positions, int64_t tokens, int64_t heads,
                                         int64_t head_dim, float theta);
/* The transpose rotation: dx from dout (dx may alias dout). */
MOE4J_API int32_t moe4j_cpu_rope_backward(int32_t dtype, const void *dout, void *dx,
                                          const int32_t *positions, int64_t tokens, int64_t heads,
                                          int64_t head_dim, float theta);
/* Flash attention forward (FlashAttention-2 algorithm: K/V tiles streamed past a Q tile with an
 * online softmax, the S x S matrix never materialized, fully masked tiles skipped). GQA: Hq % Hkv
 * == 0 and query head h reads kv head h / (Hq / Hkv). scale > 0 (usually 1/sqrt(D)). dtype
 * F32 | BF16, f32 accumulation; lse F32 is the natural log-sum-exp of the scaled scores (for the
 * backward).
 *
 * Two layouts, chosen by cu_seqlens:
 *   cu_seqlens == NULL: `batch` sequences of `seq` tokens each. q, out [B, S, Hq, D]; k, v
 *     [B, S, Hkv, D]; lse [B, Hq, S].
 *   cu_seqlens != NULL: a packed variable-length batch (FlashAttention "varlen", for prefill of
 *     prompts of different lengths without padding). `batch` = number of sequences, `seq` = T =
 *     total packed tokens (< 2^31); sequence b is tokens cu_seqlens[b] .. cu_seqlens[b+1] - 1.
 *     q, out [T, Hq, D]; k, v [T, Hkv, D] (the memory of the uniform layout with batch 1, seq T);
 *     lse [Hq, T]. cu_seqlens I32 [batch + 1] with 0 = c[0] <= c[1] <= ... <= c[batch] = T
 *     (empty sequences allowed); batch < 2^31 - 1.
 * Positions, the causal mask and the window are per sequence: query i and key j (positions
 * counted from the start of their sequence) interact iff they are in the same sequence and
 * causal == 0 or j <= i, and window <= 0 or j > i - window (sliding window). No token sees
 * another sequence. A row with no key (impossible when causal) gets out = 0, lse = -inf.
 * The CPU reads cu_seqlens and rejects a violation with MOE4J_ERR_INVALID_ARGUMENT. */
MOE4J_API int32_t moe4j_cpu_attention_forward(int32_t dtype, const void *q, const void *k,
                                              const void *v, void *out, float *lse,
                                              const int32_t *cu_seqlens, int64_t batch,
                                              int64_t seq, int64_t q_heads, int64_t kv_heads,
                                              int64_t head_dim, int32_t causal, int64_t window,
                                              float scale);
/* Bytes of the workspace moe4j_*_attention_backward needs: 4 * batch * seq * q_heads (the row sums
 * D_i = rowsum(dout * out), F32) rounded up to 256; 0 when empty. The backward checks the need of
 * its actual layout (Hq * T floats for a varlen batch), so for a varlen batch asking with
 * batch = 1, seq = T gives the exact size and (batch, T) a sufficient one. Same value on both
 * backends. */
MOE4J_API int32_t moe4j_cpu_attention_backward_workspace_bytes(int64_t batch, int64_t seq,
                                                               int64_t q_heads, int64_t head_dim,
                                                               int64_t *out_bytes);
/* Flash attention backward (FA2: D_i = rowsum(dout * out) kept in the workspace, P recomputed from
 * lse, parallel over K/V blocks, dQ accumulated in f32 without atomics — deterministic). Layouts
 * and cu_seqlens as the forward: dq like q, dk, dv like k, all overwritten; GQA gradients are
 * summed over the query heads of a group. workspace: F32 scratch of at least
 * moe4j_*_attention_backward_workspace_bytes bytes (may be NULL when that is 0), no overlap with
 * any other buffer. */
MOE4J_API int32_t moe4j_cpu_attention_backward(int32_t dtype, const void *q, const void *k,
                                               const void *v, const void *out, const void *dout,
                                               const float *lse, void *dq, void *dk, void *dv,
                                               const int32_t *cu_seqlens, int64_t batch,
                                               int64_t seq, int64_t q_heads, int64_t kv_heads,
                                               int64_t head_dim, int32_t causal, int64_t window,
                                               float scale, void *workspace,
                                               int64_t workspace_bytes);
/* Naive attention, the benchmark baseline of the flash forward (and an oracle for it): per
 * (batch, query head) the full S x S f32 score matrix is materialized, masked, softmaxed row by row
 * and multiplied by V. Uniform batches only (the cu_seqlens == NULL layout); otherwise the
 * arguments, rules and results (out, lse) of moe4j_cpu_attention_forward. Scratch: S * S + 2 * S * D
 * + D floats per thread that runs an item, allocated per call (MOE4J_ERR_OUT_OF_MEMORY when that
 * fails). CPU only. */
MOE4J_API int32_t moe4j_cpu_attention_naive_forward(int32_t dtype, const void *q, const void *k,
                                                    const void *v, void *out, float *lse,
                                                    int64_t batch, int64_t seq, int64_t q_heads,
                                                    int64_t kv_heads, int64_t head_dim,
                                                    int32_t causal, int64_t window, float scale);

/* KV-cache decode (flash-decoding). Each sequence b has lengths[b] tokens cached in k_cache,
 * v_cache [B, max_seq, Hkv, D]; the call appends new_tokens new keys/values (k_new, v_new
 * [B, new_tokens, Hkv, D]) at positions lengths[b] .. lengths[b] + new_tokens - 1 (which must be
 * < max_seq) and attends q [B, new_tokens, Hq, D] to the cache: new query i sees every cached key
 * and the new keys <= i (causal), restricted to the last `window` positions when window > 0.
 * out [B, new_tokens, Hq, D]. lengths I32 [B] is read, not advanced (the caller does that).
 * The context is cut into split_k >= 1 chunks processed independently (parallelism for long
 * contexts) and merged with their log-sum-exps; a fixed split_k gives bitwise-reproducible results,
 * different split_k agree to f32 rounding. workspace: F32 scratch of
 * moe4j_*_attention_decode_workspace_bytes(...) bytes (may be NULL when that is 0). dtype
 * F32 | BF16 for q, k, v, caches and out; f32 accumulation. */
MOE4J_API int32_t moe4j_cpu_attention_decode_workspace_bytes(int64_t batch, int64_t new_tokens,
                                                             int64_t q_heads, int64_t head_dim,
                                                             int32_t split_k, int64_t *out_bytes);
MOE4J_API int32_t moe4j_cpu_attention_decode(int32_t dtype, const void *q, const void *k_new,
                                             const void *v_new, void *k_cache, void *v_cache,
                                             const int32_t *lengths, void *out, int64_t batch,
                                             int64_t new_tokens, int64_t max_seq,
                                             int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                                             int64_t window, float scale, int32_t split_k,
                                             void *workspace, int64_t workspace_bytes);

/* ======================================================================================
 * libmoe4j_cuda — same operations, device addresses, stream last.
 * ====================================================================================== */

MOE4J_API const char *moe4j_cuda_last_error(void);
/* "key=value;..." with version, CUDA toolkit version, architectures compiled. */
MOE4J_API const char *moe4j_cuda_build_info(void);
/* Number of visible devices; an error (with reason: no driver, driver too old, ...) if none. */
MOE4J_API int32_t moe4j_cuda_device_count(int32_t *out_count);
/* CUDA driver and runtime versions (e.g. 13000). */
MOE4J_API int32_t moe4j_cuda_versions(int32_t *out_driver, int32_t *out_runtime);
/* Loads cuBLAS at run time (libcublas.so.13, then .so.12). Returns the library name found, or ""
 * when none could be loaded (our own GEMM kernel then serves dense GEMMs). */
MOE4J_API const char *moe4j_cuda_cublas_library(void);
/* Selects the simple reference kernels (`*_ref`, enable != 0) or the optimized ones (0, default)
 * for every op that has both, process-wide, so a GPU run can check one against the other. */
MOE4J_API int32_t moe4j_cuda_use_reference_kernels(int32_t enable);

MOE4J_API int32_t moe4j_cuda_add(int32_t dtype, const void *a, const void *b, void *out, int64_t n,
                                 void *stream);
MOE4J_API int32_t moe4j_cuda_scale(int32_t dtype, const void *x, void *out, int64_t n, float alpha,
                                   void *stream);
MOE4J_API int32_t moe4j_cuda_copy(const void *src, void *dst, int64_t bytes, void *stream);
MOE4J_API int32_t moe4j_cuda_cast(int32_t src_dtype, const void *src, int32_t dst_dtype, void *dst,
                                  int64_t n, void *stream);
MOE4J_API int32_t moe4j_cuda_rmsnorm_forward(int32_t dtype, const void *x, const void *weight,
                                             void *y, float *rstd, int64_t rows, int64_t cols,
                                             float eps, void *stream);
MOE4J_API int32_t moe4j_cuda_rmsnorm_backward(int32_t dtype, const void *dy, const void *x,
                                              const void *weight, const float *rstd, void *dx,
                                              float *dweight, int64_t rows, int64_t cols,
                                              int32_t accumulate, void *stream);
MOE4J_API int32_t moe4j_cuda_swiglu_forward(int32_t dtype, const void *gate, const void *up,
                                            void *out, int64_t rows, int64_t cols,
                                            int64_t in_stride, void *stream);
MOE4J_API int32_t moe4j_cuda_swiglu_backward(int32_t dtype, const void *gate, const void *up,
                                             const void *dout, void *dgate, void *dup,
                                             int64_t rows, int64_t cols, int64_t in_stride,
                                             void *stream);
/* Out-of-range ids cannot be reported synchronously from the device: such rows are written as
 * zeros (forward) or skipped (backward). The Java layer validates ids before the call. */
MOE4J_API int32_t moe4j_cuda_embedding_forward(int32_t dtype, const void *table,
                                               const int32_t *ids, void *out, int64_t num_ids,
                                               int64_t vocab, int64_t dim, void *stream);
MOE4J_API int32_t moe4j_cuda_embedding_backward(int32_t dtype, const void *dout,
                                                const int32_t *ids, float *dtable,
                                                int64_t num_ids, int64_t vocab, int64_t dim,
                                                int32_t accumulate, void *stream);
MOE4J_API int32_t moe4j_cuda_cross_entropy_forward(int32_t dtype, const void *logits,
                                                   const int32_t *targets, float *losses,
                                                   float *lse, int64_t rows, int64_t vocab,
                                                   int32_t ignore_index, void *stream);
MOE4J_API int32_t moe4j_cuda_cross_entropy_backward(int32_t dtype, const void *logits,
                                                    const int32_t *targets, const float *lse,
                                                    void *dlogits, int64_t rows, int64_t vocab,
                                                    int32_t ignore_index, float grad_scale,
                                                    void *stream);
MOE4J_API int32_t moe4j_cuda_adamw_step(float *param, int32_t grad_dtype, const void *grad,
                                        float *m, float *v, int32_t copy_dtype, void *param_copy,
                                        int64_t n, float lr, float beta1, float beta2, float eps,
                                        float weight_decay, int64_t step,
                                        const float *grad_scale, void *stream);
/* out: device F32 [1] */
MOE4J_API int32_t moe4j_cuda_sum_squares(int32_t dtype, const void *x, int64_t n, float *out,
                                         void *stream);
/* partials, out: device F32 */
MOE4J_API int32_t moe4j_cuda_clip_coefficient(const float *partials, int64_t count,
                                              float max_norm, float *out, void *stream);

/* Grouped GEMM: same semantics as the moe4j_cpu_ versions; one launch for all groups, the
 * tile schedule computed on the device from offsets (no host synchronization). */
/* forward: y[t, :] (=|+=) row_scale[t] * (x[t, :] . w_e^T); x [T, k], y [T, n];
 * row_scale F32 [T] (routing weights) or NULL for 1. On the CPU, groups of at most 16 rows (decode
 * steps, small expert groups) take a bandwidth-bound GEMV path that reads each weight row once
 * (native/src/cpu_gemv.h; MOE4J_CPU_GEMV_MAX_ROWS=0..16 overrides the threshold); it agrees with the
 * packed path to f32 rounding of the k-sum, and both are deterministic. */
MOE4J_API int32_t moe4j_cuda_grouped_gemm_forward(int32_t in_dtype, const void *x, const void *w,
                                                 int32_t out_dtype, void *y,
                                                 const int64_t *offsets, int64_t num_groups,
                                                 int64_t total_rows, int64_t n, int64_t k,
                                                 const float *row_scale, int32_t accumulate, void *stream);
/* data gradient: dx[t, :] (=|+=) dy[t, :] . w_e; dy [T, n], dx [T, k]. */
MOE4J_API int32_t moe4j_cuda_grouped_gemm_dgrad(int32_t in_dtype, const void *dy, const void *w,
                                               int32_t out_dtype, void *dx,
                                               const int64_t *offsets, int64_t num_groups,
                                               int64_t total_rows, int64_t n, int64_t k,
                                               int32_t accumulate, void *stream);
/* weight gradient: dw_e (=|+=) dy_e^T . x_e; dy [T, n], x [T, k], dw [num_groups, n, k] in
 * out_dtype. A group with no rows gets zeros (or is left unchanged when accumulating). */
MOE4J_API int32_t moe4j_cuda_grouped_gemm_wgrad(int32_t in_dtype, const void *dy, const void *x,
                                               int32_t out_dtype, void *dw,
                                               const int64_t *offsets, int64_t num_groups,
                                               int64_t total_rows, int64_t n, int64_t k,
                                               int32_t accumulate, void *stream);
/* forward with the SwiGLU epilogue fused: for a combined weight w13 [num_groups, 2f, k] (rows
 * 0..f-1 gate, f..2f-1 up), g = x . w_gate^T, u = x . w_up^T, h = silu(g) * u; h [T, f].
 * gate_up [T, 2f] (may be NULL) receives the pre-activations g|u per row for the backward, which
 * is moe4j_*_swiglu_backward(gate_up, gate_up + f, dh, ..., in_stride = 2f) followed by dgrad and
 * wgrad with n = 2f. */
MOE4J_API int32_t moe4j_cuda_grouped_gemm_swiglu_forward(int32_t in_dtype, const void *x,
                                                        const void *w13, int32_t out_dtype,
                                                        void *h, void *gate_up,
                                                        const int64_t *offsets,
                                                        int64_t num_groups, int64_t total_rows,
                                                        int64_t f, int64_t k, void *stream);
/* Baselines for benchmarks (cuBLAS loaded at run time; MOE4J_ERR_UNSUPPORTED when absent):
 * dense c [m, n] = a [m, k] . b [n, k]^T with in_dtype inputs and out_dtype output, f32 compute. */
MOE4J_API int32_t moe4j_cuda_cublas_gemm(int32_t in_dtype, const void *a, const void *b,
                                         int32_t out_dtype, void *c, int64_t m, int64_t n,
                                         int64_t k, void *stream);

/* Routing: same semantics as the moe4j_cpu_ versions. */
/* scores = softmax over the E experts of each row (score_fn 0) or sigmoid per element
 * (score_fn 1), in f32. logits and scores [T, E]. */
MOE4J_API int32_t moe4j_cuda_router_scores(const float *logits, float *scores, int64_t tokens,
                                          int64_t experts, int32_t score_fn, void *stream);
/* d_logits from d_scores through the same function (scores saved from the forward). */
MOE4J_API int32_t moe4j_cuda_router_scores_backward(const float *scores, const float *d_scores,
                                                   float *d_logits, int64_t tokens,
                                                   int64_t experts, int32_t score_fn, void *stream);
/* Token choice: for each token the k experts with the largest scores[t, e] + bias[e] (bias F32 [E]
 * or NULL: aux-loss-free balancing, used for selection only), in descending order, ties to the
 * lower index. expert_ids I32 [T, k]; weights F32 [T, k] = the selected scores (without bias),
 * divided by their sum when renormalize != 0. 1 <= k <= E. */
MOE4J_API int32_t moe4j_cuda_route_topk(const float *scores, const float *bias, int64_t tokens,
                                       int64_t experts, int32_t k, int32_t renormalize,
                                       int32_t *expert_ids, float *weights, void *stream);
/* Backward of route_topk: d_scores [T, E] (overwritten; zero for unselected experts) from
 * d_weights [T, k], through the renormalization when renormalize != 0. */
MOE4J_API int32_t moe4j_cuda_route_topk_backward(const float *scores, const int32_t *expert_ids,
                                                const float *d_weights, float *d_scores,
                                                int64_t tokens, int64_t experts, int32_t k,
                                                int32_t renormalize, void *stream);
/* Dispatch plan. capacity <= 0: dropless; else each expert keeps at most `capacity` assignments,
 * chosen by priority: higher weight first, then lower token index (then lower rank). Outputs:
 * offsets I64 [E + 1] (rows of expert e in the sorted buffer; offsets[E] = kept assignments);
 * sorted_token I32 [T * k] (token of each sorted row, rows past offsets[E] set to -1);
 * slot_of I32 [T, k] (sorted row of assignment (t, j), or -1 when dropped). Within an expert,
 * rows are in token order (stable). counts I64 [E] (may be NULL): assignments per expert before
 * dropping (load metrics). */
MOE4J_API int32_t moe4j_cuda_route_plan(const int32_t *expert_ids, const float *weights,
                                       int64_t tokens, int64_t experts, int32_t k,
                                       int64_t capacity, int64_t *offsets, int32_t *sorted_token,
                                       int32_t *slot_of, int64_t *counts, void *stream);
/* gather: rows[r, :] = x[sorted_token[r], :] for r < rows (sorted_token[r] >= 0). x [T, H],
 * rows [R, H], dtype F32|BF16. */
MOE4J_API int32_t moe4j_cuda_route_gather(int32_t dtype, const void *x, const int32_t *sorted_token,
                                         void *rows, int64_t num_rows, int64_t tokens,
                                         int64_t hidden, void *stream);
/* gather backward: dx[t, :] (=|+=) sum over j of d_rows[slot_of[t, j], :] (kept slots, j order). */
MOE4J_API int32_t moe4j_cuda_route_gather_backward(int32_t dtype, const void *d_rows,
                                                  const int32_t *slot_of, void *dx,
                                                  int64_t tokens, int32_t k, int64_t num_rows,
                                                  int64_t hidden, int32_t accumulate, void *stream);
/* combine: y[t, :] = sum over j of weights[t, j] * rows[slot_of[t, j], :] (dropped slots add 0;
 * weights NULL = 1, for when the down projection already applied them as row_scale). */
MOE4J_API int32_t moe4j_cuda_route_combine(int32_t dtype, const void *rows, const int32_t *slot_of,
                                          const float *weights, void *y, int64_t tokens,
                                          int32_t k, int64_t num_rows, int64_t hidden, void *stream);
/* combine backward: d_rows[slot, :] = w * dy[t, :] for each kept (t, j); d_weights[t, j] =
 * <dy[t, :], rows[slot, :]> (0 for dropped; d_weights may be NULL). d_rows rows not referenced by
 * any slot are zeroed. */
MOE4J_API int32_t moe4j_cuda_route_combine_backward(int32_t dtype, const void *dy, const void *rows,
                                                   const int32_t *slot_of, const float *weights,
                                                   void *d_rows, float *d_weights,
                                                   int64_t tokens, int32_t k, int64_t num_rows,
                                                   int64_t hidden, void *stream);

/* Expert Choice and balancing: same semantics as the moe4j_cuda_ versions. */
MOE4J_API int32_t moe4j_cuda_route_expert_choice(const float *scores, int64_t tokens,
                                                int64_t experts, int64_t group_size,
                                                int64_t capacity, int64_t *offsets,
                                                int32_t *sorted_token, int32_t *slot_of,
                                                float *weights, int64_t *uncovered, void *stream);
/* Switch/GShard load-balancing loss for token choice: loss = coef * E * sum_e f_e * P_e, f_e =
 * (assignments to e) / (T * k) (from expert_ids, no gradient), P_e = mean over tokens of
 * scores[t, e]. out[0] = loss. d_scores (may be NULL) += coef * E * f_e / T (accumulated, so the
 * caller adds it to the gradient from the weights). */
MOE4J_API int32_t moe4j_cuda_router_balance_loss(const float *scores, const int32_t *expert_ids,
                                                int64_t tokens, int64_t experts, int32_t k,
                                                float coef, float *out, float *d_scores, void *stream);
/* Router z-loss: loss = coef * mean_t(logsumexp(logits[t, :])^2); out[0] = loss; d_logits (may be
 * NULL) += coef * 2 * lse_t / T * softmax(logits[t, :]). */
MOE4J_API int32_t moe4j_cuda_router_z_loss(const float *logits, int64_t tokens, int64_t experts,
                                          float coef, float *out, float *d_logits, void *stream);
/* Aux-loss-free balancing (bias used for selection only): after a step, with counts I64 [E] from
 * route_plan, bias[e] += rate * sign(mean_count - counts[e]) (sign(0) = 0). */
MOE4J_API int32_t moe4j_cuda_router_bias_update(float *bias, const int64_t *counts, int64_t experts,
                                               float rate, void *stream);

/* RoPE: same semantics as the moe4j_cpu_ versions. */
MOE4J_API int32_t moe4j_cuda_rope_forward(int32_t dtype, const void *x, void *out,
                                          const int32_t *positions, int64_t tokens, int64_t heads,
                                          int64_t head_dim, float theta, void *stream);
MOE4J_API int32_t moe4j_cuda_rope_backward(int32_t dtype, const void *dout, void *dx,
                                           const int32_t *positions, int64_t tokens, int64_t heads,
                                           int64_t head_dim, float theta, void *stream);

/* KV-cache decode: same semantics as the moe4j_cpu_ versions (lengths on the device). */
MOE4J_API int32_t moe4j_cuda_attention_decode_workspace_bytes(int64_t batch, int64_t new_tokens,
                                                              int64_t q_heads, int64_t head_dim,
                                                              int32_t split_k, int64_t *out_bytes);
MOE4J_API int32_t moe4j_cuda_attention_decode(int32_t dtype, const void *q, const void *k_new,
                                              const void *v_new, void *k_cache, void *v_cache,
                                              const int32_t *lengths, void *out, int64_t batch,
                                              int64_t new_tokens, int64_t max_seq,
                                              int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                                              int64_t window, float scale, int32_t split_k,
                                              void *workspace, int64_t workspace_bytes,
                                              void *stream);

/* Flash attention on CUDA: same semantics as moe4j_cpu_attention_forward / _backward /
 * _backward_workspace_bytes; q, k, v, out, lse, cu_seqlens, gradients and workspace are device
 * memory. The host never reads cu_seqlens, so it cannot reject a bad one: the kernels clamp each
 * sequence to [0, T], treat an empty or reversed range as empty and never access memory outside
 * the buffers, but the results of an invalid cu_seqlens are unspecified (rows that belong to no
 * sequence get out = 0, lse = -inf, zero gradients). BF16 with head_dim 64 or 128 (16-byte aligned
 * buffers) runs FlashAttention-2 on tensor cores (bf16 P and dS into the second GEMMs, f32
 * accumulation; deterministic backward without atomics; compiled, not yet verified on a GPU);
 * everything else, and moe4j_cuda_use_reference_kernels(1), runs the simple reference kernels. */
MOE4J_API int32_t moe4j_cuda_attention_forward(int32_t dtype, const void *q, const void *k,
                                               const void *v, void *out, float *lse,
                                               const int32_t *cu_seqlens, int64_t batch,
                                               int64_t seq, int64_t q_heads, int64_t kv_heads,
                                               int64_t head_dim, int32_t causal, int64_t window,
                                               float scale, void *stream);
MOE4J_API int32_t moe4j_cuda_attention_backward_workspace_bytes(int64_t batch, int64_t seq,
                                                                int64_t q_heads, int64_t head_dim,
                                                                int64_t *out_bytes);
MOE4J_API int32_t moe4j_cuda_attention_backward(int32_t dtype, const void *q, const void *k,
                                                const void *v, const void *out, const void *dout,
                                                const float *lse, void *dq, void *dk, void *dv,
                                                const int32_t *cu_seqlens, int64_t batch,
                                                int64_t seq, int64_t q_heads, int64_t kv_heads,
                                                int64_t head_dim, int32_t causal, int64_t window,
                                                float scale, void *workspace,
                                                int64_t workspace_bytes, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* MOE4J_H */
