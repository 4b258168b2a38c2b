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
 */
#include "cuda_check.cuh"
#include "expert_choice_math.h"
#include "routing_args.h"

namespace moe4j {

constexpr int kEcThreads = 256;              /* select block: 8 warps */
constexpr int kEcWarps = kEcThreads / 32;
constexpr int64_t kEcSharedTokens = 4096;    /* largest group_size with keys in shared memory */
constexpr int kEcFinishThreads = 256;        /* 8 warps, a token each */
constexpr int kEcRefThreads = 128;           /* reference: a thread per (group, expert) */

/* Radix key of local token i: from the shared cache or straight from the scores. */
template <bool kCached>
__device__ __forceinline__ uint32_t ec_key_at(const uint32_t *keys, const float *col, int64_t E,
                                              int64_t i) {
  if (kCached) return keys[i];
  return ec_score_key(col[i * E]);
}

/* Warp 0, after a histogram pass: the digit (from 255 down) where the `remaining`-th key
 * among those matching the prefix lies, and its rank among the keys with that digit. Lane l
 * owns digits 255 - 8l down to 248 - 8l; an inclusive scan of the lane sums finds the lane. */
__device__ __forceinline__ void ec_pick_digit(const uint32_t *hist, uint32_t remaining,
                                              uint32_t *digit_out, uint32_t *remaining_out) {
  const int lane = threadIdx.x & 31;
  const int top = 255 - 8 * lane;
  uint32_t sum = 0;
  for (int q = 0; q < 8; q++) sum += hist[top - q];
  uint32_t inc = sum;
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t up = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += up;
  }
  const unsigned int hit = __ballot_sync(0xffffffffu, inc >= remaining);
  const int owner = __ffs(hit) - 1; /* hit != 0: the matching keys number >= remaining */
  if (lane == owner) {
    uint32_t r = remaining - (inc - sum);
    int d = top;
    for (int q = 0; q < 7 && hist[d] < r; q++, d--) r -= hist[d];
    *digit_out = (uint32_t)d;
    *remaining_out = r;
  }
}

/* One block per (group, expert): radix select of the threshold, then ordered placement. slot_of
 * is -1 and weights 0 on entry; only chosen pairs are written. 0 < C <= G. */
template <bool kCached>
__global__ void __launch_bounds__(kEcThreads)
ec_select_kernel(const float *__restrict__ scores, int64_t E, int64_t G, int64_t C,
                 int64_t groups, int32_t *__restrict__ sorted_token,
                 int32_t *__restrict__ slot_of, float *__restrict__ weights) {
  __shared__ uint32_t keys[kCached ? kEcSharedTokens : 1];
  __shared__ uint32_t hist[256];
  __shared__ int32_t warp_above[kEcWarps], warp_ties[kEcWarps];
  __shared__ uint32_t chosen_digit, chosen_remaining;
  const int64_t pair = blockIdx.x;
  const int64_t g = pair / E, e = pair % E;
  const int64_t t0 = g * G;
  const float *col = scores + t0 * E + e; /* local token i: col[i * E] */
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  if (kCached) {
    for (int64_t i = tid; i < G; i += kEcThreads) keys[i] = ec_score_key(col[i * E]);
    __syncthreads();
  }

  /* threshold key and how many of its ties are taken */
  uint32_t thr = 0u;
  int64_t need = G;
  if (C < G) {
    uint32_t prefix = 0u, mask = 0u;
    uint32_t remaining = (uint32_t)C; /* rank of the wanted key among those matching prefix */
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int d = tid; d < 256; d += kEcThreads) hist[d] = 0u;
      __syncthreads();
      for (int64_t i = tid; i < G; i += kEcThreads) {
        const uint32_t k = ec_key_at<kCached>(keys, col, E, i);
        if ((k & mask) == prefix) atomicAdd(&hist[(k >> shift) & 0xffu], 1u);
      }
      __syncthreads();
      if (warp == 0) ec_pick_digit(hist, remaining, &chosen_digit, &chosen_remaining);
      __syncthreads();
      prefix |= chosen_digit << shift;
      mask |= 0xffu << shift;
      remaining = chosen_remaining; /* rewritten only after the next pass's second barrier */
    }
    thr = prefix;
    need = remaining;
  }

  /* ordered placement: rounds of kEcThreads tokens, block prefix of two ballots */
  const int64_t base = ec_row(e, g, 0, groups, C);
  int64_t above_run = 0, ties_run = 0;
  for (int64_t c0 = 0; c0 < G; c0 += kEcThreads) {
    const int64_t i = c0 + tid;
    const bool valid = i < G;
    const uint32_t k = valid ? ec_key_at<kCached>(keys, col, E, i) : 0u;
    const bool above = valid && k > thr, tie = valid && k == thr;
    const unsigned int ba = __ballot_sync(0xffffffffu, above);
    const unsigned int bt = __ballot_sync(0xffffffffu, tie);
    __syncthreads(); /* the previous round's warp counts are read */
    if (lane == 0) {
      warp_above[warp] = __popc(ba);
      warp_ties[warp] = __popc(bt);
    }
    __syncthreads();
    int64_t a_before = above_run, t_before = ties_run, a_round = 0, t_round = 0;
    for (int w = 0; w < kEcWarps; w++) {
      if (w < warp) {
        a_before += warp_above[w];
        t_before += warp_ties[w];
      }
      a_round += warp_above[w];
      t_round += warp_ties[w];
    }
    const unsigned int lower = (1u << lane) - 1u;
    a_before += __popc(ba & lower);
    t_before += __popc(bt & lower);
    if (above || (tie && t_before < need)) {
      const int64_t row = base + ec_rank_from_counts(a_before, t_before, need);
      const int64_t t = t0 + i;
      sorted_token[row] = (int32_t)t;
      slot_of[t * E + e] = (int32_t)row;
      weights[t * E + e] = col[i * E];
    }
    above_run += a_round;
    ties_run += t_round;
    if (ec_rank_from_counts(above_run, ties_run, need) >= C) break; /* block-uniform */
  }
}

/* offsets[e] = e * per_expert; uncovered (zeroed first, may be NULL) += tokens whose E slots are
 * all -1, a warp per token. */
__global__ void __launch_bounds__(kEcFinishThreads)
ec_finish_kernel(const int32_t *__restrict__ slot_of, int64_t tokens, int64_t E,
                 int64_t per_expert, int64_t *__restrict__ offsets,
                 unsigned long long *__restrict__ uncovered) {
  __shared__ unsigned long long warp_counts[kEcFinishThreads / 32];
  const int64_t gtid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = gtid; e <= E; e += stride) offsets[e] = e * per_expert;
  if (uncovered == nullptr) return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  unsigned long long count = 0;
  for (int64_t t = gtid >> 5; t < tokens; t += stride >> 5) {
    const int32_t *row = slot_of + t * E;
    bool covered = false;
    for (int64_t c0 = 0; c0 < E && !covered; c0 += 32) {
      const int64_t c = c0 + lane;
      covered = __any_sync(0xffffffffu, c < E && row[c] >= 0);
    }
    if (!covered) count++;
  }
  if (lane == 0) warp_counts[warp] = count;
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned long long sum = 0;
    for (int w = 0; w < kEcFinishThreads / 32; w++) sum += warp_counts[w];
    if (sum != 0) atomicAdd(uncovered, sum);
  }
}

/* Reference: a thread per (group, expert), plain selection by counting the tokens ahead; writes
 * every slot_of / weights entry of its pair. */
__global__ void ec_select_ref(const float *scores, int64_t E, int64_t G, int64_t C,
                              int64_t groups, int32_t *sorted_token, int32_t *slot_of,
                              float *weights) {
  const int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (p >= groups * E) return;
  const int64_t g = p / E, e = p % E, t0 = g * G;
  const float *col = scores + t0 * E + e;
  int64_t r = 0;
  for (int64_t i = 0; i < G; i++) {
    const int64_t t = t0 + i;
    if (r < C && ec_tokens_ahead(col, E, G, i) < C) {
      const int64_t row = ec_row(e, g, r++, groups, C);
      sorted_token[row] = (int32_t)t;
      slot_of[t * E + e] = (int32_t)row;
      weights[t * E + e] = col[i * E];
    } else {
      slot_of[t * E + e] = -1;
      weights[t * E + e] = 0.0f;
    }
  }
}

/* Reference: one thread for offsets and uncovered. */
__global__ void ec_finish_ref(const int32_t *slot_of, int64_t tokens, int64_t E,
                              int64_t per_expert, int64_t *offsets, int64_t *uncovered) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  for (int64_t e = 0; e <= E; e++) offsets[e] = e * per_expert;
  if (uncovered == nullptr) return;
  int64_t count = 0;
  for (int64_t t = 0; t < tokens; t++) {
    bool covered = false;
    for (int64_t e = 0; e < E; e++) covered = covered || slot_of[t * E + e] >= 0;
    if (!covered) count++;
  }
  *uncovered = count;
}

}  // namespace moe4j

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
