/*
 * Argument rules of the router balancing ops (moe4j.h "Expert Choice routing and balancing":
 * router_balance_loss, router_z_loss, router_bias_update), shared by the CPU twin
 * (native/src/cpu_router_losses.cpp) and the CUDA launchers (kernels/router_losses.cu), like
 * op_args.h:
 *
 *   ArgCheck chk(fn);
 *   check_<op>(chk, ...);
 *   if (chk.failed()) return chk.status();
 *
 * Rules: tokens >= 0; experts in [1, 65536]; 1 <= k <= experts; coef and rate finite and >= 0;
 * every size product fits; out is always required (one float); NULL only for empty buffers or
 * the optional gradients (d_scores, d_logits); outputs must not overlap inputs or each other.
 * The range check of expert_ids reads the buffer, so it runs in the CPU file only (the CUDA
 * kernels skip out-of-range ids).
 */
#pragma once
#include <stdint.h>

#include "status.h"

namespace moe4j {

void check_router_balance_loss(ArgCheck &chk, const float *scores, const int32_t *expert_ids,
                               int64_t tokens, int64_t experts, int32_t k, float coef, float *out,
                               float *d_scores);
void check_router_z_loss(ArgCheck &chk, const float *logits, int64_t tokens, int64_t experts,
                         float coef, float *out, float *d_logits);
void check_router_bias_update(ArgCheck &chk, float *bias, const int64_t *counts, int64_t experts,
                              float rate);

}  // namespace moe4j
