/*
 * Token-choice routing math shared by the CPU twin (native/src/cpu_routing.cpp) and the CUDA
 * kernels (kernels/routing.cu): score functions and their backward, top-k selection with its
 * tie rule, the renormalization backward, and the capacity priority of the dispatch plan.
 * One definition, so both sides select the same experts and drop the same assignments.
 *
 * Conventions (the C ABI's "Routing (token choice)" block in native/include/moe4j.h):
 *  - Selection key of expert e = scores[e] + bias[e] (bias NULL: scores[e]). Higher key first;
 *    equal keys -> lower expert index. A NaN key ranks below every number (so a NaN never
 *    displaces a real expert); NaNs among themselves go by index. The weight is the raw score.
 *  - Renormalization: S = sum of the k selected scores in rank order (f32, j = 0..k-1), then
 *    w_j = s_j / S (IEEE division; S == 0 gives inf/NaN like the textbook formula).
 *  - Capacity priority: higher weight first, then lower token, then lower rank j (NaN weights
 *    last). An expert with capacity C keeps the C assignments that come first in this order.
 *  - Row reductions (softmax max/sum, backward dot products) run sequentially in index order,
 *    each operation rounded on its own (mul_rn/add_rn: no FMA contraction), so a GPU kernel that
 *    runs a row in one thread does exactly the CPU's arithmetic. Everything except expf/exp is
 *    then bitwise equal; device expf may differ from the host's by an ulp, so GPU tests compare
 *    scores with a tolerance and feed both top-k twins the same scores to compare selections
 *    exactly. E and k are small (experts <= 65536, typically 8..256), so a row per thread is the
 *    natural GPU mapping anyway.
 */
#pragma once
#include <math.h>
#include <stdint.h>

#include "hd.h"
#include "numerics.h"
#include "rmsnorm_math.h" /* mul_rn, add_rn, sub_rn */
#include "softmax_math.h" /* softmax_exp */

namespace moe4j {

constexpr int32_t kRouteScoreSoftmax = 0;
constexpr int32_t kRouteScoreSigmoid = 1;
constexpr int64_t kRouteMaxExperts = int64_t(1) << 16;

/* ---- ordering ---- */

/* Does value a rank strictly above value b (descending, NaN below everything)? */
MOE4J_HD bool route_value_above(float a, float b) {
  if (isnan(a)) return false;
  if (isnan(b)) return true;
  return a > b;
}

/* Do values a and b tie (equal, or both NaN)? -0 and +0 tie. */
MOE4J_HD bool route_value_ties(float a, float b) { return a == b || (isnan(a) && isnan(b)); }

/* Selection order: does (key_a, expert_a) come before (key_b, expert_b)? */
MOE4J_HD bool expert_precedes(float key_a, int32_t expert_a, float key_b, int32_t expert_b) {
  if (route_value_above(key_a, key_b)) return true;
  return route_value_ties(key_a, key_b) && expert_a < expert_b;
}

/* Capacity priority of assignment (token t, rank j) with weight w: higher weight first, then
 * lower token, then lower rank. A strict total order on distinct (t, j). */
MOE4J_HD bool assignment_precedes(float w_a, int64_t t_a, int32_t j_a, float w_b, int64_t t_b,
                                  int32_t j_b) {
  if (route_value_above(w_a, w_b)) return true;
  if (!route_value_ties(w_a, w_b)) return false;
  if (t_a != t_b) return t_a < t_b;
  return j_a < j_b;
}

/* ---- score functions (router logits -> scores) ---- */

MOE4J_HD float router_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* softmax over one row of E logits, in f32: max and sum in index order, s = exp(x - max) / sum.
 * -inf logits give 0; an all -inf row gives NaN (0 / 0), like the textbook formula. */
MOE4J_HD void router_softmax_row(const float *x, float *s, int64_t E) {
  float m = -INFINITY;
  for (int64_t e = 0; e < E; e++) m = fmaxf(m, x[e]);
  float sum = 0.0f;
  for (int64_t e = 0; e < E; e++) sum = add_rn(sum, softmax_exp(x[e], m));
  for (int64_t e = 0; e < E; e++) s[e] = softmax_exp(x[e], m) / sum;
}

MOE4J_HD void router_sigmoid_row(const float *x, float *s, int64_t E) {
  for (int64_t e = 0; e < E; e++) s[e] = router_sigmoid(x[e]);
}

MOE4J_HD void router_scores_row(const float *x, float *s, int64_t E, int32_t score_fn) {
  if (score_fn == kRouteScoreSigmoid)
    router_sigmoid_row(x, s, E);
  else
    router_softmax_row(x, s, E);
}

/* softmax backward: d_x_i = s_i * (d_s_i - sum_j s_j d_s_j), the dot in index order.
 * d_x may alias d_s (each element is read before it is written). */
MOE4J_HD void router_softmax_backward_row(const float *s, const float *d_s, float *d_x,
                                          int64_t E) {
  float dot = 0.0f;
  for (int64_t e = 0; e < E; e++) dot = add_rn(dot, mul_rn(s[e], d_s[e]));
  for (int64_t e = 0; e < E; e++) d_x[e] = mul_rn(s[e], sub_rn(d_s[e], dot));
}

/* sigmoid backward: d_x = (s * (1 - s)) * d_s. */
MOE4J_HD float router_sigmoid_backward(float s, float d_s) {
  return mul_rn(mul_rn(s, sub_rn(1.0f, s)), d_s);
}

MOE4J_HD void router_scores_backward_row(const float *s, const float *d_s, float *d_x, int64_t E,
                                         int32_t score_fn) {
  if (score_fn == kRouteScoreSigmoid) {
    for (int64_t e = 0; e < E; e++) d_x[e] = router_sigmoid_backward(s[e], d_s[e]);
  } else {
    router_softmax_backward_row(s, d_s, d_x, E);
  }
}

/* ---- top-k ---- */

/* Sum of the k selected scores in rank order: the renormalization denominator. */
MOE4J_HD float topk_selected_sum(const float *w, int k) {
  float sum = 0.0f;
  for (int j = 0; j < k; j++) sum = add_rn(sum, w[j]);
  return sum;
}

/* One token: the k experts with the largest scores_row[e] + bias[e] (bias may be NULL), in
 * selection order (expert_precedes). ids_out[0..k) get the experts, w_out[0..k) the raw scores,
 * divided by their rank-order sum when renormalize != 0. 1 <= k <= E.
 * Insertion into a sorted list of length k kept in ids_out / w_out (w_out holds the keys while
 * selecting): O(E * k) worst case, O(E) typical; experts arrive in index order, so an equal key
 * never moves ahead of an earlier expert. */
MOE4J_HD void topk_row(const float *scores_row, const float *bias, int64_t E, int k,
                       int32_t *ids_out, float *w_out, int renormalize) {
  int count = 0;
  for (int64_t e = 0; e < E; e++) {
    const float key = bias != nullptr ? add_rn(scores_row[e], bias[e]) : scores_row[e];
    const int32_t id = (int32_t)e;
    if (count == k && !expert_precedes(key, id, w_out[k - 1], ids_out[k - 1])) continue;
    int i = count < k ? count++ : k - 1;
    while (i > 0 && expert_precedes(key, id, w_out[i - 1], ids_out[i - 1])) {
      w_out[i] = w_out[i - 1];
      ids_out[i] = ids_out[i - 1];
      i--;
    }
    w_out[i] = key;
    ids_out[i] = id;
  }
  for (int j = 0; j < k; j++) w_out[j] = scores_row[ids_out[j]];
  if (renormalize) {
    const float sum = topk_selected_sum(w_out, k);
    for (int j = 0; j < k; j++) w_out[j] = w_out[j] / sum;
  }
}

/* Backward of topk_row for one token: adds d loss / d scores_row[ids[j]] into
 * d_scores_row[ids[j]] for j = 0..k-1 in order (the caller zeroes the row first; adding in j
 * order keeps a row with repeated ids well defined). Without renormalization the term is d_w[j].
 * With it (w_j = s_j / S, S = sum of the selected s): (d_w_j - sum_i d_w_i w_i) / S, where S and
 * w_i are recomputed exactly as the forward did, and the dot runs in rank order. */
MOE4J_HD void topk_backward_row(const float *scores_row, const int32_t *ids, const float *d_w,
                                int k, int renormalize, float *d_scores_row) {
  if (!renormalize) {
    for (int j = 0; j < k; j++) d_scores_row[ids[j]] = add_rn(d_scores_row[ids[j]], d_w[j]);
    return;
  }
  float sum = 0.0f;
  for (int j = 0; j < k; j++) sum = add_rn(sum, scores_row[ids[j]]);
  float dot = 0.0f;
  for (int j = 0; j < k; j++) dot = add_rn(dot, mul_rn(d_w[j], scores_row[ids[j]] / sum));
  for (int j = 0; j < k; j++)
    d_scores_row[ids[j]] = add_rn(d_scores_row[ids[j]], sub_rn(d_w[j], dot) / sum);
}

/* ---- gather / combine element order ----
 * combine:         acc = 0; for j = 0..k-1 with slot >= 0: acc = acc + w_j * row_j (w NULL: 1,
 *                  no multiply); y = round(acc).
 * gather backward: acc = 0; for kept j in order: acc = acc + d_row_j; dx = accumulate ?
 *                  round(dx + acc) : round(acc).
 * combine backward: d_row = round(w * dy); d_weights = <dy, row> in kLanes = 16 lanes (lane l
 *                  takes h = l, l + 16, ...; lanes added 0..15 in order). */
MOE4J_HD float combine_term(float acc, const float *w, int j, float row_value) {
  return add_rn(acc, w != nullptr ? mul_rn(w[j], row_value) : row_value);
}

constexpr int kRouteLanes = 16;

/* <a, b> over n elements for combine backward's d_weights, in f32: lane l takes elements
 * l, l + 16, l + 32, ... in order; the lanes are then added 0..15 in order (sum = lane 0, then
 * + lane 1, ...). Any SIMD width or one thread per row reproduces it bitwise. */
template <typename T>
MOE4J_HD float route_dot(const T *a, const T *b, int64_t n) {
  float lane[kRouteLanes];
  for (int l = 0; l < kRouteLanes; l++) lane[l] = 0.0f;
  const int64_t full = n / kRouteLanes * kRouteLanes;
  for (int64_t i = 0; i < full; i += kRouteLanes)
    for (int l = 0; l < kRouteLanes; l++)
      lane[l] = add_rn(lane[l], mul_rn(to_f32(a[i + l]), to_f32(b[i + l])));
  for (int64_t i = full; i < n; i++)
    lane[i - full] = add_rn(lane[i - full], mul_rn(to_f32(a[i]), to_f32(b[i])));
  float sum = lane[0];
  for (int l = 1; l < kRouteLanes; l++) sum = add_rn(sum, lane[l]);
  return sum;
}

/* ---- capacity ---- */

/* Does an expert with `capacity` keep an assignment that has `ahead` assignments of the same
 * expert before it in priority order? capacity <= 0 is dropless. */
MOE4J_HD bool route_kept(int64_t ahead, int64_t capacity) {
  return capacity <= 0 || ahead < capacity;
}

/* Capacity from a capacity factor, ceil(cf * tokens * k / experts), for callers (the plan takes
 * the integer). cf <= 0 gives 0 (dropless). Host-side helper, in double. */
inline int64_t route_capacity_from_factor(double cf, int64_t tokens, int64_t k, int64_t experts) {
  if (!(cf > 0.0) || experts <= 0) return 0;
  return (int64_t)ceil(cf * (double)tokens * (double)k / (double)experts);
}

}  // namespace moe4j
