/*
 * The device code of Expert Choice routing (see kernels/expert_choice.cu for what, layouts and
 * why): the select kernel (radix select + ordered placement), the finish kernel and the
 * reference kernels, in a header so a CPU test can run the very same kernels under a warp
 * emulator (native/tests/test_routing_emulated.cpp). The includer provides the CUDA builtins:
 * expert_choice.cu includes cuda_check.cuh, the emulation test native/tests/warp_emulator.h.
 * Include once per translation unit (internal linkage).
 */
#pragma once
#include <stdint.h>

#include "expert_choice_math.h"
#include "hd.h"

namespace moe4j {

namespace {

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
  MOE4J_STATIC_SHARED uint32_t keys[kCached ? kEcSharedTokens : 1];
  MOE4J_STATIC_SHARED uint32_t hist[256];
  MOE4J_STATIC_SHARED int32_t warp_above[kEcWarps], warp_ties[kEcWarps];
  MOE4J_STATIC_SHARED uint32_t chosen_digit, chosen_remaining;
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
  MOE4J_STATIC_SHARED unsigned long long warp_counts[kEcFinishThreads / 32];
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

}  // namespace

}  // namespace moe4j
