/*
 * The argument rules of flash attention (see attention_args.h). Sizes are checked first; element
 * and byte counts are only formed once product_fits has passed for every factor.
 */
#include "attention_args.h"

namespace moe4j {

namespace {

/* Element counts of the tensors: q/out/dq, k/v/dk/dv, lse. */
struct AttnCounts {
  int64_t q, kv, lse;
};

/* The shape checks both directions share; fills `n` once every product is known to fit. */
void check_attention_shape(ArgCheck &chk, int32_t dtype, int64_t batch, int64_t seq,
                           int64_t q_heads, int64_t kv_heads, int64_t head_dim, float scale,
                           AttnCounts *n) {
  chk.float_dtype("dtype", dtype).non_negative("batch", batch).non_negative("seq", seq)
      .at_least("q_heads", q_heads, 1).at_least("kv_heads", kv_heads, 1)
      .require(kv_heads < 1 || q_heads % kv_heads == 0, /* kv_heads < 1 failed above */
               "q_heads (%lld) must be a multiple of kv_heads (%lld)", (long long)q_heads,
               (long long)kv_heads)
      .require(head_dim >= 2 && head_dim <= kAttnMaxHeadDim && head_dim % 2 == 0,
               "head_dim must be even and in [2, %lld], got %lld", (long long)kAttnMaxHeadDim,
               (long long)head_dim)
      .positive_finite("scale", scale).product_fits("batch * seq", batch, seq);
  if (chk.failed()) return;
  const int64_t tokens = batch * seq;
  chk.product_fits("batch * seq * q_heads", tokens, q_heads);
  if (chk.failed()) return;
  chk.product_fits("batch * seq * q_heads * head_dim", tokens * q_heads, head_dim);
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

}  // namespace

void check_attention_forward(ArgCheck &chk, int32_t dtype, const void *q, const void *k,
                             const void *v, void *out, float *lse, int64_t batch, int64_t seq,
                             int64_t q_heads, int64_t kv_heads, int64_t head_dim, int32_t causal,
                             int64_t window, float scale) {
  AttnCounts n{0, 0, 0};
  check_attention_shape(chk, dtype, batch, seq, q_heads, kv_heads, head_dim, scale, &n);
  if (chk.failed()) return;
  chk.buffer("q", q, n.q, dtype).buffer("k", k, n.kv, dtype).buffer("v", v, n.kv, dtype)
      .buffer("out", out, n.q, dtype).buffer("lse", lse, n.lse, MOE4J_DTYPE_F32);
  if (chk.failed()) return;
  const int64_t es = dtype_size(dtype), qb = n.q * es, kvb = n.kv * es, lb = n.lse * 4;
  disjoint(chk, "out", out, qb, "q", q, qb);
  disjoint(chk, "out", out, qb, "k", k, kvb);
  disjoint(chk, "out", out, qb, "v", v, kvb);
  disjoint(chk, "lse", lse, lb, "q", q, qb);
  disjoint(chk, "lse", lse, lb, "k", k, kvb);
  disjoint(chk, "lse", lse, lb, "v", v, kvb);
  disjoint(chk, "out", out, qb, "lse", lse, lb);
}

void check_attention_backward(ArgCheck &chk, int32_t dtype, const void *q, const void *k,
                              const void *v, const void *out, const void *dout, const float *lse,
                              void *dq, void *dk, void *dv, int64_t batch, int64_t seq,
                              int64_t q_heads, int64_t kv_heads, int64_t head_dim, int32_t causal,
                              int64_t window, float scale) {
  AttnCounts n{0, 0, 0};
  check_attention_shape(chk, dtype, batch, seq, q_heads, kv_heads, head_dim, scale, &n);
  if (chk.failed()) return;
  chk.buffer("q", q, n.q, dtype).buffer("k", k, n.kv, dtype).buffer("v", v, n.kv, dtype)
      .buffer("out", out, n.q, dtype).buffer("dout", dout, n.q, dtype)
      .buffer("lse", lse, n.lse, MOE4J_DTYPE_F32).buffer("dq", dq, n.q, dtype)
      .buffer("dk", dk, n.kv, dtype).buffer("dv", dv, n.kv, dtype);
  if (chk.failed()) return;
  const int64_t es = dtype_size(dtype), qb = n.q * es, kvb = n.kv * es, lb = n.lse * 4;
  const char *in_names[] = {"q", "k", "v", "out", "dout", "lse"};
  const void *in_ptrs[] = {q, k, v, out, dout, lse};
  const int64_t in_bytes[] = {qb, kvb, kvb, qb, qb, lb};
  const char *out_names[] = {"dq", "dk", "dv"};
  const void *out_ptrs[] = {dq, dk, dv};
  const int64_t out_bytes[] = {qb, kvb, kvb};
  for (int o = 0; o < 3; o++) {
    for (int i = 0; i < 6; i++)
      disjoint(chk, out_names[o], out_ptrs[o], out_bytes[o], in_names[i], in_ptrs[i], in_bytes[i]);
    for (int p = o + 1; p < 3; p++)
      disjoint(chk, out_names[o], out_ptrs[o], out_bytes[o], out_names[p], out_ptrs[p],
               out_bytes[p]);
  }
}

}  // namespace moe4j
