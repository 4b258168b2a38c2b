/*
 * CPU twin of the Expert Choice routing kernel (kernels/expert_choice.cu).
 *
 * Layout (moe4j.h "Expert Choice routing and balancing"): scores F32 [T, E]; routing groups of
 * group_size consecutive tokens (groups = T / group_size); offsets I64 [E + 1] (static:
 * offsets[e] = e * groups * capacity); sorted_token I32 [E * groups * capacity] (expert-major,
 * then group, then token order); slot_of I32 [T, E] (row or -1); weights F32 [T, E] (score where
 * chosen, else 0); uncovered I64 [1] (optional): tokens no expert chose. The output is in the
 * layout route_combine / route_combine_backward take with k = E (num_rows = E * groups *
 * capacity).
 *
 * The pick order, the row layout and the key are in kernels/common/expert_choice_math.h, shared
 * with the GPU: both twins choose the same pairs (the order is strict and total, so the chosen set
 * is unique whatever the algorithm) and give them the same rows.
 *
 * Algorithm: (1) offsets; slot_of = -1 and weights = 0 for every (t, e), parallel over tokens.
 * (2) Parallel over the (group, expert) pairs: a bounded heap of `capacity` local token indices
 * with the worst chosen on top (std::push_heap / pop_heap with ec_token_precedes as "less"),
 * O(group_size log capacity); the survivors sorted by token give the rows. capacity == group_size
 * takes every token without a heap; capacity == 0 takes none. (3) uncovered = tokens whose E slots
 * are all -1, an integer reduction over tokens. Each output element is written by one iteration,
 * so the results are bitwise equal for any thread count.
 *
 * Scratch: a heap of `capacity` int32 per thread (allocation failure -> MOE4J_ERR_OUT_OF_MEMORY).
 */
#include <omp.h>

#include <algorithm>
#include <new>
#include <vector>

#include "cpu_common.h"
#include "expert_choice_math.h"
#include "routing_args.h"

using namespace moe4j;

namespace {

/* Work (elements) below which a loop stays on one thread. */
constexpr int64_t kParallelMin = 4096;

void route_expert_choice(const float *scores, int64_t tokens, int64_t experts, int64_t group_size,
                         int64_t capacity, int64_t *offsets, int32_t *sorted_token,
                         int32_t *slot_of, float *weights, int64_t *uncovered) {
  const int64_t E = experts, G = group_size, C = capacity;
  const int64_t groups = ec_groups(tokens, G);
  const int64_t per_expert = ec_rows_per_expert(groups, C);
  const int64_t pairs = groups * E;
  const bool heap_needed = C > 0 && C < G && pairs > 0;
  /* before any output is written, so an allocation failure leaves them untouched */
  std::vector<int32_t> heaps(heap_needed ? (size_t)omp_get_max_threads() * (size_t)C : 0);
  for (int64_t e = 0; e <= E; e++) offsets[e] = e * per_expert;

#pragma omp parallel for schedule(static) if (tokens > 1 && tokens * E >= kParallelMin)
  for (int64_t t = 0; t < tokens; t++) {
    for (int64_t e = 0; e < E; e++) {
      slot_of[t * E + e] = -1;
      weights[t * E + e] = 0.0f;
    }
  }

  if (C > 0 && pairs > 0) {
#pragma omp parallel for schedule(dynamic, 1) if (pairs > 1 && pairs * G >= kParallelMin)
    for (int64_t p = 0; p < pairs; p++) {
      const int64_t g = p / E, e = p % E;
      const int64_t t0 = g * G;
      const float *col = scores + t0 * E + e; /* local token i: col[i * E] */
      int64_t row = ec_row(e, g, 0, groups, C);
      if (!heap_needed) { /* capacity == group_size: every token, in order */
        for (int64_t i = 0; i < G; i++, row++) {
          const int64_t t = t0 + i;
          sorted_token[row] = (int32_t)t;
          slot_of[t * E + e] = (int32_t)row;
          weights[t * E + e] = col[i * E];
        }
        continue;
      }
      /* "less" = comes first in pick order: the heap's top is the worst token kept so far */
      const auto precedes = [col, E](int32_t a, int32_t b) {
        return ec_token_precedes(col[(int64_t)a * E], a, col[(int64_t)b * E], b);
      };
      int32_t *heap = heaps.data() + (size_t)omp_get_thread_num() * (size_t)C;
      int64_t size = 0;
      for (int64_t i = 0; i < G; i++) {
        const int32_t li = (int32_t)i;
        if (size < C) {
          heap[size++] = li;
          std::push_heap(heap, heap + size, precedes);
        } else if (precedes(li, heap[0])) {
          std::pop_heap(heap, heap + size, precedes);
          heap[size - 1] = li;
          std::push_heap(heap, heap + size, precedes);
        }
      }
      std::sort(heap, heap + size); /* token order */
      for (int64_t r = 0; r < size; r++, row++) {
        const int64_t t = t0 + heap[r];
        sorted_token[row] = (int32_t)t;
        slot_of[t * E + e] = (int32_t)row;
        weights[t * E + e] = col[(int64_t)heap[r] * E];
      }
    }
  }

  if (uncovered != nullptr) {
    int64_t count = 0;
#pragma omp parallel for schedule(static) reduction(+ : count) \
    if (tokens > 1 && tokens * E >= kParallelMin)
    for (int64_t t = 0; t < tokens; t++) {
      bool covered = false;
      for (int64_t e = 0; e < E && !covered; e++) covered = slot_of[t * E + e] >= 0;
      if (!covered) count++;
    }
    *uncovered = count;
  }
}

}  // namespace

extern "C" {

int32_t moe4j_cpu_route_expert_choice(const float *scores, int64_t tokens, int64_t experts,
                                      int64_t group_size, int64_t capacity, int64_t *offsets,
                                      int32_t *sorted_token, int32_t *slot_of, float *weights,
                                      int64_t *uncovered) {
  static const char *const kFn = "moe4j_cpu_route_expert_choice";
  ArgCheck chk(kFn);
  check_route_expert_choice(chk, scores, tokens, experts, group_size, capacity, offsets,
                            sorted_token, slot_of, weights, uncovered);
  if (chk.failed()) return chk.status();
  try {
    route_expert_choice(scores, tokens, experts, group_size, capacity, offsets, sorted_token,
                        slot_of, weights, uncovered);
  } catch (const std::bad_alloc &) {
    return fail(MOE4J_ERR_OUT_OF_MEMORY, "%s: out of host memory for scratch buffers", kFn);
  }
  return MOE4J_OK;
}

}  // extern "C"
