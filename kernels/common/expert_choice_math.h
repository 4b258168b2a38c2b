/*
 * Expert Choice routing math shared by the CPU twin (native/src/cpu_expert_choice.cpp) and the
 * CUDA kernels (kernels/expert_choice.cu): the token order an expert picks by, its integer key
 * for radix selection, and the layout of the outputs. One definition, so both sides choose the
 * same (token, expert) pairs and give them the same rows.
 *
 * Conventions (the C ABI's "Expert Choice routing and balancing" block in native/include/moe4j.h):
 *  - Tokens are split into groups = T / group_size routing groups of consecutive tokens. Within
 *    group g, expert e takes the `capacity` tokens that come first in ec_token_precedes order on
 *    scores[t, e]: higher score first, equal scores -> lower token index; a NaN score ranks below
 *    every number (NaNs among themselves by token), -0 and +0 tie (routing_math.h's
 *    route_value_above / route_value_ties, the token-choice tie rule with tokens for experts).
 *    The order is strict and total on distinct tokens, so the chosen set is unique: any selection
 *    algorithm (heap, radix select, counting) yields it.
 *  - Rows: expert e owns rows [e * groups * capacity, (e + 1) * groups * capacity); within them
 *    group g owns the block of `capacity` rows starting at g * capacity, holding the chosen tokens
 *    in token order (ec_row). Every (group, expert) takes exactly `capacity` tokens (capacity <=
 *    group_size), so the layout is static: offsets[e] = e * groups * capacity.
 *  - slot_of[t, e] = row of (t, e) or -1; weights[t, e] = scores[t, e] where chosen (the raw
 *    score, NaN included), else 0.
 *  - Radix key (ec_score_key): an unsigned 32-bit key whose descending order is the score order
 *    above: -0 is mapped as +0, a NaN to 0 (below every number, whose keys are >= 0x007fffff for
 *    -inf). Equal keys <=> tied scores. A selection by key then breaks key ties by token order.
 */
#pragma once
#include <math.h>
#include <stdint.h>

#include "hd.h"
#include "numerics.h"     /* f32_bits */
#include "routing_math.h" /* route_value_above, route_value_ties */

namespace moe4j {

/* Does token a (score_a) come before token b (score_b) in an expert's pick order? Higher score
 * first, ties (equal, or both NaN) to the lower token; NaN ranks last. */
MOE4J_HD bool ec_token_precedes(float score_a, int64_t t_a, float score_b, int64_t t_b) {
  if (route_value_above(score_a, score_b)) return true;
  return route_value_ties(score_a, score_b) && t_a < t_b;
}

/* Order-preserving unsigned key of a score: key(a) > key(b) <=> route_value_above(a, b), and
 * key(a) == key(b) <=> route_value_ties(a, b). */
MOE4J_HD uint32_t ec_score_key(float s) {
  if (isnan(s)) return 0u;
  const uint32_t b = s == 0.0f ? 0u : f32_bits(s);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

/* Number of routing groups (group_size >= 1 and tokens % group_size == 0 are validated). */
MOE4J_HD int64_t ec_groups(int64_t tokens, int64_t group_size) { return tokens / group_size; }

/* Rows each expert owns, = offsets[e + 1] - offsets[e]. */
MOE4J_HD int64_t ec_rows_per_expert(int64_t groups, int64_t capacity) {
  return groups * capacity;
}

/* Row of the r-th chosen token (token order, r < capacity) of expert e in group g. */
MOE4J_HD int64_t ec_row(int64_t e, int64_t g, int64_t r, int64_t groups, int64_t capacity) {
  return (e * groups + g) * capacity + r;
}

/* Plain selection for one (group, expert): how many tokens of the group come before local token
 * i in pick order? Token i is chosen iff this is < capacity. O(group_size) per token: reference
 * kernels and tests only. `col` = scores + group_start * E + e, stride E. */
MOE4J_HD int64_t ec_tokens_ahead(const float *col, int64_t E, int64_t group_size, int64_t i) {
  const float s = col[i * E];
  int64_t ahead = 0;
  for (int64_t j = 0; j < group_size; j++)
    if (j != i && ec_token_precedes(col[j * E], j, s, i)) ahead++;
  return ahead;
}

/* Rank of a chosen token among its group's chosen ones in token order, from the radix
 * selection's counts: above_before tokens before it have a key above the threshold, ties_before
 * tokens before it tie with the threshold, and the first `need` ties are taken. */
MOE4J_HD int64_t ec_rank_from_counts(int64_t above_before, int64_t ties_before, int64_t need) {
  return above_before + (ties_before < need ? ties_before : need);
}

}  // namespace moe4j
