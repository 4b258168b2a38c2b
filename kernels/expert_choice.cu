/*
 * Expert Choice routing on the device (moe4j.h "Expert Choice routing and balancing"): within
 * each routing group of group_size consecutive tokens, each expert takes its `capacity`
 * highest-scoring tokens. One stream, no host synchronization, no scratch beyond the outputs.
 *
 * Layouts: scores F32 [T, E]; offsets I64 [E + 1] (offsets[e] = e * groups * capacity);
 * sorted_token I32 [E * groups * capacity] (expert, then group, then token order); slot_of I32
 * [T, E] (row or -1); weights F32 [T, E] (score where chosen, else 0); uncovered I64 [1] or NULL.
 *
 * The pick order (ec_token_precedes: higher score first, ties to the lower token, NaN last), its
 * radix key (ec_score_key) and the row layout (ec_row) live in common/expert_choice_math.h, shared
 * with the CPU twin (native/src/cpu_expert_choice.cpp); the argument rules in
 * native/src/routing_args.cpp (check_route_expert_choice).
 *
 * Fast path (up to three memsets and two kernels):
 *   (1) cudaMemsetAsync: slot_of to 0xff bytes (= -1 in every int32, so no fill kernel is
 *       needed), weights to 0, uncovered to 0.
 *   (2) ec_select_kernel: one block of 256 threads per (group, expert) pair, pair = g * E + e
 *       (neighbouring blocks read the same score rows). It finds the radix key of the
 *       capacity-th token in pick order by a 4-pass radix select (8-bit digits of the 32-bit
 *       score key, shared-memory integer histograms, the digit picked by a warp-wide scan), which
 *       leaves thr (that key) and need (how many tokens whose key equals thr are taken: the first
 *       `need` of them in token order). Then one ordered pass over the group, 256 tokens a round:
 *       a token is chosen iff key > thr, or key == thr and fewer than `need` ties come before it;
 *       its row is base + (above before it) + min(ties before it, need) (ec_rank_from_counts),
 *       the counts from a block prefix of two ballots. Chosen pairs write sorted_token, slot_of
 *       and weights; the pass stops once `capacity` rows are placed. capacity == group_size skips
 *       the radix select (every token, thr = 0, need = group_size).
 *       group_size <= kEcSharedTokens (4096): the keys are read from global memory once (strided
 *       by E) into 16 KiB of shared memory and every pass reads them there. Larger groups (a
 *       whole batch as one group): the same kernel reads the scores from global memory in each
 *       of its 5 passes (L2-resident for moderate groups; correct for any size, slower).
 *   (3) ec_finish_kernel: offsets[e] = e * groups * capacity (grid-stride), and, when uncovered
 *       is given, a warp per token checks its E slots (any >= 0); per-block counts go to
 *       uncovered with one integer atomicAdd each (order-independent: deterministic).
 *   capacity == 0 launches no selection: slot_of = -1, weights = 0, uncovered = tokens.
 * Cost: (2) reads each score 1 time (cached) or 5 times (large groups), uncoalesced (stride E;
 *   the pair ordering shares the 32-byte sectors between the blocks of a group through L2);
 *   writes E * groups * capacity rows. (1) and (3) stream T * E elements.
 * Reference kernels (reference_kernels_enabled()): ec_select_ref, a thread per (group, expert)
 *   that writes all of its group's slot_of / weights entries, choosing token i iff
 *   ec_tokens_ahead (the plain count of tokens before it in pick order, O(group_size^2)) is below
 *   capacity (test sizes only); ec_finish_ref, one thread for offsets and uncovered. No memsets:
 *   a separate path.
 * Both paths are bitwise equal to the CPU twin (they choose the same unique set and place it by
 * the same layout; weights are copied scores).
 *
 * Limits: experts <= 65536, tokens * experts <= INT32_MAX (validated); the grid has groups * E
 * <= INT32_MAX blocks. Shared memory per select block: 17,480 bytes (cached) or 1,096 bytes;
 * registers (ptxas, sm_90a): 48 cached / 40 global, no spills.
 * Device code: kernels/expert_choice_kernels.cuh (also run on the CPU under the warp emulator by
 * native/tests/test_routing_emulated.cpp); this file holds the launchers and the C ABI.
 */
#include "cuda_check.cuh"
#include "expert_choice_kernels.cuh"
#include "routing_args.h"

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_route_expert_choice(const float *scores, int64_t tokens, int64_t experts,
                                       int64_t group_size, int64_t capacity, int64_t *offsets,
                                       int32_t *sorted_token, int32_t *slot_of, float *weights,
                                       int64_t *uncovered, void *stream) {
  const char *fn = "moe4j_cuda_route_expert_choice";
  ArgCheck chk(fn);
  check_route_expert_choice(chk, scores, tokens, experts, group_size, capacity, offsets,
                            sorted_token, slot_of, weights, uncovered);
  if (chk.failed()) return chk.status();
  cudaStream_t s = as_stream(stream);
  const int64_t groups = ec_groups(tokens, group_size);
  const int64_t per_expert = ec_rows_per_expert(groups, capacity);
  const int64_t n = tokens * experts, pairs = groups * experts;
  int32_t st = MOE4J_OK;
  if (reference_kernels_enabled()) {
    if (pairs > 0) {
      ec_select_ref<<<blocks_for(pairs, kEcRefThreads, INT32_MAX), kEcRefThreads, 0, s>>>(
          scores, experts, group_size, capacity, groups, sorted_token, slot_of, weights);
      st = check_launch(fn, "ec_select_ref");
      if (st != MOE4J_OK) return st;
    }
    ec_finish_ref<<<1, 1, 0, s>>>(slot_of, tokens, experts, per_expert, offsets, uncovered);
    return check_launch(fn, "ec_finish_ref");
  }
  if (n > 0) {
    st = cuda_status(cudaMemsetAsync(slot_of, 0xff, (size_t)n * sizeof(int32_t), s), fn,
                     "cudaMemsetAsync");
    if (st != MOE4J_OK) return st;
    st = cuda_status(cudaMemsetAsync(weights, 0, (size_t)n * sizeof(float), s), fn,
                     "cudaMemsetAsync");
    if (st != MOE4J_OK) return st;
  }
  if (uncovered != nullptr) {
    st = cuda_status(cudaMemsetAsync(uncovered, 0, sizeof(int64_t), s), fn, "cudaMemsetAsync");
    if (st != MOE4J_OK) return st;
  }
  if (pairs > 0 && capacity > 0) {
    if (group_size <= kEcSharedTokens) {
      ec_select_kernel<true><<<(unsigned int)pairs, kEcThreads, 0, s>>>(
          scores, experts, group_size, capacity, groups, sorted_token, slot_of, weights);
    } else {
      ec_select_kernel<false><<<(unsigned int)pairs, kEcThreads, 0, s>>>(
          scores, experts, group_size, capacity, groups, sorted_token, slot_of, weights);
    }
    st = check_launch(fn, "ec_select_kernel");
    if (st != MOE4J_OK) return st;
  }
  const int64_t items = tokens > experts + 1 ? tokens : experts + 1;
  ec_finish_kernel<<<blocks_for(items, kEcFinishThreads / 32), kEcFinishThreads, 0, s>>>(
      slot_of, tokens, experts, per_expert, offsets, (unsigned long long *)uncovered);
  return check_launch(fn, "ec_finish_kernel");
}

}  // extern "C"
