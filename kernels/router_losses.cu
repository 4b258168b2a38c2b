/*
 * Router balancing on the device (moe4j.h "Expert Choice routing and balancing"): the
 * Switch/GShard load-balancing loss with its gradient to the scores, the router z-loss with its
 * gradient to the logits, and the aux-loss-free bias update. out is a device pointer; gradients
 * are accumulated into the caller's buffers (d += ...). No scratch buffers, no host sync.
 *
 * The formulas and their rounding live in common/router_loss_math.h, shared with the CPU twin
 * (native/src/cpu_router_losses.cpp); the argument rules in native/src/router_loss_args.cpp.
 *
 * Why single-block loss kernels: the ABI gives each loss one output float and no scratch, and the
 * launcher must not cudaMalloc, so partial sums of several blocks would have nowhere to go, and
 * float atomics would not be deterministic. The loss kernels are therefore ONE block of 1024
 * threads that strides over the whole input (one SM's bandwidth: the inputs are [T, E] router
 * tensors, a few MB). The gradients, which need no cross-token reduction, run on a full grid.
 *
 * balance_loss_kernel: experts in chunks of kCountChunk (counts in shared memory, 64-bit integer
 *   atomics: exact, order-free); per tile of 32 experts, thread (ty, tx) sums scores[t, tile + tx]
 *   for t = ty, ty + 32, ... in double (warps read 128-byte row segments); the 32 lanes of each
 *   expert are added in lane order, then thread 0 adds count_e * colsum_e in expert order. This is
 *   the CPU twin's lane structure, so the loss is bitwise equal to the CPU's.
 * balance_grad_kernel: grid (token blocks, expert chunks); each block recounts its chunk's
 *   experts from all T * k ids (integers: exact), turns them into g_e = balance_grad(...) and adds
 *   g_e to its rows of d_scores: bitwise equal to the CPU twin. The recount costs T * k L2 reads
 *   per block; blocks take >= kGradElems elements of d_scores so that stays below the d_scores
 *   traffic for typical sizes.
 * z_loss_grad_kernel: a warp per row: max (warp_max), sum of exp(x - max) (lane order, then the
 *   butterfly), lse, then d += scale * exp(x - lse). z_loss_kernel: one block, a warp per row
 *   (rows strided by 32 warps), lane 0 sums lse^2 in double, the 32 warp sums are added in warp
 *   order by thread 0. Not bitwise vs the CPU (expf/logf ulps, warp-order sum): tolerance.
 * bias_update_kernel: one block; the count total by 64-bit integer atomics in shared memory
 *   (exact), then bias[e] += rate * sign(mean - counts[e]): bitwise equal to the CPU twin.
 * Reference kernels (*_ref, moe4j_cuda_use_reference_kernels): one thread, plain loops over the
 *   shared helpers (balance loss: O(E * T * k) for the counts: test sizes only).
 *
 * Out-of-range expert ids cannot be reported from the device: they are not counted. The CPU twin
 * and the Java layer validate them.
 * Device code: kernels/router_losses_kernels.cuh (also run on the CPU under the warp emulator by
 * native/tests/test_router_losses_emulated.cpp); this file holds the launchers and the C ABI.
 */
#include "cuda_check.cuh"
#include "router_loss_args.h"
#include "router_losses_kernels.cuh"

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_router_balance_loss(const float *scores, const int32_t *expert_ids,
                                       int64_t tokens, int64_t experts, int32_t k, float coef,
                                       float *out, float *d_scores, void *stream) {
  const char *fn = "moe4j_cuda_router_balance_loss";
  ArgCheck chk(fn);
  check_router_balance_loss(chk, scores, expert_ids, tokens, experts, k, coef, out, d_scores);
  if (chk.failed()) return chk.status();
  cudaStream_t s = as_stream(stream);
  if (reference_kernels_enabled()) {
    balance_loss_ref<<<1, 1, 0, s>>>(scores, expert_ids, tokens, experts, k, coef, out, d_scores);
    return check_launch(fn, "balance_loss_ref");
  }
  /* tokens == 0 still launches: out[0] must become 0. */
  balance_loss_kernel<<<1, kLossThreads, 0, s>>>(scores, expert_ids, tokens, experts, k, coef,
                                                 out);
  int32_t st = check_launch(fn, "balance_loss_kernel");
  if (st != MOE4J_OK || d_scores == nullptr || tokens == 0) return st;
  const int64_t chunk = experts < kCountChunk ? experts : kCountChunk;
  int64_t rows_per_block = (kGradElems + chunk - 1) / chunk;
  constexpr int64_t kMaxRowBlocks = 65535LL * 1024;
  if ((tokens + rows_per_block - 1) / rows_per_block > kMaxRowBlocks)
    rows_per_block = (tokens + kMaxRowBlocks - 1) / kMaxRowBlocks;
  const int64_t row_blocks = (tokens + rows_per_block - 1) / rows_per_block;
  const dim3 grid((unsigned int)row_blocks,
                  (unsigned int)((experts + kCountChunk - 1) / kCountChunk));
  balance_grad_kernel<<<grid, kGradThreads, 0, s>>>(expert_ids, tokens, experts, k, coef,
                                                    d_scores, rows_per_block);
  return check_launch(fn, "balance_grad_kernel");
}

int32_t moe4j_cuda_router_z_loss(const float *logits, int64_t tokens, int64_t experts,
                                 float coef, float *out, float *d_logits, void *stream) {
  const char *fn = "moe4j_cuda_router_z_loss";
  ArgCheck chk(fn);
  check_router_z_loss(chk, logits, tokens, experts, coef, out, d_logits);
  if (chk.failed()) return chk.status();
  cudaStream_t s = as_stream(stream);
  if (reference_kernels_enabled()) {
    z_loss_ref<<<1, 1, 0, s>>>(logits, tokens, experts, coef, out, d_logits);
    return check_launch(fn, "z_loss_ref");
  }
  if (d_logits != nullptr && tokens > 0) {
    z_loss_grad_kernel<<<blocks_for(tokens, kZThreads / 32), kZThreads, 0, s>>>(
        logits, tokens, experts, coef, d_logits);
    int32_t st = check_launch(fn, "z_loss_grad_kernel");
    if (st != MOE4J_OK) return st;
  }
  /* tokens == 0 still launches: out[0] must become 0. */
  z_loss_kernel<<<1, kLossThreads, 0, s>>>(logits, tokens, experts, coef, out);
  return check_launch(fn, "z_loss_kernel");
}

int32_t moe4j_cuda_router_bias_update(float *bias, const int64_t *counts, int64_t experts,
                                      float rate, void *stream) {
  const char *fn = "moe4j_cuda_router_bias_update";
  ArgCheck chk(fn);
  check_router_bias_update(chk, bias, counts, experts, rate);
  if (chk.failed()) return chk.status();
  cudaStream_t s = as_stream(stream);
  if (reference_kernels_enabled()) {
    bias_update_ref<<<1, 1, 0, s>>>(bias, counts, experts, rate);
    return check_launch(fn, "bias_update_ref");
  }
  bias_update_kernel<<<1, kLossThreads, 0, s>>>(bias, counts, experts, rate);
  return check_launch(fn, "bias_update_kernel");
}

}  // extern "C"
