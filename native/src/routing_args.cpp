/*
 * The argument rules of the routing ops (see routing_args.h). Compiled into libmoe4j_cpu and
 * meant for libmoe4j_cuda too. Each chain checks sizes first and stops there on failure, so byte
 * counts are only formed once product_fits has passed.
 */
#include "routing_args.h"

namespace moe4j {

namespace {

constexpr int64_t kMaxExperts = int64_t(1) << 16;
constexpr int64_t kMaxSlots = INT32_MAX; /* slots and tokens are I32 */

void check_experts(ArgCheck &chk, int64_t experts) {
  chk.require(experts >= 1 && experts <= kMaxExperts, "experts must be in [1, %lld], got %lld",
              (long long)kMaxExperts, (long long)experts);
}

/* k of an op that knows the number of experts. */
void check_k_experts(ArgCheck &chk, int32_t k, int64_t experts) {
  chk.require(k >= 1 && k <= experts, "k must be in [1, experts = %lld], got %d",
              (long long)experts, k);
}

/* k of an op without an experts argument (gather backward, combine). */
void check_k(ArgCheck &chk, int32_t k) {
  chk.require(k >= 1 && k <= kMaxExperts, "k must be in [1, %lld], got %d",
              (long long)kMaxExperts, k);
}

void check_score_fn(ArgCheck &chk, int32_t score_fn) {
  chk.require(score_fn == 0 || score_fn == 1, "score_fn must be 0 (softmax) or 1 (sigmoid), got %d",
              score_fn);
}

/* tokens * k assignments must fit the I32 slot and token indices. Call after product_fits. */
void check_slots(ArgCheck &chk, int64_t tokens, int32_t k) {
  if (chk.failed()) return;
  chk.require(tokens * k <= kMaxSlots, "tokens * k = %lld must be <= %lld (slots are I32)",
              (long long)(tokens * k), (long long)kMaxSlots);
}

/* Output `a` must not overlap buffer `b`. */
void disjoint(ArgCheck &chk, const char *a_name, const void *a, int64_t a_bytes,
              const char *b_name, const void *b, int64_t b_bytes) {
  chk.require(!ranges_overlap(a, a_bytes, b, b_bytes), "%s and %s overlap", a_name, b_name);
}

/* The shared size rules of gather backward / combine / combine backward. */
void check_slot_sizes(ArgCheck &chk, int32_t dtype, int64_t tokens, int32_t k, int64_t num_rows,
                      int64_t hidden) {
  chk.float_dtype("dtype", dtype).non_negative("tokens", tokens);
  check_k(chk, k);
  chk.non_negative("num_rows", num_rows).non_negative("hidden", hidden)
      .product_fits("tokens * k", tokens, k).product_fits("tokens * hidden", tokens, hidden)
      .product_fits("num_rows * hidden", num_rows, hidden);
  check_slots(chk, tokens, k);
}

}  // namespace

/* ---- scores ---- */

void check_router_scores(ArgCheck &chk, const float *logits, float *scores, int64_t tokens,
                         int64_t experts, int32_t score_fn) {
  chk.non_negative("tokens", tokens);
  check_experts(chk, experts);
  check_score_fn(chk, score_fn);
  chk.product_fits("tokens * experts", tokens, experts);
  if (chk.failed()) return;
  const int64_t n = tokens * experts;
  chk.buffer("logits", logits, n, MOE4J_DTYPE_F32).buffer("scores", scores, n, MOE4J_DTYPE_F32)
      .no_overlap("logits", logits, "scores", scores, n * 4, true);
}

void check_router_scores_backward(ArgCheck &chk, const float *scores, const float *d_scores,
                                  float *d_logits, int64_t tokens, int64_t experts,
                                  int32_t score_fn) {
  chk.non_negative("tokens", tokens);
  check_experts(chk, experts);
  check_score_fn(chk, score_fn);
  chk.product_fits("tokens * experts", tokens, experts);
  if (chk.failed()) return;
  const int64_t n = tokens * experts;
  chk.buffer("scores", scores, n, MOE4J_DTYPE_F32)
      .buffer("d_scores", d_scores, n, MOE4J_DTYPE_F32)
      .buffer("d_logits", d_logits, n, MOE4J_DTYPE_F32)
      .no_overlap("d_logits", d_logits, "d_scores", d_scores, n * 4, true)
      .no_overlap("d_logits", d_logits, "scores", scores, n * 4, false);
}

/* ---- top-k ---- */

void check_route_topk(ArgCheck &chk, const float *scores, const float *bias, int64_t tokens,
                      int64_t experts, int32_t k, int32_t renormalize, int32_t *expert_ids,
                      float *weights) {
  chk.non_negative("tokens", tokens);
  check_experts(chk, experts);
  check_k_experts(chk, k, experts);
  chk.product_fits("tokens * experts", tokens, experts).product_fits("tokens * k", tokens, k);
  check_slots(chk, tokens, k);
  if (chk.failed()) return;
  const int64_t n = tokens * experts, nk = tokens * k;
  chk.buffer("scores", scores, n, MOE4J_DTYPE_F32)
      .buffer("bias", bias, bias != nullptr ? experts : 0, MOE4J_DTYPE_F32)
      .buffer("expert_ids", expert_ids, nk, MOE4J_DTYPE_I32)
      .buffer("weights", weights, nk, MOE4J_DTYPE_F32);
  disjoint(chk, "expert_ids", expert_ids, nk * 4, "weights", weights, nk * 4);
  disjoint(chk, "expert_ids", expert_ids, nk * 4, "scores", scores, n * 4);
  disjoint(chk, "weights", weights, nk * 4, "scores", scores, n * 4);
  disjoint(chk, "expert_ids", expert_ids, nk * 4, "bias", bias, bias != nullptr ? experts * 4 : 0);
  disjoint(chk, "weights", weights, nk * 4, "bias", bias, bias != nullptr ? experts * 4 : 0);
}

void check_route_topk_backward(ArgCheck &chk, const float *scores, const int32_t *expert_ids,
                               const float *d_weights, float *d_scores, int64_t tokens,
                               int64_t experts, int32_t k, int32_t renormalize) {
  chk.non_negative("tokens", tokens);
  check_experts(chk, experts);
  check_k_experts(chk, k, experts);
  chk.product_fits("tokens * experts", tokens, experts).product_fits("tokens * k", tokens, k);
  check_slots(chk, tokens, k);
  if (chk.failed()) return;
  const int64_t n = tokens * experts, nk = tokens * k;
  chk.buffer("scores", scores, n, MOE4J_DTYPE_F32)
      .buffer("expert_ids", expert_ids, nk, MOE4J_DTYPE_I32)
      .buffer("d_weights", d_weights, nk, MOE4J_DTYPE_F32)
      .buffer("d_scores", d_scores, n, MOE4J_DTYPE_F32);
  disjoint(chk, "d_scores", d_scores, n * 4, "scores", scores, n * 4);
  disjoint(chk, "d_scores", d_scores, n * 4, "expert_ids", expert_ids, nk * 4);
  disjoint(chk, "d_scores", d_scores, n * 4, "d_weights", d_weights, nk * 4);
}

/* ---- plan ---- */

void check_route_plan(ArgCheck &chk, const int32_t *expert_ids, const float *weights,
                      int64_t tokens, int64_t experts, int32_t k, int64_t capacity,
                      int64_t *offsets, int32_t *sorted_token, int32_t *slot_of, int64_t *counts) {
  chk.non_negative("tokens", tokens);
  check_experts(chk, experts);
  check_k_experts(chk, k, experts);
  chk.product_fits("tokens * k", tokens, k);
  check_slots(chk, tokens, k);
  if (chk.failed()) return;
  const int64_t nk = tokens * k, ob = (experts + 1) * 8, cb = counts != nullptr ? experts * 8 : 0;
  chk.buffer("expert_ids", expert_ids, nk, MOE4J_DTYPE_I32)
      .buffer("weights", weights, nk, MOE4J_DTYPE_F32)
      .buffer("offsets", offsets, experts + 1, MOE4J_DTYPE_I64)
      .buffer("sorted_token", sorted_token, nk, MOE4J_DTYPE_I32)
      .buffer("slot_of", slot_of, nk, MOE4J_DTYPE_I32)
      .buffer("counts", counts, counts != nullptr ? experts : 0, MOE4J_DTYPE_I64);
  struct Range {
    const char *name;
    const void *ptr;
    int64_t bytes;
  };
  const Range outputs[] = {{"offsets", offsets, ob},
                           {"sorted_token", sorted_token, nk * 4},
                           {"slot_of", slot_of, nk * 4},
                           {"counts", counts, cb}};
  const Range inputs[] = {{"expert_ids", expert_ids, nk * 4}, {"weights", weights, nk * 4}};
  for (int a = 0; a < 4; a++) {
    for (int b = a + 1; b < 4; b++)
      disjoint(chk, outputs[a].name, outputs[a].ptr, outputs[a].bytes, outputs[b].name,
               outputs[b].ptr, outputs[b].bytes);
    for (const Range &in : inputs)
      disjoint(chk, outputs[a].name, outputs[a].ptr, outputs[a].bytes, in.name, in.ptr, in.bytes);
  }
}

/* ---- gather / combine ---- */

void check_route_gather(ArgCheck &chk, int32_t dtype, const void *x, const int32_t *sorted_token,
                        void *rows, int64_t num_rows, int64_t tokens, int64_t hidden) {
  chk.float_dtype("dtype", dtype).non_negative("num_rows", num_rows)
      .non_negative("tokens", tokens).non_negative("hidden", hidden)
      .product_fits("tokens * hidden", tokens, hidden)
      .product_fits("num_rows * hidden", num_rows, hidden);
  if (chk.failed()) return;
  const int64_t es = dtype_size(dtype);
  const int64_t nx = tokens * hidden, nr = num_rows * hidden;
  chk.buffer("x", x, nx, dtype).buffer("sorted_token", sorted_token, num_rows, MOE4J_DTYPE_I32)
      .buffer("rows", rows, nr, dtype);
  disjoint(chk, "rows", rows, nr * es, "x", x, nx * es);
  disjoint(chk, "rows", rows, nr * es, "sorted_token", sorted_token, num_rows * 4);
}

void check_route_gather_backward(ArgCheck &chk, int32_t dtype, const void *d_rows,
                                 const int32_t *slot_of, void *dx, int64_t tokens, int32_t k,
                                 int64_t num_rows, int64_t hidden, int32_t accumulate) {
  check_slot_sizes(chk, dtype, tokens, k, num_rows, hidden);
  if (chk.failed()) return;
  const int64_t es = dtype_size(dtype);
  const int64_t nk = tokens * k, nx = tokens * hidden, nr = num_rows * hidden;
  chk.buffer("d_rows", d_rows, nr, dtype).buffer("slot_of", slot_of, nk, MOE4J_DTYPE_I32)
      .buffer("dx", dx, nx, dtype);
  disjoint(chk, "dx", dx, nx * es, "d_rows", d_rows, nr * es);
  disjoint(chk, "dx", dx, nx * es, "slot_of", slot_of, nk * 4);
}

void check_route_combine(ArgCheck &chk, int32_t dtype, const void *rows, const int32_t *slot_of,
                         const float *weights, void *y, int64_t tokens, int32_t k,
                         int64_t num_rows, int64_t hidden) {
  check_slot_sizes(chk, dtype, tokens, k, num_rows, hidden);
  if (chk.failed()) return;
  const int64_t es = dtype_size(dtype);
  const int64_t nk = tokens * k, ny = tokens * hidden, nr = num_rows * hidden;
  const int64_t wb = weights != nullptr ? nk * 4 : 0;
  chk.buffer("rows", rows, nr, dtype).buffer("slot_of", slot_of, nk, MOE4J_DTYPE_I32)
      .buffer("weights", weights, weights != nullptr ? nk : 0, MOE4J_DTYPE_F32)
      .buffer("y", y, ny, dtype);
  disjoint(chk, "y", y, ny * es, "rows", rows, nr * es);
  disjoint(chk, "y", y, ny * es, "slot_of", slot_of, nk * 4);
  disjoint(chk, "y", y, ny * es, "weights", weights, wb);
}

void check_route_combine_backward(ArgCheck &chk, int32_t dtype, const void *dy, const void *rows,
                                  const int32_t *slot_of, const float *weights, void *d_rows,
                                  float *d_weights, int64_t tokens, int32_t k, int64_t num_rows,
                                  int64_t hidden) {
  check_slot_sizes(chk, dtype, tokens, k, num_rows, hidden);
  if (chk.failed()) return;
  const int64_t es = dtype_size(dtype);
  const int64_t nk = tokens * k, ny = tokens * hidden, nr = num_rows * hidden;
  const int64_t wb = weights != nullptr ? nk * 4 : 0, dwb = d_weights != nullptr ? nk * 4 : 0;
  chk.buffer("dy", dy, ny, dtype).buffer("rows", rows, nr, dtype)
      .buffer("slot_of", slot_of, nk, MOE4J_DTYPE_I32)
      .buffer("weights", weights, weights != nullptr ? nk : 0, MOE4J_DTYPE_F32)
      .buffer("d_rows", d_rows, nr, dtype)
      .buffer("d_weights", d_weights, d_weights != nullptr ? nk : 0, MOE4J_DTYPE_F32);
  disjoint(chk, "d_rows", d_rows, nr * es, "dy", dy, ny * es);
  disjoint(chk, "d_rows", d_rows, nr * es, "rows", rows, nr * es);
  disjoint(chk, "d_rows", d_rows, nr * es, "slot_of", slot_of, nk * 4);
  disjoint(chk, "d_rows", d_rows, nr * es, "weights", weights, wb);
  disjoint(chk, "d_rows", d_rows, nr * es, "d_weights", d_weights, dwb);
  disjoint(chk, "d_weights", d_weights, dwb, "dy", dy, ny * es);
  disjoint(chk, "d_weights", d_weights, dwb, "rows", rows, nr * es);
  disjoint(chk, "d_weights", d_weights, dwb, "slot_of", slot_of, nk * 4);
  disjoint(chk, "d_weights", d_weights, dwb, "weights", weights, wb);
}

/* ---- expert choice ---- */

void check_route_expert_choice(ArgCheck &chk, const float *scores, int64_t tokens, int64_t experts,
                               int64_t group_size, int64_t capacity, int64_t *offsets,
                               int32_t *sorted_token, int32_t *slot_of, float *weights,
                               int64_t *uncovered) {
  chk.non_negative("tokens", tokens);
  check_experts(chk, experts);
  chk.at_least("group_size", group_size, 1);
  if (chk.failed()) return;
  chk.require(tokens % group_size == 0, "tokens = %lld must be a multiple of group_size = %lld",
              (long long)tokens, (long long)group_size);
  chk.require(capacity >= 0 && capacity <= group_size,
              "capacity must be in [0, group_size = %lld], got %lld", (long long)group_size,
              (long long)capacity);
  chk.product_fits("tokens * experts", tokens, experts);
  if (chk.failed()) return;
  const int64_t n = tokens * experts;
  chk.require(n <= kMaxSlots, "tokens * experts = %lld must be <= %lld (slots are I32)",
              (long long)n, (long long)kMaxSlots);
  /* groups * capacity <= tokens, so this follows from the rule above; kept as the stated rule */
  const int64_t rows = experts * (tokens / group_size * capacity);
  chk.require(rows <= kMaxSlots,
              "experts * groups * capacity = %lld must be <= %lld (slots are I32)",
              (long long)rows, (long long)kMaxSlots);
  if (chk.failed()) return;
  const int64_t ub = uncovered != nullptr ? 8 : 0;
  chk.buffer("scores", scores, n, MOE4J_DTYPE_F32)
      .buffer("offsets", offsets, experts + 1, MOE4J_DTYPE_I64)
      .buffer("sorted_token", sorted_token, rows, MOE4J_DTYPE_I32)
      .buffer("slot_of", slot_of, n, MOE4J_DTYPE_I32)
      .buffer("weights", weights, n, MOE4J_DTYPE_F32)
      .buffer("uncovered", uncovered, uncovered != nullptr ? 1 : 0, MOE4J_DTYPE_I64);
  struct Range {
    const char *name;
    const void *ptr;
    int64_t bytes;
  };
  const Range outputs[] = {{"offsets", offsets, (experts + 1) * 8},
                           {"sorted_token", sorted_token, rows * 4},
                           {"slot_of", slot_of, n * 4},
                           {"weights", weights, n * 4},
                           {"uncovered", uncovered, ub}};
  constexpr int kOutputs = sizeof(outputs) / sizeof(outputs[0]);
  for (int a = 0; a < kOutputs; a++) {
    for (int b = a + 1; b < kOutputs; b++)
      disjoint(chk, outputs[a].name, outputs[a].ptr, outputs[a].bytes, outputs[b].name,
               outputs[b].ptr, outputs[b].bytes);
    disjoint(chk, outputs[a].name, outputs[a].ptr, outputs[a].bytes, "scores", scores, n * 4);
  }
}

}  // namespace moe4j
