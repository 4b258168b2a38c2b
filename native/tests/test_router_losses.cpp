/*
 * Router balancing ops (CPU twin, native/src/cpu_router_losses.cpp) against fp64 references
 * written here: the Switch/GShard balance loss and its gradient to the scores (expert_ids fixed),
 * the router z-loss and its gradient to the logits, both also against central finite differences
 * of the fp64 loss; accumulate semantics (gradients are added to the caller's buffer), T = 0,
 * E = 1, k = E (uniform routing gives loss = coef), determinism across runs and thread counts,
 * the bias update's signs including ties, and bad arguments for every function.
 */
#include <omp.h>
#include <stdarg.h>
#include <string.h>

#include <algorithm>

#include "check.h"
#include "cpu_common.h"

namespace {

constexpr double kEps = 1.0 / (1 << 24); /* f32 unit roundoff */
constexpr float kGuard = 4352.0f;

void report(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void report(int line, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  check::report(__FILE__, line, msg);
}

bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && (a.empty() || memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

std::vector<float> softmax_rows(const std::vector<float> &logits, int64_t T, int64_t E) {
  std::vector<float> s(T * E);
  for (int64_t t = 0; t < T; t++) {
    double m = -INFINITY, sum = 0;
    for (int64_t e = 0; e < E; e++) m = std::max(m, (double)logits[t * E + e]);
    for (int64_t e = 0; e < E; e++) sum += exp(logits[t * E + e] - m);
    for (int64_t e = 0; e < E; e++) s[t * E + e] = (float)(exp(logits[t * E + e] - m) / sum);
  }
  return s;
}

/* Random expert ids: k distinct experts per token (like top-k), biased towards low experts so the
 * counts are unbalanced. */
std::vector<int32_t> random_ids(int64_t T, int64_t E, int k, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<int32_t> ids(T * k);
  std::vector<int32_t> perm(E);
  for (int64_t t = 0; t < T; t++) {
    for (int64_t e = 0; e < E; e++) perm[e] = (int32_t)e;
    for (int j = 0; j < k; j++) {
      const int64_t left = E - j;
      int64_t pick = (int64_t)(g() % (uint64_t)left);
      if (g() % 2 == 0) pick = pick / 2; /* skew towards the low experts */
      std::swap(perm[j], perm[j + pick]);
      ids[t * k + j] = perm[j];
    }
  }
  return ids;
}

/* ---- fp64 references ---- */

double ref_balance_loss(const std::vector<double> &s, const std::vector<int32_t> &ids, int64_t T,
                        int64_t E, int k, double coef) {
  if (T == 0) return 0.0;
  std::vector<double> f(E, 0.0), p(E, 0.0);
  for (int64_t a = 0; a < T * k; a++) f[ids[a]] += 1.0 / ((double)T * k);
  for (int64_t t = 0; t < T; t++)
    for (int64_t e = 0; e < E; e++) p[e] += s[t * E + e] / (double)T;
  double loss = 0;
  for (int64_t e = 0; e < E; e++) loss += f[e] * p[e];
  return coef * (double)E * loss;
}

/* d loss / d scores[t, e] = coef * E * f_e / T (the same for every t). */
std::vector<double> ref_balance_grad(const std::vector<int32_t> &ids, int64_t T, int64_t E, int k,
                                     double coef) {
  std::vector<double> g(E, 0.0);
  for (int64_t a = 0; a < T * k; a++) g[ids[a]] += coef * (double)E / ((double)T * k * T);
  return g;
}

double ref_lse(const double *x, int64_t E) {
  double m = -INFINITY, sum = 0;
  for (int64_t e = 0; e < E; e++) m = std::max(m, x[e]);
  for (int64_t e = 0; e < E; e++) sum += exp(x[e] - m);
  return m + log(sum);
}

double ref_z_loss(const std::vector<double> &x, int64_t T, int64_t E, double coef) {
  if (T == 0) return 0.0;
  double sum = 0;
  for (int64_t t = 0; t < T; t++) {
    const double l = ref_lse(&x[t * E], E);
    sum += l * l;
  }
  return coef * sum / (double)T;
}

std::vector<double> ref_z_grad(const std::vector<double> &x, int64_t T, int64_t E, double coef) {
  std::vector<double> g(T * E);
  for (int64_t t = 0; t < T; t++) {
    const double l = ref_lse(&x[t * E], E);
    for (int64_t e = 0; e < E; e++) g[t * E + e] = coef * 2.0 * l / (double)T * exp(x[t * E + e] - l);
  }
  return g;
}

std::vector<double> to_double(const std::vector<float> &v) {
  return std::vector<double>(v.begin(), v.end());
}

/* ---- runners (sentinels past every output) ---- */

struct Result {
  float loss = 0;
  std::vector<float> d;
};

Result run_balance(const std::vector<float> &s, const std::vector<int32_t> &ids, int64_t T,
                   int64_t E, int k, float coef, const std::vector<float> &d_init, bool with_d,
                   int line) {
  std::vector<float> out = {kGuard, kGuard};
  Result r;
  r.d = d_init;
  r.d.push_back(kGuard);
  const int32_t st = moe4j_cpu_router_balance_loss(s.data(), ids.data(), T, E, k, coef, out.data(),
                                                   with_d ? r.d.data() : nullptr);
  if (st != MOE4J_OK) report(line, "router_balance_loss failed: %s", moe4j_last_error());
  if (out[1] != kGuard || r.d.back() != kGuard) report(line, "balance_loss wrote past an output");
  r.d.pop_back();
  r.loss = out[0];
  return r;
}

Result run_z(const std::vector<float> &x, int64_t T, int64_t E, float coef,
             const std::vector<float> &d_init, bool with_d, int line) {
  std::vector<float> out = {kGuard, kGuard};
  Result r;
  r.d = d_init;
  r.d.push_back(kGuard);
  const int32_t st = moe4j_cpu_router_z_loss(x.data(), T, E, coef, out.data(),
                                             with_d ? r.d.data() : nullptr);
  if (st != MOE4J_OK) report(line, "router_z_loss failed: %s", moe4j_last_error());
  if (out[1] != kGuard || r.d.back() != kGuard) report(line, "z_loss wrote past an output");
  r.d.pop_back();
  r.loss = out[0];
  return r;
}

/* Balance loss at (T, E, k) vs fp64: the loss is one double computation rounded once to f32
 * (relative error <= ~1e-15 of double summation + 2^-24 rounding): 1e-6 relative. Each gradient
 * element is g_e rounded once to f32 (<= 2^-24 relative), then one f32 add to the prefill:
 * |err| <= 2^-24 * (|g| + |prefill + g|), doubled for margin. */
void balance_case(int64_t T, int64_t E, int k, float coef, uint64_t seed, int line) {
  const auto logits = check::randn(T * E, seed, 2.0f);
  const auto s = softmax_rows(logits, T, E);
  const auto ids = random_ids(T, E, k, seed + 1);
  const auto d0 = check::randn(T * E, seed + 2, 0.01f);
  const Result r = run_balance(s, ids, T, E, k, coef, d0, true, line);
  const double ref = ref_balance_loss(to_double(s), ids, T, E, k, coef);
  if (!(fabs(r.loss - ref) <= 1e-6 * fabs(ref) + 1e-30))
    report(line, "balance loss %.9g vs fp64 %.9g (T=%lld E=%lld k=%d)", r.loss, ref, (long long)T,
           (long long)E, k);
  const auto g = ref_balance_grad(ids, T, E, k, coef);
  int bad = 0;
  for (int64_t t = 0; t < T; t++)
    for (int64_t e = 0; e < E; e++) {
      const int64_t i = t * E + e;
      const double want = (double)d0[i] + g[e];
      const double tol = 2.0 * kEps * (fabs(g[e]) + fabs(want)) + 1e-30;
      if (!(fabs(r.d[i] - want) <= tol) && bad++ < 3)
        report(line, "balance d_scores[%lld] = %.9g, expected %.9g (T=%lld E=%lld k=%d)",
               (long long)i, r.d[i], want, (long long)T, (long long)E, k);
    }
  /* without d_scores: the same loss */
  const Result r2 = run_balance(s, ids, T, E, k, coef, d0, false, line);
  if (r2.loss != r.loss || !same_bits(r2.d, d0)) report(line, "balance loss without d_scores differs");
}

/* z-loss vs fp64. Per row, lse in f32: max exact, the sum of E terms exp(x - max) <= 1 each with
 * expf within 1 ulp (glibc) and E sequential adds: relative error <= (E + 2) eps, so log(sum) is
 * off by <= (E + 2) eps absolute, plus the rounding of max + log: delta_t = (E + 3) eps +
 * eps |lse|. The loss coef / T sum lse^2 is then off by <= coef / T sum (2 |lse| delta_t +
 * delta_t^2) plus its own rounding. Gradient coef * 2 lse / T * exp(x - lse): the scale is off by
 * coef * 2 delta / T (+ its rounding), exp(x - lse) relatively by delta + eps |x - lse| + 2 eps
 * (argument error, subtraction, expf), then one mul and one add to the prefill. Bounds doubled. */
void z_case(int64_t T, int64_t E, float coef, float scale, uint64_t seed, int line) {
  auto x = check::randn(T * E, seed, scale);
  if (E > 2 && T > 1) x[E + 1] = -INFINITY; /* a masked expert */
  const auto d0 = check::randn(T * E, seed + 2, 0.01f);
  const Result r = run_z(x, T, E, coef, d0, true, line);
  const auto xd = to_double(x);
  const double ref = ref_z_loss(xd, T, E, coef);
  const auto g = ref_z_grad(xd, T, E, coef);
  double loss_tol = kEps * fabs(ref);
  int bad = 0;
  for (int64_t t = 0; t < T; t++) {
    const double l = ref_lse(&xd[t * E], E);
    const double delta = (double)(E + 3) * kEps + kEps * fabs(l);
    loss_tol += coef / (double)T * (2.0 * fabs(l) * delta + delta * delta);
    for (int64_t e = 0; e < E; e++) {
      const int64_t i = t * E + e;
      const double sm = x[i] == -INFINITY ? 0.0 : exp(xd[i] - l);
      const double want = (double)d0[i] + g[i];
      const double err = coef * 2.0 * delta / (double)T * sm +
                         fabs(g[i]) * (delta + kEps * (sm > 0.0 ? fabs(xd[i] - l) : 0.0) + 6.0 * kEps) +
                         kEps * fabs(want);
      if (!(fabs(r.d[i] - want) <= 2.0 * err + 1e-30) && bad++ < 3)
        report(line, "z d_logits[%lld] = %.9g, expected %.9g (tol %.3g, T=%lld E=%lld)",
               (long long)i, r.d[i], want, 2.0 * err, (long long)T, (long long)E);
    }
  }
  if (!(fabs(r.loss - ref) <= 2.0 * loss_tol + 1e-30))
    report(line, "z loss %.9g vs fp64 %.9g (tol %.3g, T=%lld E=%lld)", r.loss, ref, 2.0 * loss_tol,
           (long long)T, (long long)E);
  const Result r2 = run_z(x, T, E, coef, d0, false, line);
  if (r2.loss != r.loss || !same_bits(r2.d, d0)) report(line, "z loss without d_logits differs");
}

}  // namespace

/* ---- balance loss ---- */

TEST_CASE(balance_loss_matches_fp64) {
  for (int64_t E : {2, 8, 33, 64}) {
    for (int k : {1, 2, 6}) {
      if (k > E) continue;
      for (int64_t T : {1, 5, 37, 200}) balance_case(T, E, k, 0.01f, 1000 + E * 10 + k + T, __LINE__);
    }
  }
  balance_case(300, 257, 8, 1.0f, 77, __LINE__);
  balance_case(64, 3000, 4, 0.5f, 78, __LINE__); /* more than one 2048-expert chunk on the GPU */
  balance_case(7, 5, 2, 0.0f, 79, __LINE__);     /* coef 0: loss 0, gradient unchanged */
}

TEST_CASE(balance_loss_single_expert_and_k_equals_experts) {
  /* E = 1, k = 1: f = 1, loss = coef * mean_t scores[t, 0] */
  {
    const int64_t T = 9;
    std::vector<float> s(T);
    double mean = 0;
    for (int64_t t = 0; t < T; t++) {
      s[t] = 0.1f * (float)(t + 1);
      mean += (double)s[t] / T;
    }
    std::vector<int32_t> ids(T, 0);
    const Result r = run_balance(s, ids, T, 1, 1, 0.25f, std::vector<float>(T, 1.0f), true, __LINE__);
    CHECK_CLOSE(r.loss, 0.25 * mean, 1e-6 * 0.25 * mean);
    for (int64_t t = 0; t < T; t++) CHECK_CLOSE(r.d[t], 1.0 + 0.25 / T, 2e-7);
    balance_case(17, 1, 1, 0.3f, 5, __LINE__);
  }
  /* k = E: every expert gets T assignments, f = 1/E, loss = coef * mean_t sum_e s = coef for
   * softmax scores (rows sum to 1 within a few ulp) */
  for (int64_t E : {1, 4, 16}) {
    const int64_t T = 23;
    const auto s = softmax_rows(check::randn(T * E, 900 + E, 1.0f), T, E);
    std::vector<int32_t> ids(T * E);
    for (int64_t t = 0; t < T; t++)
      for (int64_t j = 0; j < E; j++) ids[t * E + j] = (int32_t)((j + t) % E);
    const Result r = run_balance(s, ids, T, E, (int)E, 0.01f, std::vector<float>(T * E, 0.0f),
                                 true, __LINE__);
    CHECK_CLOSE(r.loss, 0.01, 1e-6);
    for (int64_t i = 0; i < T * E; i++) CHECK_CLOSE(r.d[i], 0.01 / T, 1e-7 * 0.01 / T);
    balance_case(T, E, (int)E, 0.01f, 901 + E, __LINE__);
  }
}

TEST_CASE(balance_loss_gradient_matches_finite_differences) {
  const int64_t T = 11, E = 6;
  const int k = 2;
  const double coef = 0.7;
  const auto s = softmax_rows(check::randn(T * E, 31, 1.5f), T, E);
  const auto ids = random_ids(T, E, k, 32);
  const Result r = run_balance(s, ids, T, E, k, (float)coef, std::vector<float>(T * E, 0.0f), true,
                               __LINE__);
  auto sd = to_double(s);
  const double h = 1e-3; /* the loss is linear in the scores: the difference is exact up to
                            double rounding, ~1e-16 / h relative */
  for (int64_t i = 0; i < T * E; i++) {
    const double keep = sd[i];
    sd[i] = keep + h;
    const double up = ref_balance_loss(sd, ids, T, E, k, coef);
    sd[i] = keep - h;
    const double down = ref_balance_loss(sd, ids, T, E, k, coef);
    sd[i] = keep;
    const double fd = (up - down) / (2 * h);
    CHECK_CLOSE(r.d[i], fd, 1e-6 * fabs(fd) + 1e-11);
  }
}

TEST_CASE(balance_loss_zero_tokens) {
  float out[2] = {kGuard, kGuard};
  CHECK_STATUS(moe4j_cpu_router_balance_loss(nullptr, nullptr, 0, 8, 2, 0.01f, out, nullptr),
               MOE4J_OK);
  CHECK(out[0] == 0.0f && out[1] == kGuard);
  out[0] = kGuard;
  std::vector<float> d(1, kGuard);
  CHECK_STATUS(moe4j_cpu_router_balance_loss(nullptr, nullptr, 0, 8, 2, 0.01f, out, d.data()),
               MOE4J_OK);
  CHECK(out[0] == 0.0f && d[0] == kGuard);
}

/* ---- z-loss ---- */

TEST_CASE(z_loss_matches_fp64) {
  for (int64_t E : {1, 2, 7, 64, 257}) {
    for (int64_t T : {1, 3, 40}) {
      z_case(T, E, 0.001f, 2.0f, 2000 + E + T, __LINE__);
      z_case(T, E, 1.0f, 0.1f, 3000 + E + T, __LINE__); /* lse near log(E): small */
    }
  }
  z_case(5, 16, 0.5f, 30.0f, 4000, __LINE__); /* large logits: the max shift matters */
  z_case(5, 16, 0.0f, 1.0f, 4001, __LINE__);  /* coef 0 */
}

TEST_CASE(z_loss_single_expert) {
  /* E = 1: lse = x, softmax = 1: loss = coef * mean x^2, d += coef * 2 x / T */
  const int64_t T = 4;
  std::vector<float> x = {1.5f, -2.0f, 0.25f, 3.0f}, d(T, 1.0f);
  float out = kGuard;
  CHECK_STATUS(moe4j_cpu_router_z_loss(x.data(), T, 1, 0.5f, &out, d.data()), MOE4J_OK);
  double want = 0;
  for (float v : x) want += 0.5 * v * v / T;
  CHECK_CLOSE(out, want, 1e-6 * want);
  for (int64_t t = 0; t < T; t++) CHECK_CLOSE(d[t], 1.0 + 0.5 * 2.0 * x[t] / T, 3e-7);
}

TEST_CASE(z_loss_gradient_matches_finite_differences) {
  const int64_t T = 6, E = 9;
  const double coef = 0.3;
  const auto x = check::randn(T * E, 51, 2.0f);
  const Result r = run_z(x, T, E, (float)coef, std::vector<float>(T * E, 0.0f), true, __LINE__);
  auto xd = to_double(x);
  const double h = 1e-4; /* central difference: error ~h^2 * f''' ~ 1e-8 relative */
  double gmax = 0;
  for (float v : r.d) gmax = std::max(gmax, (double)fabs(v));
  for (int64_t i = 0; i < T * E; i++) {
    const double keep = xd[i];
    xd[i] = keep + h;
    const double up = ref_z_loss(xd, T, E, coef);
    xd[i] = keep - h;
    const double down = ref_z_loss(xd, T, E, coef);
    xd[i] = keep;
    const double fd = (up - down) / (2 * h);
    /* f32 gradient: ~(E + 3) eps relative to the row's largest term, see z_case */
    CHECK_CLOSE(r.d[i], fd, 1e-5 * gmax + 1e-7 * fabs(fd));
  }
}

TEST_CASE(z_loss_zero_tokens) {
  float out[2] = {kGuard, kGuard};
  CHECK_STATUS(moe4j_cpu_router_z_loss(nullptr, 0, 8, 0.01f, out, nullptr), MOE4J_OK);
  CHECK(out[0] == 0.0f && out[1] == kGuard);
}

/* ---- bias update ---- */

TEST_CASE(bias_update_signs_and_ties) {
  const float rate = 0.125f;
  {
    /* mean 4: above -> down, below -> up, equal -> unchanged (sign 0) */
    std::vector<int64_t> counts = {5, 3, 4, 4, 0, 8};
    std::vector<float> bias = {0.5f, -0.25f, 1.0f, 0.1f, 0.0f, -3.0f}, b0 = bias;
    CHECK_STATUS(moe4j_cpu_router_bias_update(bias.data(), counts.data(), 6, rate), MOE4J_OK);
    CHECK(bias[0] == b0[0] - rate);
    CHECK(bias[1] == b0[1] + rate);
    CHECK(bias[2] == b0[2] && bias[3] == b0[3]);
    CHECK(bias[4] == b0[4] + rate);
    CHECK(bias[5] == b0[5] - rate);
  }
  {
    /* non-integer mean 1.5: nothing ties */
    std::vector<int64_t> counts = {1, 2};
    std::vector<float> bias = {0.0f, 0.0f};
    CHECK_STATUS(moe4j_cpu_router_bias_update(bias.data(), counts.data(), 2, rate), MOE4J_OK);
    CHECK(bias[0] == rate && bias[1] == -rate);
  }
  {
    /* E = 1 and a perfectly balanced load always tie; rate 0 changes nothing */
    std::vector<int64_t> one = {17}, even = {3, 3, 3};
    std::vector<float> b1 = {0.7f}, b3 = {0.1f, 0.2f, 0.3f};
    CHECK_STATUS(moe4j_cpu_router_bias_update(b1.data(), one.data(), 1, rate), MOE4J_OK);
    CHECK_STATUS(moe4j_cpu_router_bias_update(b3.data(), even.data(), 3, rate), MOE4J_OK);
    CHECK(b1[0] == 0.7f && b3[0] == 0.1f && b3[1] == 0.2f && b3[2] == 0.3f);
    std::vector<int64_t> uneven = {0, 9, 1};
    CHECK_STATUS(moe4j_cpu_router_bias_update(b3.data(), uneven.data(), 3, 0.0f), MOE4J_OK);
    CHECK(b3[0] == 0.1f && b3[1] == 0.2f && b3[2] == 0.3f);
  }
  {
    /* large counts: mean computed exactly enough to see a difference of 1 */
    const int64_t big = int64_t(1) << 40;
    std::vector<int64_t> counts = {big, big + 1, big + 2};
    std::vector<float> bias = {0.0f, 0.0f, 0.0f, kGuard};
    CHECK_STATUS(moe4j_cpu_router_bias_update(bias.data(), counts.data(), 3, rate), MOE4J_OK);
    CHECK(bias[0] == rate && bias[1] == 0.0f && bias[2] == -rate && bias[3] == kGuard);
  }
}

/* ---- determinism ---- */

namespace {

struct Outputs {
  float balance = 0, z = 0;
  std::vector<float> d_scores, d_logits, bias;
  bool operator==(const Outputs &o) const {
    return memcmp(&balance, &o.balance, 4) == 0 && memcmp(&z, &o.z, 4) == 0 &&
           same_bits(d_scores, o.d_scores) && same_bits(d_logits, o.d_logits) &&
           same_bits(bias, o.bias);
  }
};

Outputs run_everything() {
  const int64_t T = 3000, E = 64;
  const int k = 6;
  const auto logits = check::randn(T * E, 61, 1.0f);
  const auto s = softmax_rows(logits, T, E);
  const auto ids = random_ids(T, E, k, 62);
  Outputs o;
  o.d_scores = check::randn(T * E, 63, 0.01f);
  o.d_logits = check::randn(T * E, 64, 0.01f);
  CHECK_STATUS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), T, E, k, 0.01f, &o.balance,
                                             o.d_scores.data()), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_router_z_loss(logits.data(), T, E, 0.001f, &o.z, o.d_logits.data()),
               MOE4J_OK);
  std::vector<int64_t> counts(E, 0);
  for (int32_t id : ids) counts[id]++;
  o.bias = check::randn(E, 65, 0.1f);
  CHECK_STATUS(moe4j_cpu_router_bias_update(o.bias.data(), counts.data(), E, 0.001f), MOE4J_OK);
  return o;
}

}  // namespace

TEST_CASE(bitwise_deterministic_across_runs_and_thread_counts) {
  const int saved = omp_get_max_threads();
  const Outputs a = run_everything();
  const Outputs b = run_everything();
  CHECK(a == b);
  omp_set_num_threads(1);
  const Outputs one = run_everything();
  omp_set_num_threads(2);
  const Outputs two = run_everything();
  omp_set_num_threads(saved);
  CHECK(one == two);
  CHECK(one == a);
}

/* ---- bad arguments ---- */

TEST_CASE(bad_arguments_balance_loss) {
  const int32_t INV = MOE4J_ERR_INVALID_ARGUMENT;
  std::vector<float> s(8, 0.25f), d(8, kGuard);
  std::vector<int32_t> ids = {0, 1, 2, 3};
  float out = kGuard;
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), -1, 4, 2, 0.01f, &out, d.data()),
              INV, "moe4j_cpu_router_balance_loss: tokens must be >= 0");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), 2, 0, 1, 0.01f, &out, d.data()),
              INV, "experts must be in [1, 65536], got 0");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), 2, 65537, 1, 0.01f, &out,
                                            d.data()), INV, "got 65537");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), 2, 4, 0, 0.01f, &out, d.data()),
              INV, "k must be in [1, experts = 4], got 0");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), 2, 4, 5, 0.01f, &out, d.data()),
              INV, "k must be in [1, experts = 4], got 5");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), 2, 4, 2, -0.01f, &out, d.data()),
              INV, "coef must be finite and >= 0");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), 2, 4, 2, NAN, &out, d.data()),
              INV, "coef must be finite and >= 0, got nan");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), 2, 4, 2, INFINITY, &out,
                                            d.data()), INV, "coef must be finite");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(nullptr, ids.data(), 2, 4, 2, 0.01f, &out, d.data()),
              INV, "scores is NULL");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), nullptr, 2, 4, 2, 0.01f, &out, d.data()),
              INV, "expert_ids is NULL");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), 2, 4, 2, 0.01f, nullptr,
                                            d.data()), INV, "out is NULL");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(nullptr, nullptr, 0, 4, 2, 0.01f, nullptr, nullptr),
              INV, "out is NULL");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), 2, 4, 2, 0.01f, s.data() + 3,
                                            d.data()), INV, "out and scores overlap");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), 2, 4, 2, 0.01f, d.data() + 1,
                                            d.data()), INV, "out and d_scores overlap");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), 2, 4, 2, 0.01f,
                                            (float *)ids.data(), d.data()),
              INV, "out and expert_ids overlap");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), 2, 4, 2, 0.01f, &out, s.data()),
              INV, "d_scores and scores overlap");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), 1, 4, 4, 0.01f, &out,
                                            (float *)ids.data()),
              INV, "d_scores and expert_ids overlap");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), 2, 4, 2, 0.01f, &out,
                                            (float *)((char *)d.data() + 2)),
              INV, "d_scores (address");
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), INT64_MAX / 2, 4, 2, 0.01f, &out,
                                            d.data()), INV, "overflows");
  ids = {0, 1, 4, 3};
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), 2, 4, 2, 0.01f, &out, d.data()),
              INV, "expert_ids[2] = 4 is out of range [0, 4)");
  ids = {0, -1, 2, 3};
  CHECK_FAILS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), 2, 4, 2, 0.01f, &out, d.data()),
              INV, "expert_ids[1] = -1");
  CHECK(out == kGuard && d[0] == kGuard); /* nothing written on failure */
}

TEST_CASE(bad_arguments_z_loss) {
  const int32_t INV = MOE4J_ERR_INVALID_ARGUMENT;
  std::vector<float> x(8, 0.5f), d(8, kGuard);
  float out = kGuard;
  CHECK_FAILS(moe4j_cpu_router_z_loss(x.data(), -1, 4, 0.001f, &out, d.data()), INV,
              "moe4j_cpu_router_z_loss: tokens must be >= 0");
  CHECK_FAILS(moe4j_cpu_router_z_loss(x.data(), 2, 0, 0.001f, &out, d.data()), INV,
              "experts must be in [1, 65536]");
  CHECK_FAILS(moe4j_cpu_router_z_loss(x.data(), 2, 1 << 20, 0.001f, &out, d.data()), INV,
              "experts must be in");
  CHECK_FAILS(moe4j_cpu_router_z_loss(x.data(), 2, 4, -1.0f, &out, d.data()), INV,
              "coef must be finite and >= 0, got -1");
  CHECK_FAILS(moe4j_cpu_router_z_loss(x.data(), 2, 4, -INFINITY, &out, d.data()), INV,
              "coef must be finite");
  CHECK_FAILS(moe4j_cpu_router_z_loss(nullptr, 2, 4, 0.001f, &out, d.data()), INV,
              "logits is NULL");
  CHECK_FAILS(moe4j_cpu_router_z_loss(x.data(), 2, 4, 0.001f, nullptr, d.data()), INV,
              "out is NULL");
  CHECK_FAILS(moe4j_cpu_router_z_loss(x.data(), 2, 4, 0.001f, x.data() + 7, d.data()), INV,
              "out and logits overlap");
  CHECK_FAILS(moe4j_cpu_router_z_loss(x.data(), 2, 4, 0.001f, d.data() + 2, d.data()), INV,
              "out and d_logits overlap");
  CHECK_FAILS(moe4j_cpu_router_z_loss(x.data(), 2, 4, 0.001f, &out, x.data()), INV,
              "d_logits and logits overlap");
  CHECK_FAILS(moe4j_cpu_router_z_loss(x.data(), 2, 4, 0.001f, &out,
                                      (float *)((char *)d.data() + 1)), INV, "d_logits (address");
  CHECK_FAILS(moe4j_cpu_router_z_loss(x.data(), INT64_MAX / 2, 4, 0.001f, &out, d.data()), INV,
              "overflows");
  CHECK(out == kGuard && d[0] == kGuard);
}

TEST_CASE(bad_arguments_bias_update) {
  const int32_t INV = MOE4J_ERR_INVALID_ARGUMENT;
  std::vector<float> bias(4, 0.5f);
  std::vector<int64_t> counts = {1, 2, 3, 4};
  CHECK_FAILS(moe4j_cpu_router_bias_update(bias.data(), counts.data(), 0, 0.001f), INV,
              "moe4j_cpu_router_bias_update: experts must be in [1, 65536], got 0");
  CHECK_FAILS(moe4j_cpu_router_bias_update(bias.data(), counts.data(), 65537, 0.001f), INV,
              "got 65537");
  CHECK_FAILS(moe4j_cpu_router_bias_update(bias.data(), counts.data(), 4, -0.001f), INV,
              "rate must be finite and >= 0");
  CHECK_FAILS(moe4j_cpu_router_bias_update(bias.data(), counts.data(), 4, NAN), INV,
              "rate must be finite");
  CHECK_FAILS(moe4j_cpu_router_bias_update(nullptr, counts.data(), 4, 0.001f), INV,
              "bias is NULL");
  CHECK_FAILS(moe4j_cpu_router_bias_update(bias.data(), nullptr, 4, 0.001f), INV,
              "counts is NULL");
  CHECK_FAILS(moe4j_cpu_router_bias_update((float *)counts.data() + 1, counts.data(), 4, 0.001f),
              INV, "bias and counts overlap");
  CHECK_FAILS(moe4j_cpu_router_bias_update(bias.data(), (const int64_t *)((char *)counts.data() + 4),
                                           4, 0.001f), INV, "counts (address");
  CHECK_FAILS(moe4j_cpu_router_bias_update((float *)((char *)bias.data() + 2), counts.data(), 4,
                                           0.001f), INV, "bias (address");
  CHECK(bias[0] == 0.5f);
}

TEST_MAIN("test_router_losses")
