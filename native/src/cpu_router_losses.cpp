/*
 * CPU twin of the router balancing kernels (kernels/router_losses.cu): the Switch/GShard
 * load-balancing loss with its gradient to the scores, the router z-loss with its gradient to the
 * logits, and the aux-loss-free bias update (moe4j.h "Expert Choice routing and balancing").
 *
 * The formulas and their rounding live in kernels/common/router_loss_math.h, shared with the GPU.
 * Gradients are accumulated (d += ...), never overwritten. Deterministic: the reductions run in a
 * fixed order on one thread (the balance loss column sums in kBalanceLanes token lanes, exactly
 * as the GPU's threads do; the z-loss mean in token order in double), and the parallel loops only
 * write elements that one iteration owns, so results are bitwise equal for any thread count.
 */
#include <new>
#include <vector>

#include "cpu_common.h"
#include "router_loss_args.h"
#include "router_loss_math.h"

using namespace moe4j;

namespace {

constexpr int64_t kParallelMin = 4096;

void check_ids(ArgCheck &chk, const int32_t *ids, int64_t n, int64_t experts) {
  if (chk.failed()) return;
  for (int64_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= experts) {
      chk.require(false, "expert_ids[%lld] = %d is out of range [0, %lld)", (long long)i, ids[i],
                  (long long)experts);
      return;
    }
  }
}

void balance_loss(const float *scores, const int32_t *expert_ids, int64_t tokens, int64_t experts,
                  int32_t k, float coef, float *out, float *d_scores) {
  std::vector<int64_t> count(experts, 0);
  for (int64_t a = 0; a < tokens * k; a++) count[expert_ids[a]]++;
  /* column sums in kBalanceLanes token lanes: lane[l * E + e] */
  std::vector<double> lane((size_t)kBalanceLanes * experts, 0.0);
  for (int64_t t = 0; t < tokens; t++) {
    double *acc = lane.data() + (t % kBalanceLanes) * experts;
    const float *row = scores + t * experts;
    for (int64_t e = 0; e < experts; e++) acc[e] = dadd_rn(acc[e], (double)row[e]);
  }
  double weighted = 0.0;
  double col[kBalanceLanes];
  for (int64_t e = 0; e < experts; e++) {
    for (int l = 0; l < kBalanceLanes; l++) col[l] = lane[l * experts + e];
    weighted = balance_term(weighted, count[e], balance_combine_lanes(col, kBalanceLanes));
  }
  out[0] = balance_loss_value(weighted, tokens, experts, k, coef);
  if (d_scores == nullptr || tokens == 0) return;
  std::vector<float> g(experts);
  for (int64_t e = 0; e < experts; e++) g[e] = balance_grad(count[e], tokens, experts, k, coef);
#pragma omp parallel for schedule(static) if (tokens > 1 && tokens * experts >= kParallelMin)
  for (int64_t t = 0; t < tokens; t++) {
    float *d = d_scores + t * experts;
    for (int64_t e = 0; e < experts; e++) d[e] = add_rn(d[e], g[e]);
  }
}

void z_loss(const float *logits, int64_t tokens, int64_t experts, float coef, float *out,
            float *d_logits) {
  std::vector<float> lse(tokens);
#pragma omp parallel for schedule(static) if (tokens > 1 && tokens * experts >= kParallelMin)
  for (int64_t t = 0; t < tokens; t++) {
    const float *x = logits + t * experts;
    lse[t] = router_lse_row(x, experts);
    if (d_logits == nullptr) continue;
    const float scale = z_loss_grad_scale(lse[t], tokens, coef);
    float *d = d_logits + t * experts;
    for (int64_t e = 0; e < experts; e++) d[e] = z_loss_grad(d[e], x[e], lse[t], scale);
  }
  double sum_sq = 0.0;
  for (int64_t t = 0; t < tokens; t++) sum_sq = dadd_rn(sum_sq, lse_square(lse[t]));
  out[0] = z_loss_value(sum_sq, tokens, coef);
}

void bias_update(float *bias, const int64_t *counts, int64_t experts, float rate) {
  int64_t total = 0;
  for (int64_t e = 0; e < experts; e++) total += counts[e];
  const double mean = bias_mean(total, experts);
  for (int64_t e = 0; e < experts; e++) bias[e] = bias_updated(bias[e], counts[e], mean, rate);
}

/* Runs fn, turning an allocation failure into MOE4J_ERR_OUT_OF_MEMORY. */
template <typename F>
int32_t guarded(const char *fn_name, F &&fn) {
  try {
    fn();
  } catch (const std::bad_alloc &) {
    return fail(MOE4J_ERR_OUT_OF_MEMORY, "%s: out of host memory for scratch buffers", fn_name);
  }
  return MOE4J_OK;
}

}  // namespace

extern "C" {

int32_t moe4j_cpu_router_balance_loss(const float *scores, const int32_t *expert_ids,
                                      int64_t tokens, int64_t experts, int32_t k, float coef,
                                      float *out, float *d_scores) {
  static const char *const kFn = "moe4j_cpu_router_balance_loss";
  ArgCheck chk(kFn);
  check_router_balance_loss(chk, scores, expert_ids, tokens, experts, k, coef, out, d_scores);
  if (chk.failed()) return chk.status();
  check_ids(chk, expert_ids, tokens * k, experts); /* CPU only: reads the ids */
  if (chk.failed()) return chk.status();
  return guarded(kFn, [&] {
    balance_loss(scores, expert_ids, tokens, experts, k, coef, out, d_scores);
  });
}

int32_t moe4j_cpu_router_z_loss(const float *logits, int64_t tokens, int64_t experts, float coef,
                                float *out, float *d_logits) {
  static const char *const kFn = "moe4j_cpu_router_z_loss";
  ArgCheck chk(kFn);
  check_router_z_loss(chk, logits, tokens, experts, coef, out, d_logits);
  if (chk.failed()) return chk.status();
  return guarded(kFn, [&] { z_loss(logits, tokens, experts, coef, out, d_logits); });
}

int32_t moe4j_cpu_router_bias_update(float *bias, const int64_t *counts, int64_t experts,
                                     float rate) {
  ArgCheck chk("moe4j_cpu_router_bias_update");
  check_router_bias_update(chk, bias, counts, experts, rate);
  if (chk.failed()) return chk.status();
  bias_update(bias, counts, experts, rate);
  return MOE4J_OK;
}

}  // extern "C"
