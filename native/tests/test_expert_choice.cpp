/*
 * Expert Choice routing (CPU twin, native/src/cpu_expert_choice.cpp) against a naive reference
 * written here (for every token, count the tokens of its group that an expert prefers, with the
 * tie and NaN rules spelled out in plain comparisons): groups per sequence and per batch
 * (group_size = T), ties, NaN / -0 scores, capacity 0, capacity = group_size (every expert takes
 * every token), E = 1, tokens no expert chose (uncovered), zero tokens, the combine round trip
 * through moe4j_cpu_route_gather / route_combine with k = E and identity experts (y = sum_e
 * w[t, e] * x[t]) plus combine backward's d_weights masked to the chosen pairs, determinism
 * across runs and thread counts, sentinels past every output, and bad arguments.
 */
#include <omp.h>
#include <stdarg.h>
#include <string.h>

#include <algorithm>

#include "check.h"
#include "cpu_common.h"
#include "expert_choice_math.h"

using namespace moe4j;

namespace {

constexpr float kGuard = 4352.0f;
constexpr int32_t kGuardId = 777777;
constexpr int64_t kGuardI64 = 99999999;

void report(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void report(int line, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  check::report(__FILE__, line, msg);
}

template <typename T>
bool same_bits(const std::vector<T> &a, const std::vector<T> &b) {
  return a.size() == b.size() &&
         (a.empty() || memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

struct Ec {
  std::vector<int64_t> offsets;
  std::vector<int32_t> sorted_token, slot_of;
  std::vector<float> weights;
  int64_t uncovered = -1;
  bool operator==(const Ec &o) const {
    return offsets == o.offsets && sorted_token == o.sorted_token && slot_of == o.slot_of &&
           same_bits(weights, o.weights) && uncovered == o.uncovered;
  }
};

/* Plain pick order: a number before a NaN, then the larger value (in double), then the lower
 * token; -0 == +0 as doubles. */
bool ref_before(float a, int64_t ta, float b, int64_t tb) {
  const bool na = a != a, nb = b != b;
  if (na != nb) return nb;
  if (!na && (double)a != (double)b) return (double)a > (double)b;
  return ta < tb;
}

Ec ref_ec(const std::vector<float> &s, int64_t T, int64_t E, int64_t G, int64_t C) {
  const int64_t groups = T / G;
  Ec r;
  r.offsets.resize(E + 1);
  for (int64_t e = 0; e <= E; e++) r.offsets[e] = e * groups * C;
  r.sorted_token.assign(E * groups * C, -1);
  r.slot_of.assign(T * E, -1);
  r.weights.assign(T * E, 0.0f);
  for (int64_t e = 0; e < E; e++) {
    for (int64_t g = 0; g < groups; g++) {
      int64_t row = (e * groups + g) * C;
      for (int64_t t = g * G; t < (g + 1) * G; t++) {
        int64_t ahead = 0;
        for (int64_t u = g * G; u < (g + 1) * G; u++)
          if (u != t && ref_before(s[u * E + e], u, s[t * E + e], t)) ahead++;
        if (ahead >= C) continue;
        r.sorted_token[row] = (int32_t)t;
        r.slot_of[t * E + e] = (int32_t)row++;
        r.weights[t * E + e] = s[t * E + e];
      }
    }
  }
  r.uncovered = 0;
  for (int64_t t = 0; t < T; t++) {
    bool any = false;
    for (int64_t e = 0; e < E; e++) any = any || r.slot_of[t * E + e] >= 0;
    if (!any) r.uncovered++;
  }
  return r;
}

/* Runs the CPU twin with a sentinel past every output; checks the sentinels. */
Ec run_ec(const std::vector<float> &s, int64_t T, int64_t E, int64_t G, int64_t C, int line,
          bool with_uncovered = true) {
  const int64_t R = E * (T / G) * C;
  Ec r;
  r.offsets.assign(E + 2, kGuardI64);
  r.sorted_token.assign(R + 1, kGuardId);
  r.slot_of.assign(T * E + 1, kGuardId);
  r.weights.assign(T * E + 1, kGuard);
  int64_t unc[2] = {kGuardI64, kGuardI64};
  const int32_t st = moe4j_cpu_route_expert_choice(
      s.empty() ? nullptr : s.data(), T, E, G, C, r.offsets.data(), r.sorted_token.data(),
      r.slot_of.data(), r.weights.data(), with_uncovered ? unc : nullptr);
  if (st != MOE4J_OK) report(line, "route_expert_choice failed: %s", moe4j_last_error());
  if (r.offsets[E + 1] != kGuardI64 || r.sorted_token[R] != kGuardId ||
      r.slot_of[T * E] != kGuardId || r.weights[T * E] != kGuard || unc[1] != kGuardI64)
    report(line, "route_expert_choice wrote past an output (T=%lld E=%lld G=%lld C=%lld)",
           (long long)T, (long long)E, (long long)G, (long long)C);
  if (!with_uncovered && unc[0] != kGuardI64) report(line, "uncovered written though NULL");
  r.offsets.pop_back();
  r.sorted_token.pop_back();
  r.slot_of.pop_back();
  r.weights.pop_back();
  r.uncovered = with_uncovered ? unc[0] : -1;
  return r;
}

/* Softmax-like scores; every third token quantized to 1/8 steps (exact ties between tokens). */
std::vector<float> ec_scores(int64_t T, int64_t E, uint64_t seed, bool ties) {
  const auto logits = check::randn(T * E, seed, 1.5f);
  std::vector<float> s(T * E);
  CHECK_STATUS(moe4j_cpu_router_scores(logits.data(), s.data(), T, E, 0), MOE4J_OK);
  if (ties)
    for (int64_t t = 0; t < T; t += 3)
      for (int64_t e = 0; e < E; e++) s[t * E + e] = floorf(s[t * E + e] * 8.0f) / 8.0f;
  return s;
}

int64_t capacity_of(double cf, int64_t G, int64_t E) {
  const int64_t c = (int64_t)ceil((double)G * cf / (double)E);
  return c < G ? c : G;
}

void compare_case(const std::vector<float> &s, int64_t T, int64_t E, int64_t G, int64_t C,
                  int line) {
  const Ec got = run_ec(s, T, E, G, C, line);
  const Ec ref = ref_ec(s, T, E, G, C);
  if (!(got == ref))
    report(line, "expert choice T=%lld E=%lld G=%lld C=%lld differs from the reference",
           (long long)T, (long long)E, (long long)G, (long long)C);
  /* layout invariants: each row names a token whose slot names the row back */
  bool ok = true;
  for (int64_t row = 0; row < (int64_t)got.sorted_token.size(); row++) {
    const int32_t t = got.sorted_token[row];
    const int64_t e = C > 0 ? row / ((T / G) * C) : 0;
    ok = ok && t >= 0 && t < T && got.slot_of[t * E + e] == row;
  }
  if (!ok) report(line, "rows and slots disagree (T=%lld E=%lld G=%lld C=%lld)", (long long)T,
                  (long long)E, (long long)G, (long long)C);
}

}  // namespace

TEST_CASE(matches_reference_per_sequence_and_per_batch) {
  for (int64_t E : {1, 3, 8, 17}) {
    for (int64_t T : {1, 6, 64, 120}) {
      for (bool ties : {false, true}) {
        const auto s = ec_scores(T, E, 10 + T * 7 + E + ties, ties);
        std::vector<int64_t> sizes = {1, T}; /* a token per group; the whole batch */
        if (T % 2 == 0) sizes.push_back(T / 2);
        if (T % 8 == 0) sizes.push_back(8);
        if (T % 3 == 0) sizes.push_back(3);
        for (int64_t G : sizes) {
          std::vector<int64_t> caps = {0, 1, G};
          for (double cf : {1.0, 1.25, 2.0}) caps.push_back(capacity_of(cf, G, E));
          if (G > 1) caps.push_back(G - 1);
          for (int64_t C : caps) compare_case(s, T, E, G, C, __LINE__);
        }
      }
    }
  }
}

TEST_CASE(ties_nan_and_signed_zero) {
  /* ties go to the lower token: 0.9 at 1 and 4, 0.5 at 0, 2, 3 */
  std::vector<float> s = {0.5f, 0.9f, 0.5f, 0.5f, 0.9f, 0.1f};
  Ec r = run_ec(s, 6, 1, 6, 3, __LINE__);
  CHECK((r.sorted_token == std::vector<int32_t>{0, 1, 4}));
  CHECK((r.slot_of == std::vector<int32_t>{0, 1, -1, -1, 2, -1}));
  CHECK((r.weights == std::vector<float>{0.5f, 0.9f, 0.0f, 0.0f, 0.9f, 0.0f}));
  CHECK(r.uncovered == 3);
  r = run_ec(s, 6, 1, 6, 4, __LINE__);
  CHECK((r.sorted_token == std::vector<int32_t>{0, 1, 2, 4}));
  /* NaN ranks below every number (-inf included), NaNs among themselves by token */
  s = {NAN, 0.2f, NAN, -INFINITY};
  r = run_ec(s, 4, 1, 4, 2, __LINE__);
  CHECK((r.sorted_token == std::vector<int32_t>{1, 3}));
  r = run_ec(s, 4, 1, 4, 3, __LINE__);
  CHECK((r.sorted_token == std::vector<int32_t>{0, 1, 3}));
  CHECK(isnan(r.weights[0]) && r.weights[2] == 0.0f && r.slot_of[2] == -1);
  compare_case(s, 4, 1, 4, 3, __LINE__);
  /* -0 and +0 tie: the lower token wins either way round */
  s = {-0.0f, 0.0f};
  r = run_ec(s, 2, 1, 2, 1, __LINE__);
  CHECK((r.slot_of == std::vector<int32_t>{0, -1}));
  s = {0.0f, -0.0f};
  r = run_ec(s, 2, 1, 2, 1, __LINE__);
  CHECK((r.slot_of == std::vector<int32_t>{0, -1}));
  /* the radix key the GPU selects by is the same order */
  const float special[] = {NAN, -NAN, -INFINITY, -3.0f, -1e-40f, -0.0f, 0.0f, 1e-40f, 0.25f,
                           0.5f, 1.0f, 3.4e38f, INFINITY};
  bool ok = true;
  for (float a : special)
    for (float b : special) {
      ok = ok && (ec_score_key(a) > ec_score_key(b)) == route_value_above(a, b);
      ok = ok && (ec_score_key(a) == ec_score_key(b)) == route_value_ties(a, b);
      ok = ok && ec_token_precedes(a, 0, b, 1) == ref_before(a, 0, b, 1);
      ok = ok && ec_token_precedes(a, 1, b, 0) == ref_before(a, 1, b, 0);
    }
  CHECK(ok);
}

TEST_CASE(capacity_zero_chooses_nothing) {
  const auto s = ec_scores(8, 4, 3, false);
  const Ec r = run_ec(s, 8, 4, 4, 0, __LINE__);
  CHECK((r.offsets == std::vector<int64_t>{0, 0, 0, 0, 0}));
  CHECK(r.sorted_token.empty());
  for (int32_t v : r.slot_of) CHECK(v == -1);
  for (float w : r.weights) CHECK(w == 0.0f);
  CHECK(r.uncovered == 8);
  /* sorted_token is empty, so it may be NULL */
  std::vector<int64_t> off(5);
  std::vector<int32_t> slot(32);
  std::vector<float> w(32);
  CHECK_STATUS(moe4j_cpu_route_expert_choice(s.data(), 8, 4, 4, 0, off.data(), nullptr,
                                             slot.data(), w.data(), nullptr),
               MOE4J_OK);
}

TEST_CASE(capacity_equal_to_group_takes_every_token) {
  for (int64_t G : {1, 5, 20}) {
    const int64_t T = 20, E = 6;
    const auto s = ec_scores(T, E, 50 + G, true);
    const Ec r = run_ec(s, T, E, G, G, __LINE__);
    bool ok = r.uncovered == 0;
    for (int64_t e = 0; e <= E; e++) ok = ok && r.offsets[e] == e * T;
    for (int64_t t = 0; t < T; t++)
      for (int64_t e = 0; e < E; e++) {
        ok = ok && r.slot_of[t * E + e] == e * T + t && r.sorted_token[e * T + t] == t;
        ok = ok && r.weights[t * E + e] == s[t * E + e];
      }
    if (!ok) report(__LINE__, "capacity = group_size = %lld", (long long)G);
    compare_case(s, T, E, G, G, __LINE__);
  }
}

TEST_CASE(single_expert) {
  const auto s = ec_scores(12, 1, 8, false); /* softmax over one expert: all 1, all tied */
  for (float x : s) CHECK(x == 1.0f);
  Ec r = run_ec(s, 12, 1, 4, 2, __LINE__);
  CHECK((r.sorted_token == std::vector<int32_t>{0, 1, 4, 5, 8, 9}));
  CHECK(r.uncovered == 6);
  const auto raw = check::randn(12, 9);
  compare_case(raw, 12, 1, 12, 5, __LINE__);
  compare_case(raw, 12, 1, 3, 1, __LINE__);
}

TEST_CASE(tokens_no_expert_chose_are_counted) {
  /* token 0 is every expert's favourite; capacity 1: tokens 1..3 get no expert */
  const std::vector<float> s = {0.9f, 0.8f, 0.1f, 0.2f, 0.3f, 0.1f, 0.2f, 0.3f};
  Ec r = run_ec(s, 4, 2, 4, 1, __LINE__);
  CHECK(r.uncovered == 3);
  CHECK((r.slot_of == std::vector<int32_t>{0, 1, -1, -1, -1, -1, -1, -1}));
  /* capacity 2: expert 0 adds token 2 (0.3), expert 1 adds token 3 (0.3) */
  r = run_ec(s, 4, 2, 4, 2, __LINE__);
  CHECK(r.uncovered == 1);
  CHECK((r.sorted_token == std::vector<int32_t>{0, 2, 0, 3}));
  /* random: the count agrees with the reference, and without uncovered the rest is the same */
  const auto rs = ec_scores(64, 8, 77, true);
  const Ec a = run_ec(rs, 64, 8, 16, 2, __LINE__);
  const Ec ref = ref_ec(rs, 64, 8, 16, 2);
  CHECK(a.uncovered == ref.uncovered && a.uncovered > 0);
  Ec b = run_ec(rs, 64, 8, 16, 2, __LINE__, false);
  b.uncovered = a.uncovered;
  CHECK(a == b);
}

TEST_CASE(zero_tokens_with_null_buffers) {
  int64_t offsets[4] = {7, 7, 7, 7}, unc = 7;
  CHECK_STATUS(moe4j_cpu_route_expert_choice(nullptr, 0, 3, 5, 2, offsets, nullptr, nullptr,
                                             nullptr, &unc),
               MOE4J_OK);
  for (int e = 0; e < 4; e++) CHECK(offsets[e] == 0);
  CHECK(unc == 0);
}

/* ---- combine round trip: identity experts ---- */

TEST_CASE(combine_round_trip_with_k_equal_to_experts) {
  const int64_t T = 48, E = 6, G = 16, H = 37;
  for (int64_t C : {int64_t(0), int64_t(1), capacity_of(2.0, G, E), G}) {
    const auto s = ec_scores(T, E, 300 + C, true);
    const Ec r = run_ec(s, T, E, G, C, __LINE__);
    const int64_t R = E * (T / G) * C;
    const int32_t k = (int32_t)E;
    const auto x = check::randn(T * H, 301);
    std::vector<float> rows(R * H + 1, kGuard), y(T * H + 1, kGuard);
    CHECK_STATUS(moe4j_cpu_route_gather(MOE4J_DTYPE_F32, x.data(), r.sorted_token.data(),
                                        rows.data(), R, T, H),
                 MOE4J_OK);
    CHECK_STATUS(moe4j_cpu_route_combine(MOE4J_DTYPE_F32, rows.data(), r.slot_of.data(),
                                         r.weights.data(), y.data(), T, k, R, H),
                 MOE4J_OK);
    CHECK(rows[R * H] == kGuard && y[T * H] == kGuard);
    int bad = 0;
    for (int64_t t = 0; t < T; t++) {
      double wsum = 0, wabs = 0;
      bool any = false;
      for (int64_t e = 0; e < E; e++) {
        if (r.slot_of[t * E + e] < 0) continue;
        any = true;
        wsum += r.weights[t * E + e];
        wabs += fabs(r.weights[t * E + e]);
      }
      for (int64_t h = 0; h < H; h++) {
        const double ref = wsum * x[t * H + h], got = y[t * H + h];
        /* E products and E sums in f32: 2E roundings of at most wabs * |x| */
        const double tol = 2.0 * E * ldexp(wabs * fabs(x[t * H + h]), -24);
        if (!any ? got != 0.0 : !(fabs(got - ref) <= tol)) bad++;
      }
    }
    if (bad) report(__LINE__, "round trip C=%lld: %d bad", (long long)C, bad);
    /* the gradient to the scores: combine backward's d_weights, zero where not chosen, and
     * <dy[t], x[t]> where chosen */
    if (R == 0) continue;
    const auto dy = check::randn(T * H, 302);
    std::vector<float> d_rows(R * H), d_w(T * E);
    CHECK_STATUS(moe4j_cpu_route_combine_backward(MOE4J_DTYPE_F32, dy.data(), rows.data(),
                                                  r.slot_of.data(), r.weights.data(),
                                                  d_rows.data(), d_w.data(), T, k, R, H),
                 MOE4J_OK);
    bad = 0;
    for (int64_t t = 0; t < T; t++) {
      double dot = 0, mag = 0;
      for (int64_t h = 0; h < H; h++) {
        dot += (double)dy[t * H + h] * x[t * H + h];
        mag += fabs((double)dy[t * H + h] * x[t * H + h]);
      }
      for (int64_t e = 0; e < E; e++) {
        const float got = d_w[t * E + e];
        if (r.slot_of[t * E + e] < 0) {
          if (got != 0.0f) bad++;
        } else if (!(fabs(got - dot) <= (H / 16.0 + 17) * ldexp(mag, -24) + 1e-30)) {
          bad++;
        }
      }
    }
    if (bad) report(__LINE__, "d_weights C=%lld: %d bad", (long long)C, bad);
  }
}

/* ---- determinism ---- */

namespace {

std::vector<Ec> run_big() {
  std::vector<Ec> out;
  const int64_t T = 4096, E = 64;
  const auto s = ec_scores(T, E, 4242, true);
  out.push_back(run_ec(s, T, E, 512, capacity_of(1.25, 512, E), __LINE__));  /* per sequence */
  out.push_back(run_ec(s, T, E, T, capacity_of(2.0, T, E), __LINE__));      /* whole batch */
  out.push_back(run_ec(s, T, E, 256, 256, __LINE__));                        /* C = G */
  return out;
}

}  // namespace

TEST_CASE(bitwise_deterministic_across_runs_and_thread_counts) {
  const int saved = omp_get_max_threads();
  const auto a = run_big();
  const auto b = run_big();
  omp_set_num_threads(1);
  const auto one = run_big();
  omp_set_num_threads(2);
  const auto two = run_big();
  omp_set_num_threads(3);
  const auto three = run_big();
  omp_set_num_threads(saved);
  for (size_t i = 0; i < a.size(); i++) {
    CHECK(a[i] == b[i]);
    CHECK(one[i] == two[i]);
    CHECK(one[i] == three[i]);
    CHECK(one[i] == a[i]);
  }
  CHECK(a[0].uncovered > 0 && a[2].uncovered == 0);
  /* and the per-sequence case agrees with the reference */
  const auto s = ec_scores(4096, 64, 4242, true);
  CHECK(a[0] == ref_ec(s, 4096, 64, 512, capacity_of(1.25, 512, 64)));
}

/* ---- bad arguments ---- */

TEST_CASE(bad_arguments) {
  const int32_t INV = MOE4J_ERR_INVALID_ARGUMENT;
  const int64_t T = 8, E = 4, G = 4, C = 2; /* 2 groups, R = 4 * 2 * 2 = 16 rows */
  std::vector<float> s(T * E, 0.25f), w(T * E, kGuard);
  std::vector<int64_t> off(E + 1, kGuardI64), unc(2);
  std::vector<int32_t> st(16), slot(T * E, kGuardId);
  auto call = [&](const float *sc, int64_t t, int64_t e, int64_t g, int64_t c, int64_t *o,
                  int32_t *sorted, int32_t *sl, float *wt, int64_t *u) {
    return moe4j_cpu_route_expert_choice(sc, t, e, g, c, o, sorted, sl, wt, u);
  };
  const char *fn = "moe4j_cpu_route_expert_choice: ";
  CHECK_FAILS(call(s.data(), -1, E, G, C, off.data(), st.data(), slot.data(), w.data(), nullptr),
              INV, std::string(fn) + "tokens must be >= 0");
  CHECK_FAILS(call(s.data(), T, 0, G, C, off.data(), st.data(), slot.data(), w.data(), nullptr),
              INV, "experts must be in [1, 65536], got 0");
  CHECK_FAILS(call(s.data(), T, 65537, G, C, off.data(), st.data(), slot.data(), w.data(),
                   nullptr),
              INV, "experts must be in [1, 65536]");
  CHECK_FAILS(call(s.data(), T, E, 0, C, off.data(), st.data(), slot.data(), w.data(), nullptr),
              INV, "group_size must be >= 1, got 0");
  CHECK_FAILS(call(s.data(), T, E, -4, C, off.data(), st.data(), slot.data(), w.data(), nullptr),
              INV, "group_size must be >= 1");
  CHECK_FAILS(call(s.data(), T, E, 3, 1, off.data(), st.data(), slot.data(), w.data(), nullptr),
              INV, "tokens = 8 must be a multiple of group_size = 3");
  CHECK_FAILS(call(s.data(), T, E, G, 5, off.data(), st.data(), slot.data(), w.data(), nullptr),
              INV, "capacity must be in [0, group_size = 4], got 5");
  CHECK_FAILS(call(s.data(), T, E, G, -1, off.data(), st.data(), slot.data(), w.data(), nullptr),
              INV, "capacity must be in [0, group_size = 4], got -1");
  CHECK(off[0] == kGuardI64 && slot[0] == kGuardId && w[0] == kGuard); /* nothing written */
  CHECK_FAILS(call(s.data(), INT64_MAX / 2, 4, 1, 1, off.data(), st.data(), slot.data(), w.data(),
                   nullptr),
              INV, "overflows");
  CHECK_FAILS(call(s.data(), int64_t(1) << 30, 4, 1, 1, off.data(), st.data(), slot.data(),
                   w.data(), nullptr),
              INV, "tokens * experts = 4294967296 must be <= 2147483647 (slots are I32)");
  CHECK_FAILS(call(nullptr, T, E, G, C, off.data(), st.data(), slot.data(), w.data(), nullptr),
              INV, "scores is NULL");
  CHECK_FAILS(call(s.data(), T, E, G, C, nullptr, st.data(), slot.data(), w.data(), nullptr), INV,
              "offsets is NULL");
  CHECK_FAILS(call(s.data(), T, E, G, C, off.data(), nullptr, slot.data(), w.data(), nullptr), INV,
              "sorted_token is NULL");
  CHECK_FAILS(call(s.data(), T, E, G, C, off.data(), st.data(), nullptr, w.data(), nullptr), INV,
              "slot_of is NULL");
  CHECK_FAILS(call(s.data(), T, E, G, C, off.data(), st.data(), slot.data(), nullptr, nullptr),
              INV, "weights is NULL");
  CHECK_FAILS(call(s.data(), T, E, G, C, (int64_t *)((char *)off.data() + 4), st.data(),
                   slot.data(), w.data(), nullptr),
              INV, "offsets (address");
  CHECK_FAILS(call(s.data(), T, E, G, C, off.data(), st.data(), slot.data(), w.data(),
                   (int64_t *)((char *)unc.data() + 2)),
              INV, "uncovered (address");
  CHECK_FAILS(call(s.data(), T, E, G, C, off.data(), st.data(), slot.data(), s.data(), nullptr),
              INV, "weights and scores overlap");
  CHECK_FAILS(call(s.data(), T, E, G, C, off.data(), st.data(), (int32_t *)s.data() + 4, w.data(),
                   nullptr),
              INV, "slot_of and scores overlap");
  CHECK_FAILS(call(s.data(), T, E, G, C, off.data(), st.data(), st.data() + 8, w.data(), nullptr),
              INV, "sorted_token and slot_of overlap");
  CHECK_FAILS(call(s.data(), T, E, G, C, off.data(), st.data(), slot.data(),
                   (float *)slot.data() + 1, nullptr),
              INV, "slot_of and weights overlap");
  CHECK_FAILS(call(s.data(), T, E, G, C, off.data(), st.data(), slot.data(), w.data(),
                   off.data() + 2),
              INV, "offsets and uncovered overlap");
  CHECK_FAILS(call(s.data(), T, E, G, C, off.data(), st.data(), slot.data(), w.data(),
                   (int64_t *)w.data() + 3),
              INV, "weights and uncovered overlap");
  CHECK_FAILS(call(s.data(), T, E, G, C, (int64_t *)st.data() + 2, st.data(), slot.data(), w.data(),
                   nullptr),
              INV, "offsets and sorted_token overlap");
  CHECK(off[0] == kGuardI64 && slot[0] == kGuardId && w[0] == kGuard); /* still nothing */
  CHECK_STATUS(call(s.data(), T, E, G, C, off.data(), st.data(), slot.data(), w.data(),
                    unc.data()),
               MOE4J_OK);
  CHECK(unc[0] == 4 && off[E] == 16); /* all tied: tokens 0, 1, 4, 5 for every expert */
}

TEST_MAIN("expert_choice")
