/*
 * CPU twin of the token-choice routing kernels (kernels/routing.cu): router scores, top-k
 * selection, the dispatch plan (sort assignments by expert, with capacity dropping), gather of
 * token rows into expert order, and combine back in token order; each with its backward.
 *
 * Layout (moe4j.h "Routing (token choice)"): logits/scores [T, E] F32; expert_ids I32 and
 * weights F32 [T, k]; offsets I64 [E + 1]; sorted_token I32 [T * k]; slot_of I32 [T, k];
 * x, y [T, H] and rows [R, H] in dtype (F32|BF16: loaded to f32, computed in f32, rounded once
 * on store).
 *
 * The selection, tie and priority rules and the per-element summation orders live in
 * kernels/common/routing_math.h, shared with the GPU, so both twins pick the same experts, drop
 * the same assignments and round alike. Everything is deterministic: rows/tokens run in parallel
 * (OpenMP) but each output element is produced by one iteration in a fixed order, so results are
 * bitwise equal for any thread count.
 *
 * Plan: histogram per expert -> bucket the assignments by expert in (token, rank) order (a stable
 * counting sort) -> for an expert over capacity, sort a copy of its bucket by the capacity
 * priority and keep the first `capacity` -> offsets by exclusive scan of the kept counts -> kept
 * rows of each expert in (token, rank) order. Rows of sorted_token past offsets[E] are -1.
 *
 * gather writes zeros for rows whose sorted_token is -1 (the padding past offsets[E] when a
 * caller passes the static T * k rows), so no stale data flows into the experts.
 */
#include <string.h>

#include <algorithm>
#include <new>
#include <vector>

#include "cpu_common.h"
#include "routing_args.h"
#include "routing_math.h"

using namespace moe4j;

static_assert(kRouteLanes == kLanes, "routing lanes must be the CPU reduction lanes");

namespace {

/* Work (elements) below which a loop stays on one thread. */
constexpr int64_t kParallelMin = 4096;
/* Columns per tile of the gather-backward / combine accumulators (stack scratch). */
constexpr int64_t kTileCols = 512;

/* ---- content checks (CPU only: they read the buffers) ---- */

void check_ids(ArgCheck &chk, const int32_t *ids, int64_t n, int64_t experts) {
  if (chk.failed()) return;
  for (int64_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= experts) {
      chk.require(false, "expert_ids[%lld] = %d is out of range [0, %lld)", (long long)i, ids[i],
                  (long long)experts);
      return;
    }
  }
}

/* Every entry of `v` in [-1, limit). */
void check_indices(ArgCheck &chk, const char *name, const int32_t *v, int64_t n, int64_t limit) {
  if (chk.failed()) return;
  for (int64_t i = 0; i < n; i++) {
    if (v[i] < -1 || v[i] >= limit) {
      chk.require(false, "%s[%lld] = %d is out of range [-1, %lld)", name, (long long)i, v[i],
                  (long long)limit);
      return;
    }
  }
}

/* ---- scores ---- */

void router_scores(const float *logits, float *scores, int64_t tokens, int64_t experts,
                   int32_t score_fn) {
#pragma omp parallel for schedule(static) if (tokens > 1 && tokens * experts >= kParallelMin)
  for (int64_t t = 0; t < tokens; t++)
    router_scores_row(logits + t * experts, scores + t * experts, experts, score_fn);
}

void router_scores_backward(const float *scores, const float *d_scores, float *d_logits,
                            int64_t tokens, int64_t experts, int32_t score_fn) {
#pragma omp parallel for schedule(static) if (tokens > 1 && tokens * experts >= kParallelMin)
  for (int64_t t = 0; t < tokens; t++)
    router_scores_backward_row(scores + t * experts, d_scores + t * experts, d_logits + t * experts,
                               experts, score_fn);
}

/* ---- top-k ---- */

void route_topk(const float *scores, const float *bias, int64_t tokens, int64_t experts, int32_t k,
                int32_t renormalize, int32_t *expert_ids, float *weights) {
#pragma omp parallel for schedule(static) if (tokens > 1 && tokens * experts >= kParallelMin)
  for (int64_t t = 0; t < tokens; t++)
    topk_row(scores + t * experts, bias, experts, k, expert_ids + t * k, weights + t * k,
             renormalize);
}

void route_topk_backward(const float *scores, const int32_t *expert_ids, const float *d_weights,
                         float *d_scores, int64_t tokens, int64_t experts, int32_t k,
                         int32_t renormalize) {
#pragma omp parallel for schedule(static) if (tokens > 1 && tokens * experts >= kParallelMin)
  for (int64_t t = 0; t < tokens; t++) {
    float *row = d_scores + t * experts;
    for (int64_t e = 0; e < experts; e++) row[e] = 0.0f;
    topk_backward_row(scores + t * experts, expert_ids + t * k, d_weights + t * k, k, renormalize,
                      row);
  }
}

/* ---- plan ---- */

/* Marks an assignment chosen by the capacity selection until it gets its row. */
constexpr int32_t kChosen = -2;

void route_plan(const int32_t *expert_ids, const float *weights, int64_t tokens, int64_t experts,
                int32_t k, int64_t capacity, int64_t *offsets, int32_t *sorted_token,
                int32_t *slot_of, int64_t *counts) {
  const int64_t n = tokens * k;
  std::vector<int64_t> count(experts, 0), start(experts + 1, 0), fill(experts);
  std::vector<int32_t> bucket(n), by_priority(capacity > 0 ? n : 0);
  for (int64_t a = 0; a < n; a++) count[expert_ids[a]]++;
  for (int64_t e = 0; e < experts; e++) start[e + 1] = start[e] + count[e];
  for (int64_t e = 0; e < experts; e++) fill[e] = start[e];
  /* assignment a = t * k + j: increasing a is (token, rank) order, so buckets are stable */
  for (int64_t a = 0; a < n; a++) bucket[fill[expert_ids[a]]++] = (int32_t)a;
  offsets[0] = 0;
  for (int64_t e = 0; e < experts; e++) {
    const int64_t kept = capacity > 0 && count[e] > capacity ? capacity : count[e];
    offsets[e + 1] = offsets[e] + kept;
  }
  const auto precedes = [weights, k](int32_t a, int32_t b) {
    return assignment_precedes(weights[a], a / k, a % k, weights[b], b / k, b % k);
  };
#pragma omp parallel for schedule(dynamic, 1) if (experts > 1 && n >= kParallelMin)
  for (int64_t e = 0; e < experts; e++) {
    const int32_t *list = bucket.data() + start[e];
    const int64_t c = count[e];
    int64_t row = offsets[e];
    if (offsets[e + 1] - offsets[e] == c) { /* everything fits: no selection */
      for (int64_t i = 0; i < c; i++) {
        slot_of[list[i]] = (int32_t)row;
        sorted_token[row++] = list[i] / k;
      }
      continue;
    }
    /* over capacity: the first `capacity` in priority order are kept, then laid out in
     * (token, rank) order like the rest */
    int32_t *pri = by_priority.data() + start[e];
    for (int64_t i = 0; i < c; i++) {
      pri[i] = list[i];
      slot_of[list[i]] = -1;
    }
    std::sort(pri, pri + c, precedes);
    for (int64_t i = 0; i < capacity; i++) slot_of[pri[i]] = kChosen;
    for (int64_t i = 0; i < c; i++) {
      if (slot_of[list[i]] != kChosen) continue;
      slot_of[list[i]] = (int32_t)row;
      sorted_token[row++] = list[i] / k;
    }
  }
  for (int64_t r = offsets[experts]; r < n; r++) sorted_token[r] = -1;
  if (counts != nullptr)
    for (int64_t e = 0; e < experts; e++) counts[e] = count[e];
}

/* ---- gather / combine ---- */

template <typename T>
void route_gather(const T *x, const int32_t *sorted_token, T *rows, int64_t num_rows,
                  int64_t hidden) {
  if (hidden == 0) return; /* row buffers may be NULL */
  const size_t row_bytes = (size_t)hidden * sizeof(T);
#pragma omp parallel for schedule(static) if (num_rows > 1 && num_rows * hidden >= kChunk)
  for (int64_t r = 0; r < num_rows; r++) {
    const int32_t t = sorted_token[r];
    if (t >= 0)
      memcpy((void *)(rows + r * hidden), (const void *)(x + (int64_t)t * hidden), row_bytes);
    else
      memset((void *)(rows + r * hidden), 0, row_bytes);
  }
}

/* acc[0..n) += w * src[0..n) (w NULL: 1), in the combine_term rounding. */
template <typename T>
MOE4J_SIMD_CLONES void add_row(float *acc, const T *src, const float *w, int j, int64_t n) {
  for (int64_t h = 0; h < n; h++) acc[h] = combine_term(acc[h], w, j, to_f32(src[h]));
}

/* One token of gather backward (w NULL, accumulate as given) or combine (w maybe NULL,
 * accumulate 0): out[h] (=|+=) sum over kept j of w_j * src[slot_j, h], in j order. */
template <typename T>
void sum_slots(const T *src, const int32_t *slots, const float *w, T *out, int32_t k,
               int64_t hidden, int32_t accumulate) {
  float acc[kTileCols];
  for (int64_t h0 = 0; h0 < hidden; h0 += kTileCols) {
    const int64_t n = hidden - h0 < kTileCols ? hidden - h0 : kTileCols;
    for (int64_t h = 0; h < n; h++) acc[h] = 0.0f;
    for (int j = 0; j < k; j++)
      if (slots[j] >= 0) add_row(acc, src + (int64_t)slots[j] * hidden + h0, w, j, n);
    T *o = out + h0;
    if (accumulate) {
      for (int64_t h = 0; h < n; h++) o[h] = from_f32<T>(add_rn(to_f32(o[h]), acc[h]));
    } else {
      for (int64_t h = 0; h < n; h++) o[h] = from_f32<T>(acc[h]);
    }
  }
}

template <typename T>
void route_sum_slots(const T *src, const int32_t *slot_of, const float *weights, T *out,
                     int64_t tokens, int32_t k, int64_t hidden, int32_t accumulate) {
#pragma omp parallel for schedule(static) if (tokens > 1 && tokens * hidden * k >= kChunk)
  for (int64_t t = 0; t < tokens; t++)
    sum_slots(src, slot_of + t * k, weights != nullptr ? weights + t * k : nullptr,
              out + t * hidden, k, hidden, accumulate);
}

template <typename T>
MOE4J_SIMD_CLONES void scale_row(const T *dy, float w, T *out, int64_t n) {
  for (int64_t h = 0; h < n; h++) out[h] = from_f32<T>(mul_rn(w, to_f32(dy[h])));
}

template <typename T>
MOE4J_SIMD_CLONES float dot_row(const T *a, const T *b, int64_t n) {
  return route_dot(a, b, n);
}

/* `referenced[r]` = 1 for the rows some kept slot names (validated distinct beforehand). */
template <typename T>
void route_combine_backward(const T *dy, const T *rows, const int32_t *slot_of,
                            const float *weights, T *d_rows, float *d_weights, int64_t tokens,
                            int32_t k, int64_t num_rows, int64_t hidden,
                            const std::vector<uint8_t> &referenced) {
  const size_t row_bytes = (size_t)hidden * sizeof(T);
#pragma omp parallel for schedule(static) if (num_rows > 1 && num_rows * hidden >= kChunk)
  for (int64_t r = 0; r < num_rows; r++)
    if (!referenced[r] && hidden > 0) memset((void *)(d_rows + r * hidden), 0, row_bytes);
#pragma omp parallel for schedule(static) if (tokens > 1 && tokens * hidden * k >= kChunk)
  for (int64_t t = 0; t < tokens; t++) {
    const T *g = dy + t * hidden;
    for (int j = 0; j < k; j++) {
      const int64_t a = t * k + j;
      const int32_t s = slot_of[a];
      if (s < 0) {
        if (d_weights != nullptr) d_weights[a] = 0.0f;
        continue;
      }
      scale_row(g, weights != nullptr ? weights[a] : 1.0f, d_rows + (int64_t)s * hidden, hidden);
      if (d_weights != nullptr) d_weights[a] = dot_row(g, rows + (int64_t)s * hidden, hidden);
    }
  }
}

/* Runs fn, turning an allocation failure into MOE4J_ERR_OUT_OF_MEMORY. */
template <typename F>
int32_t guarded(const char *fn_name, F &&fn) {
  try {
    fn();
  } catch (const std::bad_alloc &) {
    return fail(MOE4J_ERR_OUT_OF_MEMORY, "%s: out of host memory for scratch buffers", fn_name);
  }
  return MOE4J_OK;
}

}  // namespace

extern "C" {

int32_t moe4j_cpu_router_scores(const float *logits, float *scores, int64_t tokens,
                                int64_t experts, int32_t score_fn) {
  ArgCheck chk("moe4j_cpu_router_scores");
  check_router_scores(chk, logits, scores, tokens, experts, score_fn);
  if (chk.failed()) return chk.status();
  router_scores(logits, scores, tokens, experts, score_fn);
  return MOE4J_OK;
}

int32_t moe4j_cpu_router_scores_backward(const float *scores, const float *d_scores,
                                         float *d_logits, int64_t tokens, int64_t experts,
                                         int32_t score_fn) {
  ArgCheck chk("moe4j_cpu_router_scores_backward");
  check_router_scores_backward(chk, scores, d_scores, d_logits, tokens, experts, score_fn);
  if (chk.failed()) return chk.status();
  router_scores_backward(scores, d_scores, d_logits, tokens, experts, score_fn);
  return MOE4J_OK;
}

int32_t moe4j_cpu_route_topk(const float *scores, const float *bias, int64_t tokens,
                             int64_t experts, int32_t k, int32_t renormalize,
                             int32_t *expert_ids, float *weights) {
  ArgCheck chk("moe4j_cpu_route_topk");
  check_route_topk(chk, scores, bias, tokens, experts, k, renormalize, expert_ids, weights);
  if (chk.failed()) return chk.status();
  route_topk(scores, bias, tokens, experts, k, renormalize, expert_ids, weights);
  return MOE4J_OK;
}

int32_t moe4j_cpu_route_topk_backward(const float *scores, const int32_t *expert_ids,
                                      const float *d_weights, float *d_scores, int64_t tokens,
                                      int64_t experts, int32_t k, int32_t renormalize) {
  ArgCheck chk("moe4j_cpu_route_topk_backward");
  check_route_topk_backward(chk, scores, expert_ids, d_weights, d_scores, tokens, experts, k,
                            renormalize);
  if (chk.failed()) return chk.status();
  check_ids(chk, expert_ids, tokens * k, experts); /* CPU only: reads the ids */
  if (chk.failed()) return chk.status();
  route_topk_backward(scores, expert_ids, d_weights, d_scores, tokens, experts, k, renormalize);
  return MOE4J_OK;
}

int32_t moe4j_cpu_route_plan(const int32_t *expert_ids, const float *weights, int64_t tokens,
                             int64_t experts, int32_t k, int64_t capacity, int64_t *offsets,
                             int32_t *sorted_token, int32_t *slot_of, int64_t *counts) {
  static const char *const kFn = "moe4j_cpu_route_plan";
  ArgCheck chk(kFn);
  check_route_plan(chk, expert_ids, weights, tokens, experts, k, capacity, offsets, sorted_token,
                   slot_of, counts);
  if (chk.failed()) return chk.status();
  check_ids(chk, expert_ids, tokens * k, experts); /* CPU only: reads the ids */
  if (chk.failed()) return chk.status();
  return guarded(kFn, [&] {
    route_plan(expert_ids, weights, tokens, experts, k, capacity, offsets, sorted_token, slot_of,
               counts);
  });
}

int32_t moe4j_cpu_route_gather(int32_t dtype, const void *x, const int32_t *sorted_token,
                               void *rows, int64_t num_rows, int64_t tokens, int64_t hidden) {
  ArgCheck chk("moe4j_cpu_route_gather");
  check_route_gather(chk, dtype, x, sorted_token, rows, num_rows, tokens, hidden);
  if (chk.failed()) return chk.status();
  check_indices(chk, "sorted_token", sorted_token, num_rows, tokens); /* CPU only */
  if (chk.failed()) return chk.status();
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    route_gather((const T *)x, sorted_token, (T *)rows, num_rows, hidden);
  });
  return MOE4J_OK;
}

int32_t moe4j_cpu_route_gather_backward(int32_t dtype, const void *d_rows, const int32_t *slot_of,
                                        void *dx, int64_t tokens, int32_t k, int64_t num_rows,
                                        int64_t hidden, int32_t accumulate) {
  ArgCheck chk("moe4j_cpu_route_gather_backward");
  check_route_gather_backward(chk, dtype, d_rows, slot_of, dx, tokens, k, num_rows, hidden,
                              accumulate);
  if (chk.failed()) return chk.status();
  check_indices(chk, "slot_of", slot_of, tokens * k, num_rows); /* CPU only */
  if (chk.failed()) return chk.status();
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    route_sum_slots((const T *)d_rows, slot_of, nullptr, (T *)dx, tokens, k, hidden, accumulate);
  });
  return MOE4J_OK;
}

int32_t moe4j_cpu_route_combine(int32_t dtype, const void *rows, const int32_t *slot_of,
                                const float *weights, void *y, int64_t tokens, int32_t k,
                                int64_t num_rows, int64_t hidden) {
  ArgCheck chk("moe4j_cpu_route_combine");
  check_route_combine(chk, dtype, rows, slot_of, weights, y, tokens, k, num_rows, hidden);
  if (chk.failed()) return chk.status();
  check_indices(chk, "slot_of", slot_of, tokens * k, num_rows); /* CPU only */
  if (chk.failed()) return chk.status();
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    route_sum_slots((const T *)rows, slot_of, weights, (T *)y, tokens, k, hidden, 0);
  });
  return MOE4J_OK;
}

int32_t moe4j_cpu_route_combine_backward(int32_t dtype, const void *dy, const void *rows,
                                         const int32_t *slot_of, const float *weights,
                                         void *d_rows, float *d_weights, int64_t tokens,
                                         int32_t k, int64_t num_rows, int64_t hidden) {
  static const char *const kFn = "moe4j_cpu_route_combine_backward";
  ArgCheck chk(kFn);
  check_route_combine_backward(chk, dtype, dy, rows, slot_of, weights, d_rows, d_weights, tokens,
                               k, num_rows, hidden);
  if (chk.failed()) return chk.status();
  check_indices(chk, "slot_of", slot_of, tokens * k, num_rows); /* CPU only */
  if (chk.failed()) return chk.status();
  const int32_t status = guarded(kFn, [&] {
    /* CPU only: each row may be written by one slot, or two writers would race */
    std::vector<uint8_t> referenced(num_rows, 0);
    for (int64_t a = 0; a < tokens * k; a++) {
      const int32_t s = slot_of[a];
      if (s < 0) continue;
      if (referenced[s]) {
        chk.require(false, "slot_of[%lld] = %d repeats a row another slot already names",
                    (long long)a, s);
        return;
      }
      referenced[s] = 1;
    }
    dispatch_float(dtype, [&](auto tag) {
      using T = decltype(tag);
      route_combine_backward((const T *)dy, (const T *)rows, slot_of, weights, (T *)d_rows,
                             d_weights, tokens, k, num_rows, hidden, referenced);
    });
  });
  return status != MOE4J_OK ? status : chk.status();
}

}  // extern "C"
