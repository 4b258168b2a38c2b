/*
 * The argument rules of flash attention (see attention_args.h). Sizes are checked first; element
 * and byte counts are only formed once product_fits has passed for every factor.
 */
#include "attention_args.h"

namespace moe4j {

namespace {

/* Element counts of the tensors: q/out/dq, k/v/dk/dv, lse (and the workspace floats). */
struct AttnCounts {
  int64_t q, kv, lse;
};

void check_head_dim(ArgCheck &chk, int64_t head_dim) {
  chk.require(head_dim >= 2 && head_dim <= kAttnMaxHeadDim && head_dim % 2 == 0,
              "head_dim must be even and in [2, %lld], got %lld", (long long)kAttnMaxHeadDim,
              (long long)head_dim);
}

/* The shape checks both directions share; fills `n` once every product is known to fit. The
 * tensors hold `tokens` rows: batch * seq, or seq (= T) for a varlen batch. */
void check_attention_shape(ArgCheck &chk, int32_t dtype, const int32_t *cu_seqlens,
                           int64_t batch, int64_t seq, int64_t q_heads, int64_t kv_heads,
                           int64_t head_dim, float scale, AttnCounts *n) {
  chk.float_dtype("dtype", dtype).non_negative("batch", batch).non_negative("seq", seq)
      .at_least("q_heads", q_heads, 1).at_least("kv_heads", kv_heads, 1)
      .require(kv_heads < 1 || q_heads % kv_heads == 0, /* kv_heads < 1 failed above */
               "q_heads (%lld) must be a multiple of kv_heads (%lld)", (long long)q_heads,
               (long long)kv_heads);
  check_head_dim(chk, head_dim);
  chk.positive_finite("scale", scale);
  if (chk.failed()) return;
  int64_t tokens = seq;
  if (cu_seqlens != nullptr) {
    chk.require(seq <= (int64_t)INT32_MAX,
                "seq (%lld, the packed token count) must be <= %lld with cu_seqlens (int32 "
                "offsets)", (long long)seq, (long long)INT32_MAX)
        .require(batch < (int64_t)INT32_MAX,
                 "batch (%lld) must be < %lld with cu_seqlens (int32 offsets)", (long long)batch,
                 (long long)INT32_MAX)
        .buffer("cu_seqlens", cu_seqlens, batch + 1, MOE4J_DTYPE_I32);
  } else {
    chk.product_fits("batch * seq", batch, seq);
    if (chk.failed()) return;
    tokens = batch * seq;
  }
  if (chk.failed()) return;
  chk.product_fits("tokens * q_heads", tokens, q_heads);
  if (chk.failed()) return;
  chk.product_fits("tokens * q_heads * head_dim", tokens * q_heads, head_dim);
  if (chk.failed()) return;
  /* kv_heads <= q_heads and head_dim >= 2, so the k/v and lse counts fit too */
  n->q = tokens * q_heads * head_dim;
  n->kv = tokens * kv_heads * head_dim;
  n->lse = tokens * q_heads;
}

/* Output `a` must not overlap buffer `b`. */
void disjoint(ArgCheck &chk, const char *a_name, const void *a, int64_t a_bytes,
              const char *b_name, const void *b, int64_t b_bytes) {
  chk.require(!ranges_overlap(a, a_bytes, b, b_bytes), "%s and %s overlap", a_name, b_name);
}

/* Every output against every input and every other output. */
void check_disjoint(ArgCheck &chk, int n_in, const char *const *in_names,
                    const void *const *in_ptrs, const int64_t *in_bytes, int n_out,
                    const char *const *out_names, const void *const *out_ptrs,
                    const int64_t *out_bytes) {
  for (int o = 0; o < n_out; o++) {
    for (int i = 0; i < n_in; i++)
      disjoint(chk, out_names[o], out_ptrs[o], out_bytes[o], in_names[i], in_ptrs[i], in_bytes[i]);
    for (int p = o + 1; p < n_out; p++)
      disjoint(chk, out_names[o], out_ptrs[o], out_bytes[o], out_names[p], out_ptrs[p],
               out_bytes[p]);
  }
}

int64_t cu_bytes(const int32_t *cu_seqlens, int64_t batch) {
  return cu_seqlens == nullptr ? 0 : (batch + 1) * 4;
}

}  // namespace

void check_attention_forward(ArgCheck &chk, int32_t dtype, const void *q, const void *k,
                             const void *v, void *out, float *lse, const int32_t *cu_seqlens,
                             int64_t batch, int64_t seq, int64_t q_heads, int64_t kv_heads,
                             int64_t head_dim, int32_t causal, int64_t window, float scale) {
  (void)causal; /* any value: != 0 means causal */
  (void)window; /* any value: <= 0 means no window */
  AttnCounts n{0, 0, 0};
  check_attention_shape(chk, dtype, cu_seqlens, batch, seq, q_heads, kv_heads, head_dim, scale,
                        &n);
  if (chk.failed()) return;
  chk.buffer("q", q, n.q, dtype).buffer("k", k, n.kv, dtype).buffer("v", v, n.kv, dtype)
      .buffer("out", out, n.q, dtype).buffer("lse", lse, n.lse, MOE4J_DTYPE_F32);
  if (chk.failed()) return;
  const int64_t es = dtype_size(dtype), qb = n.q * es, kvb = n.kv * es, lb = n.lse * 4;
  const char *in_names[] = {"q", "k", "v", "cu_seqlens"};
  const void *in_ptrs[] = {q, k, v, cu_seqlens};
  const int64_t in_bytes[] = {qb, kvb, kvb, cu_bytes(cu_seqlens, batch)};
  const char *out_names[] = {"out", "lse"};
  const void *out_ptrs[] = {out, lse};
  const int64_t out_bytes[] = {qb, lb};
  check_disjoint(chk, 4, in_names, in_ptrs, in_bytes, 2, out_names, out_ptrs, out_bytes);
}

void check_attention_backward(ArgCheck &chk, int32_t dtype, const void *q, const void *k,
                              const void *v, const void *out, const void *dout, const float *lse,
                              void *dq, void *dk, void *dv, const int32_t *cu_seqlens,
                              int64_t batch, int64_t seq, int64_t q_heads, int64_t kv_heads,
                              int64_t head_dim, int32_t causal, int64_t window, float scale,
                              void *workspace, int64_t workspace_bytes) {
  (void)causal;
  (void)window;
  AttnCounts n{0, 0, 0};
  check_attention_shape(chk, dtype, cu_seqlens, batch, seq, q_heads, kv_heads, head_dim, scale,
                        &n);
  if (chk.failed()) return;
  const int64_t need = attention_backward_workspace_need(cu_seqlens, batch, seq, q_heads);
  chk.buffer("q", q, n.q, dtype).buffer("k", k, n.kv, dtype).buffer("v", v, n.kv, dtype)
      .buffer("out", out, n.q, dtype).buffer("dout", dout, n.q, dtype)
      .buffer("lse", lse, n.lse, MOE4J_DTYPE_F32).buffer("dq", dq, n.q, dtype)
      .buffer("dk", dk, n.kv, dtype).buffer("dv", dv, n.kv, dtype)
      .require(workspace_bytes >= need,
               "workspace_bytes (%lld) is smaller than the required %lld bytes "
               "(moe4j_*_attention_backward_workspace_bytes)",
               (long long)workspace_bytes, (long long)need)
      .buffer("workspace", workspace, need / 4, MOE4J_DTYPE_F32);
  if (chk.failed()) return;
  const int64_t es = dtype_size(dtype), qb = n.q * es, kvb = n.kv * es, lb = n.lse * 4;
  const char *in_names[] = {"q", "k", "v", "out", "dout", "lse", "cu_seqlens"};
  const void *in_ptrs[] = {q, k, v, out, dout, lse, cu_seqlens};
  const int64_t in_bytes[] = {qb, kvb, kvb, qb, qb, lb, cu_bytes(cu_seqlens, batch)};
  const char *out_names[] = {"dq", "dk", "dv", "workspace"};
  const void *out_ptrs[] = {dq, dk, dv, workspace};
  const int64_t out_bytes[] = {qb, kvb, kvb, need};
  check_disjoint(chk, 7, in_names, in_ptrs, in_bytes, 4, out_names, out_ptrs, out_bytes);
}

void check_attention_backward_workspace_bytes(ArgCheck &chk, int64_t batch, int64_t seq,
                                              int64_t q_heads, int64_t head_dim,
                                              const int64_t *out_bytes) {
  chk.require(out_bytes != nullptr, "out_bytes is NULL").non_negative("batch", batch)
      .non_negative("seq", seq).at_least("q_heads", q_heads, 1);
  check_head_dim(chk, head_dim);
  chk.product_fits("batch * seq", batch, seq);
  if (chk.failed()) return;
  /* product_fits also keeps 8 * rows in range, so 4 * rows + 255 below cannot overflow */
  chk.product_fits("batch * seq * q_heads", batch * seq, q_heads);
}

int64_t attention_backward_workspace_bytes(int64_t batch, int64_t seq, int64_t q_heads) {
  const int64_t bytes = batch * seq * q_heads * 4;
  return (bytes + 255) / 256 * 256;
}

int64_t attention_backward_workspace_need(const int32_t *cu_seqlens, int64_t batch, int64_t seq,
                                          int64_t q_heads) {
  return attention_backward_workspace_bytes(cu_seqlens == nullptr ? batch : 1, seq, q_heads);
}

void check_cu_seqlens_values(ArgCheck &chk, const int32_t *cu_seqlens, int64_t batch,
                             int64_t seq) {
  if (chk.failed() || cu_seqlens == nullptr) return;
  chk.require(cu_seqlens[0] == 0, "cu_seqlens[0] must be 0, got %d", (int)cu_seqlens[0]);
  for (int64_t b = 0; b < batch && !chk.failed(); b++)
    chk.require(cu_seqlens[b + 1] >= cu_seqlens[b],
                "cu_seqlens must be non-decreasing, got cu_seqlens[%lld] = %d > cu_seqlens[%lld] "
                "= %d", (long long)b, (int)cu_seqlens[b], (long long)(b + 1),
                (int)cu_seqlens[b + 1]);
  chk.require(cu_seqlens[batch] == seq,
              "cu_seqlens[batch] (cu_seqlens[%lld] = %d) must equal seq (%lld, the packed token "
              "count)", (long long)batch, (int)cu_seqlens[batch], (long long)seq);
}

}  // namespace moe4j
