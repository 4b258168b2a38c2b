/*
 * The argument rules of KV-cache decode (see decode_args.h). Sizes are checked first; element and
 * byte counts are only formed once product_fits has passed for every factor.
 */
#include "decode_args.h"

#include "decode_math.h"

namespace moe4j {

namespace {

constexpr int64_t kDecodeMaxHeadDim = 256;

/* Output `a` must not overlap buffer `b`. */
void disjoint(ArgCheck &chk, const char *a_name, const void *a, int64_t a_bytes,
              const char *b_name, const void *b, int64_t b_bytes) {
  chk.require(!ranges_overlap(a, a_bytes, b, b_bytes), "%s and %s overlap", a_name, b_name);
}

/* The rules of the workspace size (shared by both functions): batch, new_tokens >= 0;
 * q_heads >= 1 (checked by the caller for attention_decode); head_dim; split_k; the partial count
 * and float count fit. */
void check_workspace_shape(ArgCheck &chk, int64_t batch, int64_t new_tokens, int64_t q_heads,
                           int64_t head_dim, int32_t split_k) {
  chk.non_negative("batch", batch).non_negative("new_tokens", new_tokens)
      .at_least("q_heads", q_heads, 1)
      .require(head_dim >= 2 && head_dim <= kDecodeMaxHeadDim && head_dim % 2 == 0,
               "head_dim must be even and in [2, %lld], got %lld", (long long)kDecodeMaxHeadDim,
               (long long)head_dim)
      .require(split_k >= 1 && split_k <= kDecodeMaxSplitK, "split_k must be in [1, %d], got %d",
               (int)kDecodeMaxSplitK, (int)split_k)
      .product_fits("batch * new_tokens", batch, new_tokens);
  if (chk.failed()) return;
  chk.product_fits("batch * new_tokens * q_heads", batch * new_tokens, q_heads);
  if (chk.failed()) return;
  chk.product_fits("batch * new_tokens * q_heads * split_k", batch * new_tokens * q_heads,
                   split_k);
  if (chk.failed()) return;
  chk.product_fits("workspace floats (partials * (head_dim + 2))",
                   batch * new_tokens * q_heads * split_k, head_dim + 2);
}

}  // namespace

void check_attention_decode_workspace_bytes(ArgCheck &chk, int64_t batch, int64_t new_tokens,
                                            int64_t q_heads, int64_t head_dim, int32_t split_k,
                                            const int64_t *out_bytes) {
  chk.require(out_bytes != nullptr, "out_bytes is NULL");
  check_workspace_shape(chk, batch, new_tokens, q_heads, head_dim, split_k);
}

int64_t attention_decode_workspace_bytes(int64_t batch, int64_t new_tokens, int64_t q_heads,
                                         int64_t head_dim, int32_t split_k) {
  return decode_workspace_floats(batch, new_tokens, q_heads, head_dim, split_k) *
         (int64_t)sizeof(float);
}

void check_attention_decode(ArgCheck &chk, int32_t dtype, const void *q, const void *k_new,
                            const void *v_new, void *k_cache, void *v_cache,
                            const int32_t *lengths, void *out, int64_t batch, int64_t new_tokens,
                            int64_t max_seq, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                            int64_t window, float scale, int32_t split_k, void *workspace,
                            int64_t workspace_bytes) {
  (void)window; /* any value: <= 0 means no window */
  chk.float_dtype("dtype", dtype).non_negative("batch", batch)
      .non_negative("new_tokens", new_tokens)
      .require(max_seq >= new_tokens, "max_seq (%lld) must be >= new_tokens (%lld)",
               (long long)max_seq, (long long)new_tokens)
      .at_least("q_heads", q_heads, 1).at_least("kv_heads", kv_heads, 1)
      .require(kv_heads < 1 || q_heads % kv_heads == 0, /* kv_heads < 1 failed above */
               "q_heads (%lld) must be a multiple of kv_heads (%lld)", (long long)q_heads,
               (long long)kv_heads)
      .positive_finite("scale", scale);
  check_workspace_shape(chk, batch, new_tokens, q_heads, head_dim, split_k);
  chk.product_fits("batch * max_seq", batch, max_seq);
  if (chk.failed()) return;
  chk.product_fits("batch * max_seq * q_heads", batch * max_seq, q_heads);
  if (chk.failed()) return;
  chk.product_fits("batch * max_seq * q_heads * head_dim", batch * max_seq * q_heads, head_dim);
  if (chk.failed()) return;
  /* new_tokens <= max_seq and kv_heads <= q_heads, so every count below fits */
  const int64_t nq = batch * new_tokens * q_heads * head_dim;
  const int64_t nkv = batch * new_tokens * kv_heads * head_dim;
  const int64_t ncache = batch * max_seq * kv_heads * head_dim;
  const int64_t required = attention_decode_workspace_bytes(batch, new_tokens, q_heads, head_dim,
                                                            split_k);
  chk.buffer("q", q, nq, dtype).buffer("k_new", k_new, nkv, dtype)
      .buffer("v_new", v_new, nkv, dtype).buffer("k_cache", k_cache, ncache, dtype)
      .buffer("v_cache", v_cache, ncache, dtype).buffer("lengths", lengths, batch, MOE4J_DTYPE_I32)
      .buffer("out", out, nq, dtype)
      .require(workspace_bytes >= required,
               "workspace_bytes (%lld) is smaller than the required %lld bytes",
               (long long)workspace_bytes, (long long)required)
      .buffer("workspace", workspace, required / (int64_t)sizeof(float), MOE4J_DTYPE_F32);
  if (chk.failed()) return;
  const int64_t es = dtype_size(dtype), qb = nq * es, kvb = nkv * es, cb = ncache * es,
                lb = batch * 4, wb = required;
  const char *in_names[] = {"q", "k_new", "v_new", "lengths"};
  const void *in_ptrs[] = {q, k_new, v_new, lengths};
  const int64_t in_bytes[] = {qb, kvb, kvb, lb};
  const char *out_names[] = {"k_cache", "v_cache", "out", "workspace"};
  const void *out_ptrs[] = {k_cache, v_cache, out, workspace};
  const int64_t out_bytes[] = {cb, cb, qb, wb};
  for (int o = 0; o < 4; o++) {
    for (int i = 0; i < 4; i++)
      disjoint(chk, out_names[o], out_ptrs[o], out_bytes[o], in_names[i], in_ptrs[i], in_bytes[i]);
    for (int p = o + 1; p < 4; p++)
      disjoint(chk, out_names[o], out_ptrs[o], out_bytes[o], out_names[p], out_ptrs[p],
               out_bytes[p]);
  }
}

}  // namespace moe4j
