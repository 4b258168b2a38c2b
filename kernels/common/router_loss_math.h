/*
 * Router balancing math shared by the CPU twin (native/src/cpu_router_losses.cpp) and the CUDA
 * kernels (kernels/router_losses.cu): the Switch/GShard load-balancing loss, the router z-loss and
 * the aux-loss-free bias update (moe4j.h "Expert Choice routing and balancing").
 *
 * Balance loss, loss = coef * E * sum_e f_e * P_e with f_e = count_e / (T k), P_e = colsum_e / T:
 *  - colsum_e = sum over t of scores[t, e] in double, in kBalanceLanes = 32 token lanes: lane l
 *    takes t = l, l + 32, l + 64, ... in order; the lanes are then added 0..31 in order. Float ->
 *    double is exact and every step is one rounded double add, so the CPU (a lane array) and the
 *    GPU (a thread per lane) produce the same bits.
 *  - loss = balance_loss_value(sum_e count_e * colsum_e, ...): the weighted sum runs in expert
 *    order, each product and sum rounded on its own (dmul_rn / dadd_rn: no FMA contraction).
 *  - gradient d scores[t, e] = coef * E * f_e / T (no dependence on t), in double, rounded once
 *    to f32 (balance_grad), added to the caller's buffer with one f32 add.
 * z-loss, loss = coef * mean_t lse_t^2, d logits[t, e] = coef * 2 * lse_t / T * softmax_e:
 *  - lse_t = max + log(sum_e exp(x_e - max)), the sum in index order in f32 (router_lse_row);
 *    the GPU's fast kernels sum in warp order and its expf differs by an ulp, so z-loss results
 *    agree with a tolerance only.
 *  - softmax_e is taken as exp(x_e - lse_t) (one expf, no second division); -inf logits give 0.
 *    An all -inf row gives lse = -inf: an infinite loss and NaN gradients, like the formula.
 *  - The mean of lse^2 is a double sum divided by T (the order is fixed by each side).
 * Bias update: mean = (sum of counts, exact in int64) / E in double; bias[e] += rate when mean >
 *   counts[e], -= rate when mean < counts[e], unchanged when equal (sign(0) = 0): one f32 add.
 */
#pragma once
#include <math.h>
#include <stdint.h>

#include "hd.h"
#include "rmsnorm_math.h" /* mul_rn, add_rn */
#include "softmax_math.h" /* softmax_exp */

namespace moe4j {

constexpr int kBalanceLanes = 32;

MOE4J_HD double dmul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

MOE4J_HD double dadd_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

/* Adds lane sums 0..n-1 in order (the balance loss column sum). */
MOE4J_HD double balance_combine_lanes(const double *lane, int n) {
  double sum = lane[0];
  for (int l = 1; l < n; l++) sum = dadd_rn(sum, lane[l]);
  return sum;
}

/* One term of the weighted sum: count_e * colsum_e. */
MOE4J_HD double balance_term(double acc, int64_t count, double colsum) {
  return dadd_rn(acc, dmul_rn((double)count, colsum));
}

/* loss = coef * E * weighted / (T * T * k); 0 when T == 0. */
MOE4J_HD float balance_loss_value(double weighted, int64_t tokens, int64_t experts, int32_t k,
                                  float coef) {
  if (tokens == 0) return 0.0f;
  const double scale = dmul_rn(dmul_rn((double)coef, (double)experts),
                               1.0 / dmul_rn(dmul_rn((double)tokens, (double)tokens), (double)k));
  return (float)dmul_rn(scale, weighted);
}

/* d loss / d scores[t, e] = coef * E * f_e / T = coef * E * count_e / (T * T * k). */
MOE4J_HD float balance_grad(int64_t count, int64_t tokens, int64_t experts, int32_t k,
                            float coef) {
  const double num = dmul_rn(dmul_rn((double)coef, (double)experts), (double)count);
  return (float)(num / dmul_rn(dmul_rn((double)tokens, (double)tokens), (double)k));
}

/* log-sum-exp of one row, max-shifted, f32, index order. An all -inf row gives -inf. */
MOE4J_HD float router_lse_row(const float *x, int64_t E) {
  float m = -INFINITY;
  for (int64_t e = 0; e < E; e++) m = fmaxf(m, x[e]);
  float sum = 0.0f;
  for (int64_t e = 0; e < E; e++) sum = add_rn(sum, softmax_exp(x[e], m));
  return m + logf(sum);
}

/* Per-row scale of the z-loss gradient: coef * 2 * lse / T (double, rounded once). */
MOE4J_HD float z_loss_grad_scale(float lse, int64_t tokens, float coef) {
  return (float)(dmul_rn(dmul_rn(2.0, (double)coef), (double)lse) / (double)tokens);
}

/* d[e] += scale * softmax(x)[e] with softmax = exp(x - lse): one f32 mul and add per element. */
MOE4J_HD float z_loss_grad(float d, float x, float lse, float scale) {
  return add_rn(d, mul_rn(scale, x == -INFINITY ? 0.0f : expf(x - lse)));
}

/* z-loss from the double sum of lse_t^2. */
MOE4J_HD float z_loss_value(double sum_sq, int64_t tokens, float coef) {
  if (tokens == 0) return 0.0f;
  return (float)(dmul_rn((double)coef, sum_sq) / (double)tokens);
}

/* lse^2 in double. */
MOE4J_HD double lse_square(float lse) { return dmul_rn((double)lse, (double)lse); }

/* bias += rate * sign(mean - count). */
MOE4J_HD float bias_updated(float bias, int64_t count, double mean, float rate) {
  const double c = (double)count;
  if (mean > c) return add_rn(bias, rate);
  if (mean < c) return sub_rn(bias, rate);
  return bias;
}

MOE4J_HD double bias_mean(int64_t total, int64_t experts) {
  return (double)total / (double)experts;
}

}  // namespace moe4j
