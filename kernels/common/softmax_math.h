/*
 * Online softmax statistics, shared by the CUDA cross-entropy kernels and their CPU twin.
 *
 * A partial softmax over some elements is the pair (max, sum) with sum = Σ exp(x - max). Pairs
 * from disjoint parts combine exactly (Milakov & Gimelshein, "Online normalizer calculation for
 * softmax"): rescale both sums to the larger max and add. That lets one pass over the logits
 * produce log-sum-exp: each lane / thread keeps a pair while it streams its elements, and the pairs
 * are combined at the end (lanes in a fixed order on the CPU, a warp/block butterfly on the GPU).
 *
 * Streaming is done a tile at a time: raise the running max to the tile's max (one rescale), then
 * add exp(x - max) for each element, so the common case costs one expf per element.
 *
 * Edge cases: -inf logits contribute 0 (an all -inf row gives max = -inf, sum = 0, lse = -inf);
 * a NaN logit makes the sum NaN; +inf makes it NaN (inf - inf), like the textbook formula.
 */
#pragma once
#include <math.h>

#include "hd.h"

namespace moe4j {

struct SoftmaxStats {
  float max; /* running maximum (-inf when empty) */
  float sum; /* Σ exp(x - max) over the elements seen */
};

MOE4J_HD SoftmaxStats softmax_stats_empty() { return SoftmaxStats{-INFINITY, 0.0f}; }

/* exp(from - to): the factor that moves a sum taken relative to max `from` to max `to` >= from.
 * Equal maxima (including -inf == -inf, where from - to would be NaN) give exactly 1. */
MOE4J_HD float softmax_rescale(float from, float to) { return from == to ? 1.0f : expf(from - to); }

/* exp(x - max) for one element; -inf contributes 0 even when max is -inf too. */
MOE4J_HD float softmax_exp(float x, float max) { return x == -INFINITY ? 0.0f : expf(x - max); }

/* Raises the running max to at least `candidate` (a tile's max), rescaling the sum once.
 * fmaxf ignores a NaN candidate; the NaN still reaches the sum through softmax_exp. */
MOE4J_HD void softmax_raise_max(SoftmaxStats *s, float candidate) {
  float m = fmaxf(s->max, candidate);
  s->sum *= softmax_rescale(s->max, m);
  s->max = m;
}

/* Adds one element (the single-element form of raise_max + exp). */
MOE4J_HD void softmax_add(SoftmaxStats *s, float x) {
  softmax_raise_max(s, x);
  s->sum += softmax_exp(x, s->max);
}

/* Combines two partial results (exact in real arithmetic; the order of combination only moves
 * rounding). Callers fix the order — lanes 0..15 on the CPU, a fixed butterfly on the GPU whose
 * thread 0 result is used — so results are reproducible run to run. */
MOE4J_HD SoftmaxStats softmax_combine(SoftmaxStats a, SoftmaxStats b) {
  float m = fmaxf(a.max, b.max);
  return SoftmaxStats{m, a.sum * softmax_rescale(a.max, m) + b.sum * softmax_rescale(b.max, m)};
}

/* log Σ exp(x) */
MOE4J_HD float softmax_lse(SoftmaxStats s) { return s.max + logf(s.sum); }

/* -log softmax(x)[target] = lse - x_target, written as (max - x_target) + log(sum): max - x_target
 * is exact for nearby values (Sterbenz), so large logits (~1e4) keep the loss accurate instead of
 * cancelling two numbers whose ulp is ~1e-3. */
MOE4J_HD float softmax_nll(SoftmaxStats s, float x_target) { return (s.max - x_target) + logf(s.sum); }

/* d loss / d logit for one element: (softmax - onehot) * grad_scale, from the saved lse. */
MOE4J_HD float softmax_xent_grad(float x, float lse, bool is_target, float grad_scale) {
  return (expf(x - lse) - (is_target ? 1.0f : 0.0f)) * grad_scale;
}

}  // namespace moe4j
