/*
 * The argument rules of the router balancing ops (see router_loss_args.h). Compiled into
 * libmoe4j_cpu and libmoe4j_cuda. Sizes are checked first; byte counts are only formed once
 * product_fits has passed.
 */
#include "router_loss_args.h"

#include <math.h>

namespace moe4j {

namespace {

constexpr int64_t kMaxExperts = int64_t(1) << 16;

void check_experts(ArgCheck &chk, int64_t experts) {
  chk.require(experts >= 1 && experts <= kMaxExperts, "experts must be in [1, %lld], got %lld",
              (long long)kMaxExperts, (long long)experts);
}

void check_non_negative_finite(ArgCheck &chk, const char *name, float value) {
  chk.require(isfinite(value) && value >= 0.0f, "%s must be finite and >= 0, got %g", name,
              (double)value);
}

/* Output `a` must not overlap buffer `b`. */
void disjoint(ArgCheck &chk, const char *a_name, const void *a, int64_t a_bytes,
              const char *b_name, const void *b, int64_t b_bytes) {
  chk.require(!ranges_overlap(a, a_bytes, b, b_bytes), "%s and %s overlap", a_name, b_name);
}

}  // namespace

void check_router_balance_loss(ArgCheck &chk, const float *scores, const int32_t *expert_ids,
                               int64_t tokens, int64_t experts, int32_t k, float coef, float *out,
                               float *d_scores) {
  chk.non_negative("tokens", tokens);
  check_experts(chk, experts);
  chk.require(k >= 1 && k <= experts, "k must be in [1, experts = %lld], got %d",
              (long long)experts, k);
  check_non_negative_finite(chk, "coef", coef);
  chk.product_fits("tokens * experts", tokens, experts).product_fits("tokens * k", tokens, k);
  if (chk.failed()) return;
  const int64_t n = tokens * experts, nk = tokens * k;
  const int64_t db = d_scores != nullptr ? n * 4 : 0;
  chk.buffer("scores", scores, n, MOE4J_DTYPE_F32)
      .buffer("expert_ids", expert_ids, nk, MOE4J_DTYPE_I32)
      .buffer("out", out, 1, MOE4J_DTYPE_F32)
      .buffer("d_scores", d_scores, d_scores != nullptr ? n : 0, MOE4J_DTYPE_F32);
  disjoint(chk, "out", out, 4, "scores", scores, n * 4);
  disjoint(chk, "out", out, 4, "expert_ids", expert_ids, nk * 4);
  disjoint(chk, "out", out, 4, "d_scores", d_scores, db);
  disjoint(chk, "d_scores", d_scores, db, "scores", scores, n * 4);
  disjoint(chk, "d_scores", d_scores, db, "expert_ids", expert_ids, nk * 4);
}

void check_router_z_loss(ArgCheck &chk, const float *logits, int64_t tokens, int64_t experts,
                         float coef, float *out, float *d_logits) {
  chk.non_negative("tokens", tokens);
  check_experts(chk, experts);
  check_non_negative_finite(chk, "coef", coef);
  chk.product_fits("tokens * experts", tokens, experts);
  if (chk.failed()) return;
  const int64_t n = tokens * experts;
  const int64_t db = d_logits != nullptr ? n * 4 : 0;
  chk.buffer("logits", logits, n, MOE4J_DTYPE_F32)
      .buffer("out", out, 1, MOE4J_DTYPE_F32)
      .buffer("d_logits", d_logits, d_logits != nullptr ? n : 0, MOE4J_DTYPE_F32);
  disjoint(chk, "out", out, 4, "logits", logits, n * 4);
  disjoint(chk, "out", out, 4, "d_logits", d_logits, db);
  disjoint(chk, "d_logits", d_logits, db, "logits", logits, n * 4);
}

void check_router_bias_update(ArgCheck &chk, float *bias, const int64_t *counts, int64_t experts,
                              float rate) {
  check_experts(chk, experts);
  check_non_negative_finite(chk, "rate", rate);
  if (chk.failed()) return;
  chk.buffer("bias", bias, experts, MOE4J_DTYPE_F32)
      .buffer("counts", counts, experts, MOE4J_DTYPE_I64);
  disjoint(chk, "bias", bias, experts * 4, "counts", counts, experts * 8);
}

}  // namespace moe4j
