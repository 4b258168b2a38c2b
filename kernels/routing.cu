/*
 * Token-choice routing on the device: router scores, top-k selection, the dispatch plan that sorts
 * assignments by expert, and the gather / combine that move rows between token order and expert
 * order. All on one stream, no host synchronization, no scratch buffers beyond the outputs.
 *
 * Layouts (moe4j.h, "Routing (token choice)"): logits, scores F32 [T, E]; expert_ids I32 [T, k],
 * weights F32 [T, k] (assignment i = t * k + j, j = rank 0..k-1); offsets I64 [E + 1];
 * sorted_token I32 [T * k]; slot_of I32 [T, k]; counts I64 [E]; x [T, H], rows [R, H], y [T, H]
 * in F32 or BF16 (f32 arithmetic).
 *
 * The math and the tie rules live in common/routing_math.h, shared with the CPU twin
 * (native/src/cpu_routing.cpp); the argument rules in native/src/routing_args.cpp.
 *
 * router_scores: may run in place (scores == logits; d_logits == d_scores in the backward): each
 *   element is read by the lane that writes it, before it writes it, so those pointers carry no
 *   __restrict__. Softmax runs a warp per row (max, then sum of exp(x - max), warp butterflies);
 *   sigmoid is elementwise. The backward of softmax is a warp per row (dot = sum s * ds), sigmoid
 *   elementwise. Reference kernels: a thread per row calling router_scores_row /
 *   router_scores_backward_row (the CPU twin's own code).
 * route_topk: a thread per token calling topk_row. For k <= kTopkLocal the sorted list lives in a
 *   thread-local array (the selection loop indexes it dynamically, so it sits in the L1-cached
 *   stack frame, not in registers) and is copied out; for larger k topk_row works directly on the
 *   token's rows of expert_ids / weights in global memory (same code, slower, any k <= E).
 *   Backward: d_scores is zeroed with cudaMemsetAsync, then a thread per token runs
 *   topk_backward_row, which adds the k selected entries in j order. Both bitwise equal to the
 *   CPU twin (same code, add_rn / mul_rn, IEEE division).
 * route_plan: three kernels, deterministic.
 *   (1) count: a thread per assignment adds 1 to offsets[e + 1] (zeroed first) with an integer
 *       atomic: the value does not depend on the order. Out-of-range ids are not counted.
 *   (2) scan: one block turns offsets[1..E] (per-expert counts) into counts[e], the kept counts
 *       min(count, capacity) and their exclusive prefix (offsets). E <= 65536.
 *   (3) place: one block per expert scans all T * k assignments in index order, 1024 at a time,
 *       and gives each of its kept assignments the row offsets[e] + (kept ones before it), from a
 *       block-wide prefix of ballots: rows are in token order (stable). When an expert has more
 *       assignments than capacity, the block first finds the priority key of its capacity-th
 *       assignment by an 8-pass radix select (8-bit digits of a 64-bit key, shared-memory integer
 *       histograms); an assignment is kept iff its key is >= that threshold. The key encodes
 *       routing_math.h's assignment_precedes exactly: high 32 bits the weight mapped to an
 *       order-preserving unsigned (-0 as +0, NaN as 0 = below everything), low 32 bits
 *       0xffffffff - i (lower token, then lower rank, first). One extra block (index E) writes -1
 *       to sorted_token rows past offsets[E] and to slot_of of out-of-range ids.
 *   Cost: (1) O(T k), (2) O(E), (3) O(E T k) reads (L2-resident: T k int32) plus 8 more passes
 *   per expert that drops. Fine for E up to a few hundred; for thousands of experts the place
 *   kernel's per-expert scan becomes the cost (a later version would sort once instead).
 *   Reference: route_plan_ref, a single thread doing everything sequentially, the kept test by
 *   counting the assignments ahead in priority (O((T k)^2) with capacity: test sizes only).
 * route_gather: a warp per row copies x[sorted_token[r]] with the widest unit (16, 4 or 2 bytes)
 *   the row width and base addresses allow; rows whose token is -1 (or out of range) get zeros.
 * route_gather_backward / route_combine: a block per token, a thread per 16-byte packet (4 f32
 *   or 8 bf16 when the row width and base addresses allow, else one element), summing the k slots
 *   in j order in f32 (combine_term / add_rn: the CPU twin's operation sequence, bitwise equal).
 * route_combine_backward: d_rows zeroed with cudaMemsetAsync, then a block per token writes
 *   d_rows[slot] = w * dy for each kept slot (packets), and d_weights[t, j] = <dy[t], rows[slot]>
 *   is computed by a half-warp per j in route_dot's fixed 16-lane order (routing_math.h), so it
 *   is deterministic and bitwise equal to the CPU twin. No float atomics anywhere. The reference
 *   kernels: a thread per element for d_rows, a thread per (t, j) calling route_dot.
 * Bitwise vs the CPU twin: topk, topk backward, plan, gather, gather backward, combine, combine
 *   backward, sigmoid backward, and the reference softmax backward. Not bitwise: softmax and
 *   sigmoid forward (CUDA's expf differs from glibc's by up to 2 ulp) and the fast softmax
 *   backward (warp-order dot).
 *
 * Ids and slots cannot be reported from the device: out-of-range expert ids are dropped by the
 * plan, out-of-range tokens gather zeros, out-of-range slots are skipped. The CPU twin and the
 * Java layer validate them. Two exceptions trust their input: topk backward indexes the row by
 * expert_ids (pass the forward's), and combine backward needs distinct kept slots (a plan's
 * slot_of), else two blocks write the same d_rows row.
 * Device code: kernels/routing_kernels.cuh (also run on the CPU under the warp emulator by
 * native/tests/test_routing_emulated.cpp); this file holds the launchers and the C ABI.
 */
#include "cuda_check.cuh"
#include "routing_args.h"
#include "routing_kernels.cuh"

namespace moe4j {

static bool aligned_to(const void *p, uintptr_t bytes) { return ((uintptr_t)p % bytes) == 0; }

static unsigned int row_blocks(int64_t tokens) { return blocks_for(tokens, 1, 65535LL * 16); }

/* Packets of 16 bytes when the row width and every base address allow, else one element. */
static bool packed_ok(int64_t H, int64_t es, const void *a, const void *b, const void *c) {
  const int64_t per = 16 / es;
  return H % per == 0 && (a == nullptr || aligned_to(a, 16)) &&
         (b == nullptr || aligned_to(b, 16)) && (c == nullptr || aligned_to(c, 16));
}

}  // namespace moe4j

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_router_scores(const float *logits, float *scores, int64_t tokens,
                                 int64_t experts, int32_t score_fn, void *stream) {
  const char *fn = "moe4j_cuda_router_scores";
  ArgCheck chk(fn);
  check_router_scores(chk, logits, scores, tokens, experts, score_fn);
  if (chk.failed()) return chk.status();
  if (tokens * experts == 0) return MOE4J_OK;
  cudaStream_t s = as_stream(stream);
  if (reference_kernels_enabled()) {
    router_scores_ref<<<blocks_for(tokens, kRefThreads, INT32_MAX), kRefThreads, 0, s>>>(
        logits, scores, tokens, experts, score_fn);
    return check_launch(fn, "router_scores_ref");
  }
  if (score_fn == kRouteScoreSigmoid) {
    router_sigmoid_kernel<<<blocks_for(tokens * experts, kScoresThreads), kScoresThreads, 0, s>>>(
        logits, scores, tokens * experts);
    return check_launch(fn, "router_sigmoid_kernel");
  }
  router_softmax_kernel<<<blocks_for(tokens, kScoresThreads / 32), kScoresThreads, 0, s>>>(
      logits, scores, tokens, experts);
  return check_launch(fn, "router_softmax_kernel");
}

int32_t moe4j_cuda_router_scores_backward(const float *scores, const float *d_scores,
                                          float *d_logits, int64_t tokens, int64_t experts,
                                          int32_t score_fn, void *stream) {
  const char *fn = "moe4j_cuda_router_scores_backward";
  ArgCheck chk(fn);
  check_router_scores_backward(chk, scores, d_scores, d_logits, tokens, experts, score_fn);
  if (chk.failed()) return chk.status();
  if (tokens * experts == 0) return MOE4J_OK;
  cudaStream_t s = as_stream(stream);
  if (reference_kernels_enabled()) {
    router_scores_backward_ref<<<blocks_for(tokens, kRefThreads, INT32_MAX), kRefThreads, 0, s>>>(
        scores, d_scores, d_logits, tokens, experts, score_fn);
    return check_launch(fn, "router_scores_backward_ref");
  }
  if (score_fn == kRouteScoreSigmoid) {
    router_sigmoid_backward_kernel<<<blocks_for(tokens * experts, kScoresThreads), kScoresThreads,
                                     0, s>>>(scores, d_scores, d_logits, tokens * experts);
    return check_launch(fn, "router_sigmoid_backward_kernel");
  }
  router_softmax_backward_kernel<<<blocks_for(tokens, kScoresThreads / 32), kScoresThreads, 0,
                                   s>>>(scores, d_scores, d_logits, tokens, experts);
  return check_launch(fn, "router_softmax_backward_kernel");
}

int32_t moe4j_cuda_route_topk(const float *scores, const float *bias, int64_t tokens,
                              int64_t experts, int32_t k, int32_t renormalize,
                              int32_t *expert_ids, float *weights, void *stream) {
  const char *fn = "moe4j_cuda_route_topk";
  ArgCheck chk(fn);
  check_route_topk(chk, scores, bias, tokens, experts, k, renormalize, expert_ids, weights);
  if (chk.failed()) return chk.status();
  if (tokens == 0) return MOE4J_OK;
  route_topk_kernel<<<blocks_for(tokens, kTopkThreads), kTopkThreads, 0, as_stream(stream)>>>(
      scores, bias, tokens, experts, k, renormalize, expert_ids, weights);
  return check_launch(fn, "route_topk_kernel");
}

int32_t moe4j_cuda_route_topk_backward(const float *scores, const int32_t *expert_ids,
                                       const float *d_weights, float *d_scores, int64_t tokens,
                                       int64_t experts, int32_t k, int32_t renormalize,
                                       void *stream) {
  const char *fn = "moe4j_cuda_route_topk_backward";
  ArgCheck chk(fn);
  check_route_topk_backward(chk, scores, expert_ids, d_weights, d_scores, tokens, experts, k,
                            renormalize);
  if (chk.failed()) return chk.status();
  if (tokens * experts == 0) return MOE4J_OK;
  cudaStream_t s = as_stream(stream);
  int32_t st = cuda_status(
      cudaMemsetAsync(d_scores, 0, (size_t)(tokens * experts) * sizeof(float), s), fn,
      "cudaMemsetAsync");
  if (st != MOE4J_OK) return st;
  route_topk_backward_kernel<<<blocks_for(tokens, kTopkThreads), kTopkThreads, 0, s>>>(
      scores, expert_ids, d_weights, d_scores, tokens, experts, k, renormalize);
  return check_launch(fn, "route_topk_backward_kernel");
}

int32_t moe4j_cuda_route_plan(const int32_t *expert_ids, const float *weights, int64_t tokens,
                              int64_t experts, int32_t k, int64_t capacity, int64_t *offsets,
                              int32_t *sorted_token, int32_t *slot_of, int64_t *counts,
                              void *stream) {
  const char *fn = "moe4j_cuda_route_plan";
  ArgCheck chk(fn);
  check_route_plan(chk, expert_ids, weights, tokens, experts, k, capacity, offsets, sorted_token,
                   slot_of, counts);
  if (chk.failed()) return chk.status();
  cudaStream_t s = as_stream(stream);
  const int64_t n = tokens * k;
  if (reference_kernels_enabled()) {
    route_plan_ref<<<1, 1, 0, s>>>(expert_ids, weights, tokens, experts, k, capacity, offsets,
                                   sorted_token, slot_of, counts);
    return check_launch(fn, "route_plan_ref");
  }
  int32_t st = cuda_status(
      cudaMemsetAsync(offsets, 0, (size_t)(experts + 1) * sizeof(int64_t), s), fn,
      "cudaMemsetAsync");
  if (st != MOE4J_OK) return st;
  if (n > 0) {
    route_count_kernel<<<blocks_for(n, kCountThreads), kCountThreads, 0, s>>>(expert_ids, n,
                                                                              experts, offsets);
    st = check_launch(fn, "route_count_kernel");
    if (st != MOE4J_OK) return st;
  }
  route_scan_kernel<<<1, kScanThreads, 0, s>>>(offsets, counts, experts, capacity);
  st = check_launch(fn, "route_scan_kernel");
  if (st != MOE4J_OK || n == 0) return st;
  route_place_kernel<<<(unsigned int)(experts + 1), kPlaceThreads, 0, s>>>(
      expert_ids, weights, n, experts, capacity, offsets, sorted_token, slot_of, k);
  return check_launch(fn, "route_place_kernel");
}

int32_t moe4j_cuda_route_gather(int32_t dtype, const void *x, const int32_t *sorted_token,
                                void *rows, int64_t num_rows, int64_t tokens, int64_t hidden,
                                void *stream) {
  const char *fn = "moe4j_cuda_route_gather";
  ArgCheck chk(fn);
  check_route_gather(chk, dtype, x, sorted_token, rows, num_rows, tokens, hidden);
  if (chk.failed()) return chk.status();
  const int64_t row_bytes = hidden * dtype_size(dtype);
  if (num_rows * row_bytes == 0) return MOE4J_OK;
  cudaStream_t s = as_stream(stream);
  const unsigned int blocks = blocks_for(num_rows, kGatherThreads / 32);
  const bool x16 = x == nullptr || aligned_to(x, 16), x4 = x == nullptr || aligned_to(x, 4);
  if (row_bytes % 16 == 0 && x16 && aligned_to(rows, 16))
    route_gather_kernel<<<blocks, kGatherThreads, 0, s>>>((const uint4 *)x, sorted_token,
                                                          (uint4 *)rows, num_rows, tokens,
                                                          row_bytes / 16);
  else if (row_bytes % 4 == 0 && x4 && aligned_to(rows, 4))
    route_gather_kernel<<<blocks, kGatherThreads, 0, s>>>((const uint32_t *)x, sorted_token,
                                                          (uint32_t *)rows, num_rows, tokens,
                                                          row_bytes / 4);
  else
    route_gather_kernel<<<blocks, kGatherThreads, 0, s>>>((const uint16_t *)x, sorted_token,
                                                          (uint16_t *)rows, num_rows, tokens,
                                                          row_bytes / 2);
  return check_launch(fn, "route_gather_kernel");
}

int32_t moe4j_cuda_route_gather_backward(int32_t dtype, const void *d_rows,
                                         const int32_t *slot_of, void *dx, int64_t tokens,
                                         int32_t k, int64_t num_rows, int64_t hidden,
                                         int32_t accumulate, void *stream) {
  const char *fn = "moe4j_cuda_route_gather_backward";
  ArgCheck chk(fn);
  check_route_gather_backward(chk, dtype, d_rows, slot_of, dx, tokens, k, num_rows, hidden,
                              accumulate);
  if (chk.failed()) return chk.status();
  if (tokens * hidden == 0) return MOE4J_OK;
  cudaStream_t s = as_stream(stream);
  const unsigned int blocks = row_blocks(tokens);
  const bool packed = packed_ok(hidden, dtype_size(dtype), d_rows, dx, nullptr);
  if (dtype == MOE4J_DTYPE_BF16) {
    if (packed)
      route_gather_backward_kernel<bf16_t, 8><<<blocks, kRowThreads, 0, s>>>(
          (const bf16_t *)d_rows, slot_of, (bf16_t *)dx, tokens, k, num_rows, hidden, accumulate);
    else
      route_gather_backward_kernel<bf16_t, 1><<<blocks, kRowThreads, 0, s>>>(
          (const bf16_t *)d_rows, slot_of, (bf16_t *)dx, tokens, k, num_rows, hidden, accumulate);
  } else {
    if (packed)
      route_gather_backward_kernel<float, 4><<<blocks, kRowThreads, 0, s>>>(
          (const float *)d_rows, slot_of, (float *)dx, tokens, k, num_rows, hidden, accumulate);
    else
      route_gather_backward_kernel<float, 1><<<blocks, kRowThreads, 0, s>>>(
          (const float *)d_rows, slot_of, (float *)dx, tokens, k, num_rows, hidden, accumulate);
  }
  return check_launch(fn, "route_gather_backward_kernel");
}

int32_t moe4j_cuda_route_combine(int32_t dtype, const void *rows, const int32_t *slot_of,
                                 const float *weights, void *y, int64_t tokens, int32_t k,
                                 int64_t num_rows, int64_t hidden, void *stream) {
  const char *fn = "moe4j_cuda_route_combine";
  ArgCheck chk(fn);
  check_route_combine(chk, dtype, rows, slot_of, weights, y, tokens, k, num_rows, hidden);
  if (chk.failed()) return chk.status();
  if (tokens * hidden == 0) return MOE4J_OK;
  cudaStream_t s = as_stream(stream);
  const unsigned int blocks = row_blocks(tokens);
  const bool packed = packed_ok(hidden, dtype_size(dtype), rows, y, nullptr);
  if (dtype == MOE4J_DTYPE_BF16) {
    if (packed)
      route_combine_kernel<bf16_t, 8><<<blocks, kRowThreads, 0, s>>>(
          (const bf16_t *)rows, slot_of, weights, (bf16_t *)y, tokens, k, num_rows, hidden);
    else
      route_combine_kernel<bf16_t, 1><<<blocks, kRowThreads, 0, s>>>(
          (const bf16_t *)rows, slot_of, weights, (bf16_t *)y, tokens, k, num_rows, hidden);
  } else {
    if (packed)
      route_combine_kernel<float, 4><<<blocks, kRowThreads, 0, s>>>(
          (const float *)rows, slot_of, weights, (float *)y, tokens, k, num_rows, hidden);
    else
      route_combine_kernel<float, 1><<<blocks, kRowThreads, 0, s>>>(
          (const float *)rows, slot_of, weights, (float *)y, tokens, k, num_rows, hidden);
  }
  return check_launch(fn, "route_combine_kernel");
}

int32_t moe4j_cuda_route_combine_backward(int32_t dtype, const void *dy, const void *rows,
                                          const int32_t *slot_of, const float *weights,
                                          void *d_rows, float *d_weights, int64_t tokens,
                                          int32_t k, int64_t num_rows, int64_t hidden,
                                          void *stream) {
  const char *fn = "moe4j_cuda_route_combine_backward";
  ArgCheck chk(fn);
  check_route_combine_backward(chk, dtype, dy, rows, slot_of, weights, d_rows, d_weights, tokens,
                               k, num_rows, hidden);
  if (chk.failed()) return chk.status();
  cudaStream_t s = as_stream(stream);
  const int64_t es = dtype_size(dtype);
  if (num_rows * hidden > 0) {
    int32_t st = cuda_status(cudaMemsetAsync(d_rows, 0, (size_t)(num_rows * hidden * es), s), fn,
                             "cudaMemsetAsync");
    if (st != MOE4J_OK) return st;
  }
  if (tokens * k == 0) return MOE4J_OK;
  if (reference_kernels_enabled()) {
    const int64_t elems = tokens * k * hidden;
    if (dtype == MOE4J_DTYPE_BF16) {
      if (elems > 0)
        route_combine_drows_ref<bf16_t><<<blocks_for(elems, kRefThreads, INT32_MAX), kRefThreads,
                                          0, s>>>((const bf16_t *)dy, slot_of, weights,
                                                  (bf16_t *)d_rows, tokens, k, num_rows, hidden);
      if (d_weights != nullptr)
        route_combine_dweights_ref<bf16_t><<<blocks_for(tokens * k, kRefThreads, INT32_MAX),
                                             kRefThreads, 0, s>>>(
            (const bf16_t *)dy, (const bf16_t *)rows, slot_of, d_weights, tokens, k, num_rows,
            hidden);
    } else {
      if (elems > 0)
        route_combine_drows_ref<float><<<blocks_for(elems, kRefThreads, INT32_MAX), kRefThreads, 0,
                                         s>>>((const float *)dy, slot_of, weights,
                                              (float *)d_rows, tokens, k, num_rows, hidden);
      if (d_weights != nullptr)
        route_combine_dweights_ref<float><<<blocks_for(tokens * k, kRefThreads, INT32_MAX),
                                            kRefThreads, 0, s>>>(
            (const float *)dy, (const float *)rows, slot_of, d_weights, tokens, k, num_rows,
            hidden);
    }
    return check_launch(fn, "route_combine_backward_ref");
  }
  const unsigned int blocks = row_blocks(tokens);
  const bool packed = packed_ok(hidden, es, dy, rows, d_rows);
  if (dtype == MOE4J_DTYPE_BF16) {
    if (packed)
      route_combine_backward_kernel<bf16_t, 8><<<blocks, kRowThreads, 0, s>>>(
          (const bf16_t *)dy, (const bf16_t *)rows, slot_of, weights, (bf16_t *)d_rows, d_weights,
          tokens, k, num_rows, hidden);
    else
      route_combine_backward_kernel<bf16_t, 1><<<blocks, kRowThreads, 0, s>>>(
          (const bf16_t *)dy, (const bf16_t *)rows, slot_of, weights, (bf16_t *)d_rows, d_weights,
          tokens, k, num_rows, hidden);
  } else {
    if (packed)
      route_combine_backward_kernel<float, 4><<<blocks, kRowThreads, 0, s>>>(
          (const float *)dy, (const float *)rows, slot_of, weights, (float *)d_rows, d_weights,
          tokens, k, num_rows, hidden);
    else
      route_combine_backward_kernel<float, 1><<<blocks, kRowThreads, 0, s>>>(
          (const float *)dy, (const float *)rows, slot_of, weights, (float *)d_rows, d_weights,
          tokens, k, num_rows, hidden);
  }
  return check_launch(fn, "route_combine_backward_kernel");
}

}  // extern "C"
