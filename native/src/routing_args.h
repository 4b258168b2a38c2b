/*
 * Argument rules of the routing ops (moe4j.h "Routing (token choice)"), shared by the CPU twin
 * (native/src/cpu_routing.cpp) and the CUDA launchers (kernels/routing.cu), like op_args.h:
 *
 *   ArgCheck chk(fn);
 *   check_<op>(chk, ...);
 *   if (chk.failed()) return chk.status();
 *
 * Rules: tokens >= 0; experts in [1, 65536]; 1 <= k <= experts (k in [1, 65536] where the op
 * has no experts argument); score_fn 0 (softmax) or 1 (sigmoid); capacity any value (<= 0 is
 * dropless); num_rows >= 0; hidden >= 0; dtype F32|BF16 for gather/combine; tokens * k fits
 * int32 (slots and tokens are stored as I32); every size product fits; NULL only for empty
 * buffers (or the documented optional ones: bias, counts, weights of combine, d_weights);
 * outputs must not overlap inputs or each other (router_scores may run in place, and
 * router_scores_backward may write d_logits over d_scores).
 * Checks that read buffer contents (expert ids in [0, experts), slots in [-1, num_rows),
 * sorted tokens in [-1, tokens)) are not here: the launchers cannot read device memory, so they
 * run in the CPU file after these.
 */
#pragma once
#include <stdint.h>

#include "status.h"

namespace moe4j {

void check_router_scores(ArgCheck &chk, const float *logits, float *scores, int64_t tokens,
                         int64_t experts, int32_t score_fn);
void check_router_scores_backward(ArgCheck &chk, const float *scores, const float *d_scores,
                                  float *d_logits, int64_t tokens, int64_t experts,
                                  int32_t score_fn);
void check_route_topk(ArgCheck &chk, const float *scores, const float *bias, int64_t tokens,
                      int64_t experts, int32_t k, int32_t renormalize, int32_t *expert_ids,
                      float *weights);
void check_route_topk_backward(ArgCheck &chk, const float *scores, const int32_t *expert_ids,
                               const float *d_weights, float *d_scores, int64_t tokens,
                               int64_t experts, int32_t k, int32_t renormalize);
void check_route_plan(ArgCheck &chk, const int32_t *expert_ids, const float *weights,
                      int64_t tokens, int64_t experts, int32_t k, int64_t capacity,
                      int64_t *offsets, int32_t *sorted_token, int32_t *slot_of, int64_t *counts);
void check_route_gather(ArgCheck &chk, int32_t dtype, const void *x, const int32_t *sorted_token,
                        void *rows, int64_t num_rows, int64_t tokens, int64_t hidden);
void check_route_gather_backward(ArgCheck &chk, int32_t dtype, const void *d_rows,
                                 const int32_t *slot_of, void *dx, int64_t tokens, int32_t k,
                                 int64_t num_rows, int64_t hidden, int32_t accumulate);
void check_route_combine(ArgCheck &chk, int32_t dtype, const void *rows, const int32_t *slot_of,
                         const float *weights, void *y, int64_t tokens, int32_t k,
                         int64_t num_rows, int64_t hidden);
void check_route_combine_backward(ArgCheck &chk, int32_t dtype, const void *dy, const void *rows,
                                  const int32_t *slot_of, const float *weights, void *d_rows,
                                  float *d_weights, int64_t tokens, int32_t k, int64_t num_rows,
                                  int64_t hidden);

/* Expert Choice (moe4j.h "Expert Choice routing and balancing"): tokens >= 0; experts in
 * [1, 65536]; group_size >= 1 dividing tokens (tokens == 0 is fine); 0 <= capacity <=
 * group_size; tokens * experts fits int32 (slot_of / sorted_token are I32); NULL only for empty
 * buffers and for uncovered (optional); the five outputs must not overlap scores or each other. */
void check_route_expert_choice(ArgCheck &chk, const float *scores, int64_t tokens, int64_t experts,
                               int64_t group_size, int64_t capacity, int64_t *offsets,
                               int32_t *sorted_token, int32_t *slot_of, float *weights,
                               int64_t *uncovered);

}  // namespace moe4j
