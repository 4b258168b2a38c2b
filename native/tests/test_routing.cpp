/*
 * Token-choice routing (CPU twin) against naive fp64 references written here (materialized
 * softmax, full sort for top-k, per-expert lists for the plan): scores and their backward,
 * top-k ties / bias / renormalization, the dispatch plan with capacity drops (priority order,
 * fractional capacity factors, dropless), E = 1, k = E, zero tokens, gather/combine round trip,
 * an fp64 finite-difference check of the whole chain logits -> scores -> top-k -> plan -> gather
 * -> identity experts -> combine, determinism across runs and thread counts, sentinels past
 * every output, and bad arguments for every function.
 */
#include <omp.h>
#include <stdarg.h>
#include <string.h>

#include <algorithm>
#include <numeric>

#include "check.h"
#include "cpu_common.h"
#include "routing_math.h"

using namespace moe4j;

namespace {

constexpr int32_t kSoftmax = 0, kSigmoid = 1;
constexpr float kGuard = 4352.0f; /* exact in bf16 */
constexpr int32_t kGuardId = 777777;
constexpr int64_t kGuardI64 = 99999999;

template <typename T>
int32_t dtype_code();
template <>
int32_t dtype_code<float>() { return MOE4J_DTYPE_F32; }
template <>
int32_t dtype_code<bf16_t>() { return MOE4J_DTYPE_BF16; }

template <typename T>
std::vector<T> convert(const std::vector<float> &v) {
  std::vector<T> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = from_f32<T>(v[i]);
  return out;
}

template <typename T>
bool same_bits(const std::vector<T> &a, const std::vector<T> &b) {
  return a.size() == b.size() && (a.empty() || memcmp(a.data(), b.data(),
                                                      a.size() * sizeof(T)) == 0);
}

void report(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void report(int line, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  check::report(__FILE__, line, msg);
}

/* ---- fp64 references ---- */

std::vector<double> ref_scores(const std::vector<double> &x, int64_t T, int64_t E, int32_t fn) {
  std::vector<double> s(T * E);
  for (int64_t t = 0; t < T; t++) {
    const double *xr = &x[t * E];
    if (fn == kSigmoid) {
      for (int64_t e = 0; e < E; e++) s[t * E + e] = 1.0 / (1.0 + exp(-xr[e]));
      continue;
    }
    double m = -INFINITY, sum = 0;
    for (int64_t e = 0; e < E; e++) m = std::max(m, xr[e]);
    for (int64_t e = 0; e < E; e++) sum += exp(xr[e] - m);
    for (int64_t e = 0; e < E; e++) s[t * E + e] = exp(xr[e] - m) / sum;
  }
  return s;
}

/* Top-k by a full stable sort of the keys (descending; stable = ties to the lower index). */
void ref_topk(const std::vector<float> &s, const float *bias, int64_t T, int64_t E, int k,
              bool renorm, std::vector<int32_t> &ids, std::vector<double> &w) {
  ids.assign(T * k, -1);
  w.assign(T * k, 0.0);
  std::vector<int32_t> idx(E);
  std::vector<float> key(E);
  for (int64_t t = 0; t < T; t++) {
    for (int64_t e = 0; e < E; e++) key[e] = bias ? s[t * E + e] + bias[e] : s[t * E + e];
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return key[a] > key[b]; });
    double sum = 0;
    for (int j = 0; j < k; j++) sum += s[t * E + idx[j]];
    for (int j = 0; j < k; j++) {
      ids[t * k + j] = idx[j];
      w[t * k + j] = renorm ? s[t * E + idx[j]] / sum : s[t * E + idx[j]];
    }
  }
}

struct Plan {
  std::vector<int64_t> offsets, counts;
  std::vector<int32_t> sorted_token, slot_of;
};

/* Per expert: its assignments in (token, rank) order; over capacity, keep the first `cap` by
 * (weight desc, token asc, rank asc), i.e. by (weight desc, assignment index asc). */
Plan ref_plan(const std::vector<int32_t> &ids, const std::vector<float> &w, int64_t T, int64_t E,
              int k, int64_t cap) {
  const int64_t n = T * k;
  Plan p;
  p.offsets.assign(E + 1, 0);
  p.counts.assign(E, 0);
  p.sorted_token.assign(n, -1);
  p.slot_of.assign(n, -1);
  int64_t row = 0;
  for (int64_t e = 0; e < E; e++) {
    std::vector<int64_t> list;
    for (int64_t a = 0; a < n; a++)
      if (ids[a] == e) list.push_back(a);
    p.counts[e] = (int64_t)list.size();
    std::vector<int64_t> keep = list;
    if (cap > 0 && (int64_t)list.size() > cap) {
      std::sort(keep.begin(), keep.end(), [&](int64_t a, int64_t b) {
        if (w[a] != w[b]) return (double)w[a] > (double)w[b];
        return a < b;
      });
      keep.resize(cap);
    }
    for (int64_t a : list) {
      if (std::find(keep.begin(), keep.end(), a) == keep.end()) continue;
      p.slot_of[a] = (int32_t)row;
      p.sorted_token[row++] = (int32_t)(a / k);
    }
    p.offsets[e + 1] = row;
  }
  return p;
}

int64_t capacity_of(double cf, int64_t T, int k, int64_t E) {
  return (int64_t)ceil(cf * (double)T * (double)k / (double)E);
}

/* Runs route_plan with sentinels past every output; checks the sentinels. */
Plan run_plan(const std::vector<int32_t> &ids, const std::vector<float> &w, int64_t T, int64_t E,
              int k, int64_t cap, int line) {
  const int64_t n = T * k;
  Plan p;
  p.offsets.assign(E + 2, kGuardI64);
  p.counts.assign(E + 1, kGuardI64);
  p.sorted_token.assign(n + 1, kGuardId);
  p.slot_of.assign(n + 1, kGuardId);
  const int32_t st = moe4j_cpu_route_plan(ids.data(), w.data(), T, E, k, cap, p.offsets.data(),
                                          p.sorted_token.data(), p.slot_of.data(), p.counts.data());
  if (st != MOE4J_OK) report(line, "route_plan failed: %s", moe4j_last_error());
  if (p.offsets[E + 1] != kGuardI64 || p.counts[E] != kGuardI64 || p.sorted_token[n] != kGuardId ||
      p.slot_of[n] != kGuardId)
    report(line, "route_plan wrote past an output (T=%lld E=%lld k=%d)", (long long)T,
           (long long)E, k);
  p.offsets.pop_back();
  p.counts.pop_back();
  p.sorted_token.pop_back();
  p.slot_of.pop_back();
  return p;
}

/* Scores -> top-k through the API (with sentinels checked). */
void run_topk(const std::vector<float> &scores, const float *bias, int64_t T, int64_t E, int k,
              int renorm, std::vector<int32_t> &ids, std::vector<float> &w) {
  ids.assign(T * k + 1, kGuardId);
  w.assign(T * k + 1, kGuard);
  CHECK_STATUS(moe4j_cpu_route_topk(scores.data(), bias, T, E, k, renorm, ids.data(), w.data()),
               MOE4J_OK);
  CHECK(ids[T * k] == kGuardId && w[T * k] == kGuard);
  ids.pop_back();
  w.pop_back();
}

std::vector<float> softmax_scores(int64_t T, int64_t E, uint64_t seed, float scale = 2.0f) {
  const auto logits = check::randn(T * E, seed, scale);
  std::vector<float> s(T * E);
  CHECK_STATUS(moe4j_cpu_router_scores(logits.data(), s.data(), T, E, kSoftmax), MOE4J_OK);
  return s;
}

}  // namespace

/* ---- scores ---- */

TEST_CASE(router_scores_match_fp64) {
  for (int32_t fn : {kSoftmax, kSigmoid}) {
    for (int64_t E : {1, 2, 7, 64, 257}) {
      for (int64_t T : {0, 1, 3, 17}) {
        auto logits = check::randn(T * E, 10 + E + T, 3.0f);
        std::vector<double> x(logits.begin(), logits.end());
        const auto ref = ref_scores(x, T, E, fn);
        std::vector<float> s(T * E + 1, kGuard);
        CHECK_STATUS(moe4j_cpu_router_scores(logits.data(), s.data(), T, E, fn), MOE4J_OK);
        CHECK(s[T * E] == kGuard);
        /* f32: exp within ~2 ulp of an argument rounded relative to |x - max| <= ~25, sum of E
         * terms: ~1e-6 relative; 1e-5 relative is DESIGN §6's fp32 rule. */
        int bad = 0;
        for (int64_t i = 0; i < T * E; i++)
          if (!(fabs(s[i] - ref[i]) <= 1e-5 * fabs(ref[i]) + 1e-38)) bad++;
        if (bad) report(__LINE__, "scores fn=%d T=%lld E=%lld: %d bad", fn, (long long)T,
                        (long long)E, bad);
        /* in place gives the same bits */
        std::vector<float> inplace = logits;
        CHECK_STATUS(moe4j_cpu_router_scores(inplace.data(), inplace.data(), T, E, fn), MOE4J_OK);
        s.pop_back();
        CHECK(same_bits(s, inplace));
      }
    }
  }
}

TEST_CASE(router_scores_backward_matches_fp64) {
  for (int32_t fn : {kSoftmax, kSigmoid}) {
    for (int64_t E : {1, 3, 8, 61}) {
      const int64_t T = 9;
      const auto logits = check::randn(T * E, 3 + E, 2.0f);
      const auto ds = check::randn(T * E, 5 + E);
      std::vector<double> x(logits.begin(), logits.end());
      const auto s64 = ref_scores(x, T, E, fn);
      std::vector<float> s(T * E), dl(T * E + 1, kGuard);
      CHECK_STATUS(moe4j_cpu_router_scores(logits.data(), s.data(), T, E, fn), MOE4J_OK);
      CHECK_STATUS(moe4j_cpu_router_scores_backward(s.data(), ds.data(), dl.data(), T, E, fn),
                   MOE4J_OK);
      CHECK(dl[T * E] == kGuard);
      int bad = 0;
      for (int64_t t = 0; t < T; t++) {
        double dot = 0, mag = 0;
        for (int64_t e = 0; e < E; e++) {
          dot += s64[t * E + e] * ds[t * E + e];
          mag += s64[t * E + e] * fabs(ds[t * E + e]);
        }
        for (int64_t e = 0; e < E; e++) {
          const int64_t i = t * E + e;
          const double si = s64[i];
          const double ref = fn == kSigmoid ? si * (1 - si) * ds[i] : si * (ds[i] - dot);
          /* scores carry ~1e-6 relative error from the forward; the dot cancels at worst to
           * the scale si * (|ds_i| + sum s_j |ds_j|) */
          const double tol = 1e-5 * si * (fabs(ds[i]) + mag) + 1e-30;
          if (!(fabs(dl[i] - ref) <= tol)) bad++;
        }
      }
      if (bad) report(__LINE__, "scores backward fn=%d E=%lld: %d bad", fn, (long long)E, bad);
      /* d_logits may be d_scores itself */
      std::vector<float> inplace = ds;
      CHECK_STATUS(moe4j_cpu_router_scores_backward(s.data(), inplace.data(), inplace.data(), T, E,
                                                    fn),
                   MOE4J_OK);
      dl.pop_back();
      CHECK(same_bits(dl, inplace));
    }
  }
}

/* ---- top-k ---- */

TEST_CASE(topk_matches_reference) {
  for (int64_t E : {1, 4, 8, 64, 128}) {
    for (int k : {1, 2, 4, 8, 128}) {
      if (k > E) continue;
      for (int with_bias = 0; with_bias < 2; with_bias++) {
        for (int renorm = 0; renorm < 2; renorm++) {
          const int64_t T = 23;
          const auto s = softmax_scores(T, E, 40 + E * 3 + k);
          const auto bias = check::randn(E, 7 + E, 0.05f);
          const float *b = with_bias ? bias.data() : nullptr;
          std::vector<int32_t> ids, rids;
          std::vector<float> w;
          std::vector<double> rw;
          run_topk(s, b, T, E, k, renorm, ids, w);
          ref_topk(s, b, T, E, k, renorm, rids, rw);
          CHECK(ids == rids);
          int bad = 0;
          for (int64_t i = 0; i < T * k; i++) {
            /* without renormalization the weight is the score itself; with it, an f32 sum of k
             * terms (k - 1 roundings) and one division: (k + 1) * 2^-24 relative */
            const double tol = renorm ? (k + 1) * ldexp(fabs(rw[i]), -24) : 0.0;
            if (!(fabs(w[i] - rw[i]) <= tol)) bad++;
          }
          if (bad) report(__LINE__, "topk E=%lld k=%d bias=%d renorm=%d: %d bad weights",
                          (long long)E, k, with_bias, renorm, bad);
        }
      }
    }
  }
}

TEST_CASE(topk_ties_go_to_the_lower_expert) {
  /* all equal */
  std::vector<float> s(2 * 6, 0.25f);
  std::vector<int32_t> ids;
  std::vector<float> w;
  run_topk(s, nullptr, 2, 6, 3, 0, ids, w);
  CHECK((ids == std::vector<int32_t>{0, 1, 2, 0, 1, 2}));
  run_topk(s, nullptr, 2, 6, 6, 1, ids, w);
  CHECK((ids == std::vector<int32_t>{0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5}));
  for (float x : w) CHECK(x == 1.0f / 6.0f || fabs(x - 1.0 / 6.0) < 1e-7);
  /* partial ties: 0.3 at 1, 2, 4 */
  s = {0.1f, 0.3f, 0.3f, 0.2f, 0.3f};
  run_topk(s, nullptr, 1, 5, 2, 0, ids, w);
  CHECK((ids == std::vector<int32_t>{1, 2}));
  run_topk(s, nullptr, 1, 5, 4, 0, ids, w);
  CHECK((ids == std::vector<int32_t>{1, 2, 4, 3}));
  /* a NaN score ranks below every number */
  s = {NAN, 0.1f, 0.2f};
  run_topk(s, nullptr, 1, 3, 2, 0, ids, w);
  CHECK((ids == std::vector<int32_t>{2, 1}));
  run_topk(s, nullptr, 1, 3, 3, 0, ids, w);
  CHECK((ids == std::vector<int32_t>{2, 1, 0}));
}

TEST_CASE(bias_changes_selection_not_weights) {
  const std::vector<float> s = {0.5f, 0.3f, 0.2f};
  std::vector<int32_t> ids;
  std::vector<float> w;
  const std::vector<float> up_last = {0.0f, 0.0f, 1.0f};
  run_topk(s, up_last.data(), 1, 3, 1, 0, ids, w);
  CHECK(ids[0] == 2 && w[0] == 0.2f);
  run_topk(s, up_last.data(), 1, 3, 1, 1, ids, w);
  CHECK(ids[0] == 2 && w[0] == 1.0f);
  const std::vector<float> down_first = {-1.0f, 0.0f, 0.0f};
  run_topk(s, down_first.data(), 1, 3, 2, 1, ids, w);
  CHECK((ids == std::vector<int32_t>{1, 2}));
  CHECK_CLOSE(w[0], 0.6, 1e-7);
  CHECK_CLOSE(w[1], 0.4, 1e-7);
  /* bias that only breaks a tie */
  const std::vector<float> tie = {0.4f, 0.4f, 0.2f}, nudge = {0.0f, 1e-3f, 0.0f};
  run_topk(tie, nudge.data(), 1, 3, 1, 0, ids, w);
  CHECK(ids[0] == 1 && w[0] == 0.4f);
}

TEST_CASE(topk_backward_matches_fp64) {
  for (int renorm = 0; renorm < 2; renorm++) {
    for (int64_t E : {1, 5, 16}) {
      for (int k : {1, 2, 5}) {
        if (k > E) continue;
        const int64_t T = 11;
        const auto s = softmax_scores(T, E, 90 + E + k);
        const auto dw = check::randn(T * k, 3 + k);
        std::vector<int32_t> ids;
        std::vector<float> w;
        run_topk(s, nullptr, T, E, k, renorm, ids, w);
        std::vector<float> ds(T * E + 1, kGuard);
        CHECK_STATUS(moe4j_cpu_route_topk_backward(s.data(), ids.data(), dw.data(), ds.data(), T, E,
                                                   k, renorm),
                     MOE4J_OK);
        CHECK(ds[T * E] == kGuard);
        int bad = 0;
        for (int64_t t = 0; t < T; t++) {
          std::vector<double> ref(E, 0.0), tol(E, 0.0);
          double S = 0, dot = 0, mag = 0;
          for (int j = 0; j < k; j++) S += s[t * E + ids[t * k + j]];
          for (int j = 0; j < k; j++) {
            dot += dw[t * k + j] * s[t * E + ids[t * k + j]] / S;
            mag += fabs(dw[t * k + j]) * s[t * E + ids[t * k + j]] / S;
          }
          for (int j = 0; j < k; j++) {
            const int32_t e = ids[t * k + j];
            ref[e] = renorm ? (dw[t * k + j] - dot) / S : dw[t * k + j];
            /* renormalized: S has k - 1 roundings, the dot k products, k quotients and k - 1
             * sums, then one subtraction and one division: (k + 3) * 2^-24 of the scale of
             * each step. Unselected experts and the plain case are exact. */
            if (renorm)
              tol[e] = (k + 3) * ldexp((fabs(dw[t * k + j]) + mag) / S + fabs(ref[e]), -24);
          }
          for (int64_t e = 0; e < E; e++)
            if (!(fabs(ds[t * E + e] - ref[e]) <= tol[e])) bad++;
        }
        if (bad) report(__LINE__, "topk backward renorm=%d E=%lld k=%d: %d bad", renorm,
                        (long long)E, k, bad);
      }
    }
  }
}

/* ---- plan ---- */

TEST_CASE(plan_matches_reference_with_capacity_factors) {
  for (int64_t E : {1, 3, 8}) {
    for (int k : {1, 2, 3, 8}) {
      if (k > E) continue;
      for (int64_t T : {0, 1, 5, 37, 200}) {
        const auto s = softmax_scores(T, E, 11 + T + E * 7 + k, 1.5f);
        std::vector<int32_t> ids;
        std::vector<float> w;
        run_topk(s, nullptr, T, E, k, 1, ids, w);
        std::vector<int64_t> caps = {0, -3};
        for (double cf : {0.5, 1.0, 1.25, 2.0}) caps.push_back(capacity_of(cf, T, k, E));
        caps.push_back(1);
        for (int64_t cap : caps) {
          const Plan got = run_plan(ids, w, T, E, k, cap, __LINE__);
          const Plan ref = ref_plan(ids, w, T, E, k, cap);
          if (got.offsets != ref.offsets || got.counts != ref.counts ||
              got.sorted_token != ref.sorted_token || got.slot_of != ref.slot_of)
            report(__LINE__, "plan T=%lld E=%lld k=%d cap=%lld differs from the reference",
                   (long long)T, (long long)E, k, (long long)cap);
          if (cap <= 0) CHECK(got.offsets[E] == T * k);
        }
      }
    }
  }
  /* the capacity helper of routing_math.h agrees with the caller's formula */
  CHECK(route_capacity_from_factor(1.25, 37, 2, 8) == capacity_of(1.25, 37, 2, 8));
  CHECK(route_capacity_from_factor(1.25, 37, 2, 8) == 12); /* ceil(11.5625) */
  CHECK(route_capacity_from_factor(0.0, 37, 2, 8) == 0);
}

TEST_CASE(plan_drops_by_priority_when_every_token_prefers_one_expert) {
  const int64_t T = 10, E = 4;
  std::vector<int32_t> ids(T, 2);
  /* weights with ties: 0.9 at tokens 7 and 3, 0.5 at 1, 4, 8 */
  const std::vector<float> w = {0.1f, 0.5f, 0.2f, 0.9f, 0.5f, 0.3f, 0.1f, 0.9f, 0.5f, 0.2f};
  const Plan p = run_plan(ids, w, T, E, 1, 4, __LINE__);
  /* kept: 3, 7 (0.9), then 1, 4 (0.5, lower tokens first); rows in token order */
  CHECK((p.offsets == std::vector<int64_t>{0, 0, 0, 4, 4}));
  CHECK((p.counts == std::vector<int64_t>{0, 0, 10, 0}));
  CHECK((p.sorted_token == std::vector<int32_t>{1, 3, 4, 7, -1, -1, -1, -1, -1, -1}));
  CHECK((p.slot_of == std::vector<int32_t>{-1, 0, -1, 1, 2, -1, -1, 3, -1, -1}));
  /* then lower rank: a token naming the same expert twice with equal weights */
  const std::vector<int32_t> dup = {1, 1, 0, 1};
  const std::vector<float> wd = {0.5f, 0.5f, 0.7f, 0.5f};
  Plan q = run_plan(dup, wd, 2, 2, 2, 2, __LINE__);
  CHECK((q.slot_of == std::vector<int32_t>{1, 2, 0, -1}));
  CHECK((q.sorted_token == std::vector<int32_t>{1, 0, 0, -1}));
  q = run_plan(dup, wd, 2, 2, 2, 1, __LINE__); /* only (token 0, rank 0) fits expert 1 */
  CHECK((q.slot_of == std::vector<int32_t>{1, -1, 0, -1}));
  CHECK((q.sorted_token == std::vector<int32_t>{1, 0, -1, -1}));
  /* capacity far above the load: nothing dropped */
  const Plan r = run_plan(ids, w, T, E, 1, INT64_MAX, __LINE__);
  CHECK(r.offsets[E] == T);
}

TEST_CASE(single_expert_and_k_equals_experts) {
  /* E = 1: softmax is 1, every token goes to expert 0 */
  const auto logits = check::randn(7, 3);
  std::vector<float> s(7);
  CHECK_STATUS(moe4j_cpu_router_scores(logits.data(), s.data(), 7, 1, kSoftmax), MOE4J_OK);
  for (float x : s) CHECK(x == 1.0f);
  std::vector<int32_t> ids;
  std::vector<float> w;
  run_topk(s, nullptr, 7, 1, 1, 1, ids, w);
  for (int i = 0; i < 7; i++) CHECK(ids[i] == 0 && w[i] == 1.0f);
  Plan p = run_plan(ids, w, 7, 1, 1, 3, __LINE__);
  CHECK((p.offsets == std::vector<int64_t>{0, 3}) && p.counts[0] == 7);
  CHECK((p.sorted_token == std::vector<int32_t>{0, 1, 2, -1, -1, -1, -1}));
  /* k = E: every expert, softmax renormalized weights = the scores */
  const auto s5 = softmax_scores(4, 5, 77);
  run_topk(s5, nullptr, 4, 5, 5, 1, ids, w);
  for (int64_t t = 0; t < 4; t++) {
    std::vector<int32_t> sorted(ids.begin() + t * 5, ids.begin() + t * 5 + 5);
    std::sort(sorted.begin(), sorted.end());
    CHECK((sorted == std::vector<int32_t>{0, 1, 2, 3, 4}));
    for (int j = 0; j < 5; j++) CHECK_CLOSE(w[t * 5 + j], s5[t * 5 + ids[t * 5 + j]], 4e-7);
  }
  p = run_plan(ids, w, 4, 5, 5, 0, __LINE__);
  CHECK((p.offsets == std::vector<int64_t>{0, 4, 8, 12, 16, 20}));
}

TEST_CASE(zero_tokens_with_null_buffers) {
  int64_t offsets[4] = {7, 7, 7, 7}, counts[3] = {7, 7, 7};
  CHECK_STATUS(moe4j_cpu_router_scores(nullptr, nullptr, 0, 3, kSoftmax), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_router_scores_backward(nullptr, nullptr, nullptr, 0, 3, kSigmoid),
               MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_topk(nullptr, nullptr, 0, 3, 2, 1, nullptr, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_topk_backward(nullptr, nullptr, nullptr, nullptr, 0, 3, 2, 1),
               MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_plan(nullptr, nullptr, 0, 3, 2, 5, offsets, nullptr, nullptr,
                                    counts),
               MOE4J_OK);
  for (int e = 0; e < 4; e++) CHECK(offsets[e] == 0);
  for (int e = 0; e < 3; e++) CHECK(counts[e] == 0);
  CHECK_STATUS(moe4j_cpu_route_gather(MOE4J_DTYPE_F32, nullptr, nullptr, nullptr, 0, 0, 16),
               MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_gather_backward(MOE4J_DTYPE_BF16, nullptr, nullptr, nullptr, 0, 2, 0,
                                               16, 1),
               MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_combine(MOE4J_DTYPE_F32, nullptr, nullptr, nullptr, nullptr, 0, 2, 0,
                                       16),
               MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_combine_backward(MOE4J_DTYPE_BF16, nullptr, nullptr, nullptr,
                                                nullptr, nullptr, nullptr, 0, 2, 0, 16),
               MOE4J_OK);
  /* hidden = 0 with tokens: index buffers still needed, row buffers may be NULL */
  const std::vector<int32_t> slots = {0, -1};
  CHECK_STATUS(moe4j_cpu_route_combine(MOE4J_DTYPE_F32, nullptr, slots.data(), nullptr, nullptr, 1,
                                       2, 1, 0),
               MOE4J_OK);
}

/* ---- gather / combine ---- */

template <typename T>
static void round_trip_case(int64_t T_, int64_t E, int k, int64_t H, int64_t cap) {
  const int32_t dt = dtype_code<T>();
  const auto s = softmax_scores(T_, E, 500 + T_ + H, 1.0f);
  std::vector<int32_t> ids;
  std::vector<float> w;
  run_topk(s, nullptr, T_, E, k, 1, ids, w);
  const Plan p = run_plan(ids, w, T_, E, k, cap, __LINE__);
  const auto x = convert<T>(check::randn(T_ * H, 9 + H));
  /* static shape: all T * k rows, the padding past offsets[E] zeroed */
  const int64_t R = T_ * k;
  std::vector<T> rows(R * H + 1, from_f32<T>(kGuard));
  CHECK_STATUS(moe4j_cpu_route_gather(dt, x.data(), p.sorted_token.data(), rows.data(), R, T_, H),
               MOE4J_OK);
  CHECK(to_f32(rows[R * H]) == kGuard);
  bool ok = true;
  for (int64_t r = 0; r < R; r++)
    for (int64_t h = 0; h < H; h++) {
      const int32_t t = p.sorted_token[r];
      const float want = t >= 0 ? to_f32(x[t * H + h]) : 0.0f;
      ok = ok && to_f32(rows[r * H + h]) == want;
    }
  CHECK(ok);
  std::vector<T> y(T_ * H + 1, from_f32<T>(kGuard));
  CHECK_STATUS(moe4j_cpu_route_combine(dt, rows.data(), p.slot_of.data(), w.data(), y.data(), T_, k,
                                       R, H),
               MOE4J_OK);
  CHECK(to_f32(y[T_ * H]) == kGuard);
  int bad = 0;
  for (int64_t t = 0; t < T_; t++) {
    double wsum = 0;
    for (int j = 0; j < k; j++)
      if (p.slot_of[t * k + j] >= 0) wsum += w[t * k + j];
    for (int64_t h = 0; h < H; h++) {
      const double xv = to_f32(x[t * H + h]), ref = wsum * xv, got = to_f32(y[t * H + h]);
      /* f32: k products and sums, (2k) * 2^-24 relative; bf16: one rounding on store (2^-8,
       * unit roundoff) — a dropless bf16 round trip is in fact exact (the f32 result is within
       * 2k ulp of a bf16 value) */
      double tol = 2.0 * k * ldexp(fabs(ref), -24);
      if (dt == MOE4J_DTYPE_BF16) tol += ldexp(fabs(ref) + tol, -8);
      if (cap <= 0 && dt == MOE4J_DTYPE_BF16) {
        if (got != xv) bad++;
      } else if (!(fabs(got - ref) <= tol)) {
        bad++;
      }
    }
  }
  if (bad) report(__LINE__, "round trip dt=%d T=%lld E=%lld k=%d H=%lld cap=%lld: %d bad", dt,
                  (long long)T_, (long long)E, k, (long long)H, (long long)cap, bad);
}

TEST_CASE(gather_combine_round_trip) {
  for (int64_t H : {1, 17, 600}) {
    round_trip_case<float>(31, 8, 2, H, 0);
    round_trip_case<bf16_t>(31, 8, 2, H, 0);
    round_trip_case<float>(31, 8, 2, H, capacity_of(0.75, 31, 2, 8));
    round_trip_case<bf16_t>(31, 4, 3, H, capacity_of(1.0, 31, 3, 4));
    round_trip_case<float>(13, 6, 6, H, 0);
  }
}

template <typename T>
static void backward_case(int64_t T_, int64_t E, int k, int64_t H, int64_t cap, int accumulate,
                          bool null_weights) {
  const int32_t dt = dtype_code<T>();
  const bool bf = dt == MOE4J_DTYPE_BF16;
  const auto s = softmax_scores(T_, E, 700 + H, 1.0f);
  std::vector<int32_t> ids;
  std::vector<float> w;
  run_topk(s, nullptr, T_, E, k, 0, ids, w);
  const Plan p = run_plan(ids, w, T_, E, k, cap, __LINE__);
  const int64_t R = T_ * k + 3; /* three rows no slot names */
  const auto rows = convert<T>(check::randn(R * H, 21 + H));
  const auto dy = convert<T>(check::randn(T_ * H, 23 + H));
  const float *wp = null_weights ? nullptr : w.data();
  /* combine backward */
  std::vector<T> d_rows(R * H + 1, from_f32<T>(kGuard));
  std::vector<float> d_w(T_ * k + 1, kGuard);
  CHECK_STATUS(moe4j_cpu_route_combine_backward(dt, dy.data(), rows.data(), p.slot_of.data(), wp,
                                                d_rows.data(), d_w.data(), T_, k, R, H),
               MOE4J_OK);
  CHECK(to_f32(d_rows[R * H]) == kGuard && d_w[T_ * k] == kGuard);
  int bad = 0;
  std::vector<char> named(R, 0);
  for (int64_t t = 0; t < T_; t++)
    for (int j = 0; j < k; j++) {
      const int32_t sl = p.slot_of[t * k + j];
      if (sl < 0) {
        if (d_w[t * k + j] != 0.0f) bad++;
        continue;
      }
      named[sl] = 1;
      const double wj = wp ? w[t * k + j] : 1.0;
      double dot = 0, mag = 0;
      for (int64_t h = 0; h < H; h++) {
        const double g = to_f32(dy[t * H + h]), r = to_f32(rows[sl * H + h]);
        dot += g * r;
        mag += fabs(g * r);
        const double ref = wj * g, got = to_f32(d_rows[sl * H + h]);
        /* one f32 rounding of the product, then (bf16) one rounding on store */
        const double tol = ldexp(fabs(ref), -24) + (bf ? ldexp(fabs(ref) * (1 + 1e-6), -8) : 0.0);
        if (!(fabs(got - ref) <= tol)) bad++;
      }
      /* f32 dot of H products in 16 lanes: <= (H/16 + 16 + 1) roundings of at most mag */
      if (!(fabs(d_w[t * k + j] - dot) <= (H / 16.0 + 17) * ldexp(mag, -24) + 1e-30)) bad++;
    }
  for (int64_t r = 0; r < R; r++)
    if (!named[r])
      for (int64_t h = 0; h < H; h++)
        if (to_f32(d_rows[r * H + h]) != 0.0f) bad++;
  /* d_weights may be NULL: same d_rows */
  std::vector<T> d_rows2(R * H);
  CHECK_STATUS(moe4j_cpu_route_combine_backward(dt, dy.data(), rows.data(), p.slot_of.data(), wp,
                                                d_rows2.data(), nullptr, T_, k, R, H),
               MOE4J_OK);
  d_rows.pop_back();
  CHECK(same_bits(d_rows, d_rows2));
  /* gather backward, from d_rows */
  const auto dx0 = convert<T>(check::randn(T_ * H, 29 + H));
  std::vector<T> dx = dx0;
  dx.push_back(from_f32<T>(kGuard));
  CHECK_STATUS(moe4j_cpu_route_gather_backward(dt, d_rows.data(), p.slot_of.data(), dx.data(), T_,
                                               k, R, H, accumulate),
               MOE4J_OK);
  CHECK(to_f32(dx[T_ * H]) == kGuard);
  for (int64_t t = 0; t < T_; t++)
    for (int64_t h = 0; h < H; h++) {
      double ref = accumulate ? (double)to_f32(dx0[t * H + h]) : 0.0, mag = fabs(ref);
      for (int j = 0; j < k; j++) {
        const int32_t sl = p.slot_of[t * k + j];
        if (sl < 0) continue;
        ref += to_f32(d_rows[sl * H + h]);
        mag += fabs(to_f32(d_rows[sl * H + h]));
      }
      const double got = to_f32(dx[t * H + h]);
      /* k + 1 f32 additions; bf16 adds one rounding on store */
      const double sum_tol = (k + 1) * ldexp(mag, -24);
      const double tol = sum_tol + (bf ? ldexp(fabs(ref) + sum_tol, -8) : 0.0) + 1e-30;
      if (!(fabs(got - ref) <= tol)) bad++;
    }
  if (bad)
    report(__LINE__, "backward dt=%d T=%lld E=%lld k=%d H=%lld cap=%lld acc=%d nullw=%d: %d bad",
           dt, (long long)T_, (long long)E, k, (long long)H, (long long)cap, accumulate,
           (int)null_weights, bad);
}

TEST_CASE(combine_and_gather_backward_match_fp64) {
  for (int64_t H : {1, 19, 300}) {
    for (int acc = 0; acc < 2; acc++) {
      backward_case<float>(29, 8, 2, H, 0, acc, false);
      backward_case<bf16_t>(29, 8, 2, H, 0, acc, false);
      backward_case<float>(29, 4, 3, H, capacity_of(0.8, 29, 3, 4), acc, false);
      backward_case<bf16_t>(29, 4, 3, H, capacity_of(0.8, 29, 3, 4), acc, true);
    }
  }
}

/* ---- the whole chain by fp64 finite differences ---- */

namespace {

struct Chain {
  int64_t T, E, H;
  int k;
  int32_t fn;
  int renorm;
  int64_t cap;
  std::vector<float> logits, x, g; /* g = dL/dy */
  std::vector<int32_t> ids, slot_of;
};

/* fp64 forward with the selection and the plan fixed: L = sum_t <g_t, sum_{kept j} w_j x_t>. */
double chain_loss(const Chain &c, const std::vector<double> &logits, const std::vector<double> &x) {
  const auto s = ref_scores(logits, c.T, c.E, c.fn);
  double L = 0;
  for (int64_t t = 0; t < c.T; t++) {
    double S = 0, wsum = 0;
    for (int j = 0; j < c.k; j++) S += s[t * c.E + c.ids[t * c.k + j]];
    for (int j = 0; j < c.k; j++) {
      if (c.slot_of[t * c.k + j] < 0) continue;
      const double sj = s[t * c.E + c.ids[t * c.k + j]];
      wsum += c.renorm ? sj / S : sj;
    }
    for (int64_t h = 0; h < c.H; h++) L += c.g[t * c.H + h] * wsum * x[t * c.H + h];
  }
  return L;
}

/* The selection the fp64 scores make (to confirm a perturbation leaves it alone). */
std::vector<int32_t> selection64(const Chain &c, const std::vector<double> &logits) {
  const auto s = ref_scores(logits, c.T, c.E, c.fn);
  std::vector<float> s32(s.begin(), s.end());
  std::vector<int32_t> ids;
  std::vector<double> w;
  ref_topk(s32, nullptr, c.T, c.E, c.k, c.renorm, ids, w);
  return ids;
}

void chain_gradient_case(int64_t T, int64_t E, int k, int64_t H, int32_t fn, int renorm,
                         double cf) {
  Chain c{T, E, H, k, fn, renorm, 0, check::randn(T * E, 1000 + E + k + fn), check::randn(T * H,
                                                                                          2000 + H),
          check::randn(T * H, 3000 + H), {}, {}};
  c.cap = cf > 0 ? capacity_of(cf, T, k, E) : 0;
  /* forward through the kernels */
  std::vector<float> s(T * E), w(T * k);
  c.ids.resize(T * k);
  CHECK_STATUS(moe4j_cpu_router_scores(c.logits.data(), s.data(), T, E, fn), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_topk(s.data(), nullptr, T, E, k, renorm, c.ids.data(), w.data()),
               MOE4J_OK);
  const Plan p = run_plan(c.ids, w, T, E, k, c.cap, __LINE__);
  c.slot_of = p.slot_of;
  const int64_t R = p.offsets[E];
  std::vector<float> rows(R * H), y(T * H);
  CHECK_STATUS(moe4j_cpu_route_gather(MOE4J_DTYPE_F32, c.x.data(), p.sorted_token.data(),
                                      rows.data(), R, T, H),
               MOE4J_OK);
  /* identity experts: expert output = gathered rows */
  CHECK_STATUS(moe4j_cpu_route_combine(MOE4J_DTYPE_F32, rows.data(), p.slot_of.data(), w.data(),
                                       y.data(), T, k, R, H),
               MOE4J_OK);
  /* backward through the kernels */
  std::vector<float> d_rows(R * H), d_w(T * k), dx(T * H), d_s(T * E), d_logits(T * E);
  CHECK_STATUS(moe4j_cpu_route_combine_backward(MOE4J_DTYPE_F32, c.g.data(), rows.data(),
                                                p.slot_of.data(), w.data(), d_rows.data(),
                                                d_w.data(), T, k, R, H),
               MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_gather_backward(MOE4J_DTYPE_F32, d_rows.data(), p.slot_of.data(),
                                               dx.data(), T, k, R, H, 0),
               MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_topk_backward(s.data(), c.ids.data(), d_w.data(), d_s.data(), T, E,
                                             k, renorm),
               MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_router_scores_backward(s.data(), d_s.data(), d_logits.data(), T, E, fn),
               MOE4J_OK);
  /* central differences in fp64 (good to ~1e-9: h^2 truncation, 1e-16 / h rounding); the f32
   * chain carries ~1e-6 of its O(1) terms (a few roundings of sums of <= 6 terms), so 1e-5
   * (relative above 1, absolute below) is the fp32 rule of DESIGN §6 */
  std::vector<double> L64(c.logits.begin(), c.logits.end()), X64(c.x.begin(), c.x.end());
  const double h = 1e-5;
  int bad = 0;
  const std::vector<int32_t> base = selection64(c, L64);
  if (base != c.ids) report(__LINE__, "f32 and fp64 selections differ: pick another seed");
  double worst = 0;
  for (int64_t i = 0; i < T * E; i++) {
    const double keep = L64[i];
    L64[i] = keep + h;
    const double up = chain_loss(c, L64, X64);
    if (selection64(c,
                    L64) != base) bad += 1000; /* the perturbation must not change the selection */
    L64[i] = keep - h;
    const double down = chain_loss(c, L64, X64);
    L64[i] = keep;
    const double fd = (up - down) / (2 * h);
    const double err = fabs(d_logits[i] - fd) / (1e-5 * (1 + fabs(fd)));
    worst = std::max(worst, err);
    if (!(err <= 1)) bad++;
  }
  for (int64_t i = 0; i < T * H; i++) {
    const double keep = X64[i];
    X64[i] = keep + h;
    const double up = chain_loss(c, L64, X64);
    X64[i] = keep - h;
    const double down = chain_loss(c, L64, X64);
    X64[i] = keep;
    const double fd = (up - down) / (2 * h);
    const double err = fabs(dx[i] - fd) / (1e-5 * (1 + fabs(fd)));
    worst = std::max(worst, err);
    if (!(err <= 1)) bad++;
  }
  if (bad)
    report(__LINE__, "chain gradient T=%lld E=%lld k=%d fn=%d renorm=%d cf=%g: %d bad (worst %.3g)",
           (long long)T, (long long)E, k, fn, renorm, cf, bad, worst);
}

}  // namespace

TEST_CASE(chain_gradient_matches_finite_differences) {
  for (int32_t fn : {kSoftmax, kSigmoid}) {
    for (int renorm = 0; renorm < 2; renorm++) {
      chain_gradient_case(7, 6, 2, 5, fn, renorm, 0.0);
      chain_gradient_case(9, 4, 3, 3, fn, renorm, 0.75); /* with drops */
      chain_gradient_case(3, 5, 5, 4, fn, renorm, 0.0);  /* k = E */
    }
  }
}

/* ---- determinism ---- */

namespace {

struct Outputs {
  std::vector<float> s, w, y, d_w, d_s, d_logits;
  std::vector<int32_t> ids, sorted_token, slot_of;
  std::vector<int64_t> offsets, counts;
  std::vector<bf16_t> rows, d_rows, dx;
  bool operator==(const Outputs &o) const {
    return same_bits(s, o.s) && same_bits(w, o.w) && same_bits(y, o.y) && same_bits(d_w, o.d_w) &&
           same_bits(d_s, o.d_s) && same_bits(d_logits, o.d_logits) && ids == o.ids &&
           sorted_token == o.sorted_token && slot_of == o.slot_of && offsets == o.offsets &&
           counts == o.counts && same_bits(rows, o.rows) && same_bits(d_rows, o.d_rows) &&
           same_bits(dx, o.dx);
  }
};

Outputs run_everything() {
  const int64_t T = 2048, E = 64, H = 96;
  const int k = 8;
  const auto logits = check::randn(T * E, 42, 1.0f);
  const auto bias = check::randn(E, 43, 0.01f);
  const auto x = convert<bf16_t>(check::randn(T * H, 44));
  const auto g = convert<bf16_t>(check::randn(T * H, 45));
  Outputs o;
  o.s.resize(T * E);
  o.w.resize(T * k);
  o.ids.resize(T * k);
  o.offsets.resize(E + 1);
  o.counts.resize(E);
  o.sorted_token.resize(T * k);
  o.slot_of.resize(T * k);
  CHECK_STATUS(moe4j_cpu_router_scores(logits.data(), o.s.data(), T, E, kSoftmax), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_topk(o.s.data(), bias.data(), T, E, k, 1, o.ids.data(), o.w.data()),
               MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_plan(o.ids.data(), o.w.data(), T, E, k, capacity_of(1.0, T, k, E),
                                    o.offsets.data(), o.sorted_token.data(), o.slot_of.data(),
                                    o.counts.data()),
               MOE4J_OK);
  const int64_t R = T * k;
  o.rows.resize(R * H);
  o.y.resize(T * H); /* f32 bits of a bf16 combine are compared through y below */
  std::vector<bf16_t> y(T * H);
  CHECK_STATUS(moe4j_cpu_route_gather(MOE4J_DTYPE_BF16, x.data(), o.sorted_token.data(),
                                      o.rows.data(), R, T, H), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_combine(MOE4J_DTYPE_BF16, o.rows.data(), o.slot_of.data(),
                                       o.w.data(), y.data(), T, k, R, H), MOE4J_OK);
  for (int64_t i = 0; i < T * H; i++) o.y[i] = to_f32(y[i]);
  o.d_rows.resize(R * H);
  o.d_w.resize(T * k);
  o.dx.resize(T * H);
  o.d_s.resize(T * E);
  o.d_logits.resize(T * E);
  CHECK_STATUS(moe4j_cpu_route_combine_backward(MOE4J_DTYPE_BF16, g.data(), o.rows.data(),
                                                o.slot_of.data(), o.w.data(), o.d_rows.data(),
                                                o.d_w.data(), T, k, R, H),
               MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_gather_backward(MOE4J_DTYPE_BF16, o.d_rows.data(), o.slot_of.data(),
                                               o.dx.data(), T, k, R, H, 0), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_route_topk_backward(o.s.data(), o.ids.data(), o.d_w.data(), o.d_s.data(),
                                             T, E, k, 1), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_router_scores_backward(o.s.data(), o.d_s.data(), o.d_logits.data(), T, E,
                                                kSoftmax), MOE4J_OK);
  return o;
}

}  // namespace

TEST_CASE(bitwise_deterministic_across_runs_and_thread_counts) {
  const int saved = omp_get_max_threads();
  const Outputs a = run_everything();
  const Outputs b = run_everything();
  CHECK(a == b);
  CHECK(a.offsets[64] < 2048 * 8); /* the capacity dropped something: the priority path ran */
  omp_set_num_threads(1);
  const Outputs one = run_everything();
  omp_set_num_threads(2);
  const Outputs two = run_everything();
  omp_set_num_threads(3);
  const Outputs three = run_everything();
  omp_set_num_threads(saved);
  CHECK(one == two);
  CHECK(one == three);
  CHECK(one == a);
}

/* ---- bad arguments ---- */

TEST_CASE(bad_arguments_router_scores) {
  std::vector<float> a(64), b(64);
  const int32_t INV = MOE4J_ERR_INVALID_ARGUMENT;
  CHECK_FAILS(moe4j_cpu_router_scores(a.data(), b.data(), -1, 4, 0), INV, "tokens must be >= 0");
  CHECK_FAILS(moe4j_cpu_router_scores(a.data(), b.data(), 2, 0, 0), INV,
              "experts must be in [1, 65536]");
  CHECK_FAILS(moe4j_cpu_router_scores(a.data(), b.data(), 0, 65537, 0), INV, "got 65537");
  CHECK_FAILS(moe4j_cpu_router_scores(a.data(), b.data(), 2, 4, 2), INV,
              "score_fn must be 0 (softmax) or 1");
  CHECK_FAILS(moe4j_cpu_router_scores(nullptr, b.data(), 2, 4, 0), INV, "logits is NULL");
  CHECK_FAILS(moe4j_cpu_router_scores(a.data(), (float *)((char *)b.data() + 2), 2, 4, 0), INV,
              "scores (address");
  CHECK_FAILS(moe4j_cpu_router_scores(a.data(), b.data(), INT64_MAX / 4, 4, 0), INV, "overflows");
  CHECK_FAILS(moe4j_cpu_router_scores(a.data(), a.data() + 1, 2, 4, 0), INV,
              "logits and scores overlap");
  CHECK_FAILS(moe4j_cpu_router_scores_backward(a.data(), b.data(), b.data(), 2, 4, -1), INV,
              "score_fn");
  CHECK_FAILS(moe4j_cpu_router_scores_backward(a.data(), b.data(), a.data(), 2, 4, 0), INV,
              "d_logits and scores overlap");
  CHECK_FAILS(moe4j_cpu_router_scores_backward(a.data(), nullptr, b.data(), 2, 4, 0), INV,
              "d_scores is NULL");
  CHECK_FAILS(moe4j_cpu_router_scores_backward(a.data(), b.data(), b.data() + 1, 2, 4, 0), INV,
              "d_logits and d_scores overlap");
  CHECK_FAILS(moe4j_cpu_router_scores_backward(a.data(), b.data(), b.data(), 2, 1 << 20, 0), INV,
              "experts must be");
}

TEST_CASE(bad_arguments_topk) {
  const int32_t INV = MOE4J_ERR_INVALID_ARGUMENT;
  std::vector<float> s(8, 0.25f), w(8, kGuard), ds(8), bias(4);
  std::vector<int32_t> ids(8, kGuardId);
  CHECK_FAILS(moe4j_cpu_route_topk(s.data(), nullptr, 2, 4, 0, 1, ids.data(), w.data()), INV,
              "k must be in [1, experts = 4], got 0");
  CHECK_FAILS(moe4j_cpu_route_topk(s.data(), nullptr, 2, 4, 5, 1, ids.data(), w.data()), INV,
              "got 5");
  CHECK(ids[0] == kGuardId && w[0] == kGuard); /* nothing written on failure */
  CHECK_FAILS(moe4j_cpu_route_topk(s.data(), nullptr, -2, 4, 2, 1, ids.data(), w.data()), INV,
              "tokens must be >= 0");
  CHECK_FAILS(moe4j_cpu_route_topk(s.data(), nullptr, 2, 0, 1, 1, ids.data(), w.data()), INV,
              "experts must be in");
  CHECK_FAILS(moe4j_cpu_route_topk(s.data(), (const float *)((char *)bias.data() + 1), 2, 4, 2, 1,
                                   ids.data(), w.data()), INV, "bias (address");
  CHECK_FAILS(moe4j_cpu_route_topk(s.data(), nullptr, 2, 4, 2, 1, nullptr, w.data()), INV,
              "expert_ids is NULL");
  CHECK_FAILS(moe4j_cpu_route_topk(nullptr, nullptr, 2, 4, 2, 1, ids.data(), w.data()), INV,
              "scores is NULL");
  CHECK_FAILS(moe4j_cpu_route_topk(s.data(), nullptr, 2, 4, 2, 1, ids.data(),
                                   (float *)ids.data() + 2), INV, "expert_ids and weights overlap");
  CHECK_FAILS(moe4j_cpu_route_topk(s.data(), nullptr, 2, 4, 2, 1, ids.data(), s.data() + 4), INV,
              "weights and scores overlap");
  CHECK_FAILS(moe4j_cpu_route_topk(s.data(), s.data() + 4, 2, 4, 2, 1, ids.data(), s.data()), INV,
              "overlap");
  CHECK_FAILS(moe4j_cpu_route_topk(s.data(), nullptr, int64_t(1) << 30, 4, 4, 1, ids.data(),
                                   w.data()), INV, "slots are I32");
  /* backward */
  CHECK_FAILS(moe4j_cpu_route_topk_backward(s.data(), ids.data(), w.data(), ds.data(), 2, 4, 9, 1),
              INV, "k must be in [1, experts = 4]");
  ids = {0, 1, 2, 9};
  CHECK_FAILS(moe4j_cpu_route_topk_backward(s.data(), ids.data(), w.data(), ds.data(), 2, 4, 2, 1),
              INV, "expert_ids[3] = 9 is out of range [0, 4)");
  ids = {0, 1, -1, 2};
  CHECK_FAILS(moe4j_cpu_route_topk_backward(s.data(), ids.data(), w.data(), ds.data(), 2, 4, 2, 1),
              INV, "expert_ids[2] = -1");
  ids = {0, 1, 2, 3};
  CHECK_FAILS(moe4j_cpu_route_topk_backward(s.data(), ids.data(), w.data(), s.data(), 2, 4, 2, 1),
              INV, "d_scores and scores overlap");
  CHECK_FAILS(moe4j_cpu_route_topk_backward(s.data(), ids.data(), ds.data(), ds.data(), 2, 4, 2, 1),
              INV, "d_scores and d_weights overlap");
  CHECK_FAILS(moe4j_cpu_route_topk_backward(s.data(), ids.data(), nullptr, ds.data(), 2, 4, 2, 1),
              INV, "d_weights is NULL");
  CHECK_FAILS(moe4j_cpu_route_topk_backward(s.data(), ids.data(), w.data(), ds.data(), 2, 70000, 2,
                                            1), INV, "experts must be in");
}

TEST_CASE(bad_arguments_plan) {
  const int32_t INV = MOE4J_ERR_INVALID_ARGUMENT;
  std::vector<int32_t> ids = {0, 1, 2, 3}, st(4), slot(4);
  std::vector<float> w(4, 0.5f);
  std::vector<int64_t> off(5), counts(5);
  CHECK_FAILS(moe4j_cpu_route_plan(ids.data(), w.data(), 2, 4, 2, 0, nullptr, st.data(),
                                   slot.data(), nullptr), INV, "offsets is NULL");
  CHECK_FAILS(moe4j_cpu_route_plan(ids.data(), nullptr, 2, 4, 2, 0, off.data(), st.data(),
                                   slot.data(), nullptr), INV, "weights is NULL");
  CHECK_FAILS(moe4j_cpu_route_plan(ids.data(), w.data(), 2, 0, 2, 0, off.data(), st.data(),
                                   slot.data(), nullptr), INV, "experts must be in");
  CHECK_FAILS(moe4j_cpu_route_plan(ids.data(), w.data(), 2, 4, 0, 0, off.data(), st.data(),
                                   slot.data(), nullptr), INV, "k must be in");
  CHECK_FAILS(moe4j_cpu_route_plan(ids.data(), w.data(), -1, 4, 2, 0, off.data(), st.data(),
                                   slot.data(), nullptr), INV, "tokens must be >= 0");
  CHECK_FAILS(moe4j_cpu_route_plan(ids.data(), w.data(), 2, 4, 2, 0, off.data(), st.data(),
                                   slot.data(), (int64_t *)((char *)counts.data() + 4)),
              INV, "counts (address");
  CHECK_FAILS(moe4j_cpu_route_plan(ids.data(), w.data(), 2, 4, 2, 0, off.data(), st.data(),
                                   st.data() + 2, nullptr),
              INV, "sorted_token and slot_of overlap");
  CHECK_FAILS(moe4j_cpu_route_plan(ids.data(), w.data(), 2, 4, 2, 0, off.data(), ids.data(),
                                   slot.data(), nullptr),
              INV, "sorted_token and expert_ids overlap");
  CHECK_FAILS(moe4j_cpu_route_plan(ids.data(), w.data(), 2, 4, 2, 0, off.data(), st.data(),
                                   slot.data(), off.data() + 1), INV, "offsets and counts overlap");
  CHECK_FAILS(moe4j_cpu_route_plan(ids.data(), w.data(), int64_t(1) << 29, 4, 4, 0, off.data(),
                                   st.data(), slot.data(), nullptr), INV, "slots are I32");
  ids = {0, 4, 1, 2};
  CHECK_FAILS(moe4j_cpu_route_plan(ids.data(), w.data(), 2, 4, 2, 0, off.data(), st.data(),
                                   slot.data(), counts.data()),
              INV, "expert_ids[1] = 4 is out of range [0, 4)");
}

TEST_CASE(bad_arguments_gather_and_combine) {
  const int32_t INV = MOE4J_ERR_INVALID_ARGUMENT, UNS = MOE4J_ERR_UNSUPPORTED;
  const int64_t T = 2, H = 3, R = 4;
  const int k = 2;
  std::vector<float> x(T * H), rows(R * H), y(T * H), w(T * k), dw(T * k);
  std::vector<int32_t> st = {0, 1, 1, -1}, slot = {0, 1, 2, -1};
  /* gather */
  CHECK_FAILS(moe4j_cpu_route_gather(MOE4J_DTYPE_F16, x.data(), st.data(), rows.data(), R, T, H),
              UNS, "dtype must be F32 or BF16");
  CHECK_FAILS(moe4j_cpu_route_gather(MOE4J_DTYPE_F32, x.data(), st.data(), rows.data(), -1, T, H),
              INV, "num_rows must be >= 0");
  CHECK_FAILS(moe4j_cpu_route_gather(MOE4J_DTYPE_F32, x.data(), st.data(), rows.data(), R, T, -3),
              INV, "hidden must be >= 0");
  CHECK_FAILS(moe4j_cpu_route_gather(MOE4J_DTYPE_F32, x.data(), st.data(), rows.data(), R, -1, H),
              INV, "tokens must be >= 0");
  CHECK_FAILS(moe4j_cpu_route_gather(MOE4J_DTYPE_F32, nullptr, st.data(), rows.data(), R, T, H),
              INV, "x is NULL");
  CHECK_FAILS(moe4j_cpu_route_gather(MOE4J_DTYPE_F32, x.data(), st.data(), rows.data(), R,
                                     INT64_MAX / 2, H), INV, "overflows");
  CHECK_FAILS(moe4j_cpu_route_gather(MOE4J_DTYPE_F32, rows.data() + 2, st.data(), rows.data(), R, T,
                                     H), INV, "rows and x overlap");
  st[2] = 2;
  CHECK_FAILS(moe4j_cpu_route_gather(MOE4J_DTYPE_F32, x.data(), st.data(), rows.data(), R, T, H),
              INV, "sorted_token[2] = 2 is out of range [-1, 2)");
  st[2] = -2;
  CHECK_FAILS(moe4j_cpu_route_gather(MOE4J_DTYPE_F32, x.data(), st.data(), rows.data(), R, T, H),
              INV, "sorted_token[2] = -2");
  /* gather backward */
  CHECK_FAILS(moe4j_cpu_route_gather_backward(MOE4J_DTYPE_I32, rows.data(), slot.data(), x.data(),
                                              T, k, R, H, 0), UNS, "dtype must be F32 or BF16");
  CHECK_FAILS(moe4j_cpu_route_gather_backward(MOE4J_DTYPE_F32, rows.data(), slot.data(), x.data(),
                                              T, 0, R, H, 0),
              INV, "k must be in [1, 65536], got 0");
  CHECK_FAILS(moe4j_cpu_route_gather_backward(MOE4J_DTYPE_F32, rows.data(), slot.data(), x.data(),
                                              T, k, -1, H, 0), INV, "num_rows must be >= 0");
  CHECK_FAILS(moe4j_cpu_route_gather_backward(MOE4J_DTYPE_F32, rows.data(), nullptr, x.data(), T, k,
                                              R, H, 0), INV, "slot_of is NULL");
  CHECK_FAILS(moe4j_cpu_route_gather_backward(MOE4J_DTYPE_F32, rows.data(), slot.data(),
                                              rows.data() + 1, T, k, R, H, 0),
              INV, "dx and d_rows overlap");
  slot[1] = 4;
  CHECK_FAILS(moe4j_cpu_route_gather_backward(MOE4J_DTYPE_F32, rows.data(), slot.data(), x.data(),
                                              T, k, R, H, 1),
              INV, "slot_of[1] = 4 is out of range [-1, 4)");
  /* combine */
  CHECK_FAILS(moe4j_cpu_route_combine(MOE4J_DTYPE_F32, rows.data(), slot.data(), w.data(), y.data(),
                                      T, k, R, H), INV, "slot_of[1] = 4");
  slot[1] = 1;
  CHECK_FAILS(moe4j_cpu_route_combine(99, rows.data(), slot.data(), w.data(), y.data(), T, k, R, H),
              UNS, "F32 or BF16");
  CHECK_FAILS(moe4j_cpu_route_combine(MOE4J_DTYPE_F32, rows.data(), slot.data(), w.data(), w.data(),
                                      T, k, R, H), INV, "y and weights overlap");
  CHECK_FAILS(moe4j_cpu_route_combine(MOE4J_DTYPE_F32, rows.data(), slot.data(), w.data(),
                                      rows.data(), T, k, R, H), INV, "y and rows overlap");
  CHECK_FAILS(moe4j_cpu_route_combine(MOE4J_DTYPE_F32, rows.data(), slot.data(), w.data(), nullptr,
                                      T, k, R, H), INV, "y is NULL");
  CHECK_FAILS(moe4j_cpu_route_combine(MOE4J_DTYPE_F32, rows.data(), slot.data(), w.data(), y.data(),
                                      T, 70000, R, H), INV, "k must be in [1, 65536]");
  CHECK_FAILS(moe4j_cpu_route_combine(MOE4J_DTYPE_F32, rows.data(), slot.data(), w.data(), y.data(),
                                      T, k, R, INT64_MAX / 2), INV, "overflows");
  CHECK_STATUS(moe4j_cpu_route_combine(MOE4J_DTYPE_F32, rows.data(), slot.data(), nullptr, y.data(),
                                       T, k, R, H), MOE4J_OK);
  /* combine backward */
  std::vector<float> d_rows(R * H);
  CHECK_FAILS(moe4j_cpu_route_combine_backward(MOE4J_DTYPE_F16, y.data(), rows.data(), slot.data(),
                                               w.data(), d_rows.data(), dw.data(), T, k, R, H),
              UNS, "F32 or BF16");
  CHECK_FAILS(moe4j_cpu_route_combine_backward(MOE4J_DTYPE_F32, y.data(), rows.data(), slot.data(),
                                               w.data(), nullptr, dw.data(), T, k, R, H),
              INV, "d_rows is NULL");
  CHECK_FAILS(moe4j_cpu_route_combine_backward(MOE4J_DTYPE_F32, y.data(), rows.data(), slot.data(),
                                               w.data(), d_rows.data(), y.data(), T, k, R, H),
              INV, "d_weights and dy overlap");
  CHECK_FAILS(moe4j_cpu_route_combine_backward(MOE4J_DTYPE_F32, y.data(), rows.data(), slot.data(),
                                               w.data(), rows.data(), dw.data(), T, k, R, H),
              INV, "d_rows and rows overlap");
  CHECK_FAILS(moe4j_cpu_route_combine_backward(MOE4J_DTYPE_F32, y.data(), rows.data(), slot.data(),
                                               w.data(), d_rows.data(), dw.data(), -1, k, R, H),
              INV, "tokens must be >= 0");
  slot = {0, 1, 1, -1};
  CHECK_FAILS(moe4j_cpu_route_combine_backward(MOE4J_DTYPE_F32, y.data(), rows.data(), slot.data(),
                                               w.data(), d_rows.data(), dw.data(), T, k, R, H),
              INV, "slot_of[2] = 1 repeats");
  slot = {0, 1, 2, -3};
  CHECK_FAILS(moe4j_cpu_route_combine_backward(MOE4J_DTYPE_F32, y.data(), rows.data(), slot.data(),
                                               w.data(), d_rows.data(), dw.data(), T, k, R, H),
              INV, "slot_of[3] = -3 is out of range");
  slot = {0, 1, 2, -1};
  CHECK_STATUS(moe4j_cpu_route_combine_backward(MOE4J_DTYPE_F32, y.data(), rows.data(), slot.data(),
                                                w.data(), d_rows.data(), dw.data(), T, k, R, H),
              MOE4J_OK);
}

TEST_MAIN("routing")
