/*
 * Softmax cross-entropy (CPU twin) against a naive fp64 reference (materialized softmax, plain
 * loops): odd/prime vocab sizes up to GPT-2's 50257, ignore_index rows, in-place backward, fp64
 * central finite differences, large-logit stability, sentinels past the end, bad arguments.
 */
#include <omp.h>
#include <string.h>

#include "check.h"
#include "cpu_common.h"

using namespace moe4j;

namespace {

constexpr int32_t kIgnore = -100;
const int64_t kVocabs[] = {1, 2, 7, 1031, 50257};
const int64_t kRows[] = {0, 1, 3, 17};

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
std::vector<double> widen(const std::vector<T> &v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = (double)to_f32(v[i]);
  return out;
}

/* fp64 reference: materialized softmax p, lse and per-row loss (0 for ignored rows). */
struct Reference {
  std::vector<double> p, lse, loss;
};

Reference reference(const std::vector<double> &x, const std::vector<int32_t> &targets, int64_t rows,
                    int64_t vocab, int32_t ignore_index) {
  Reference ref;
  ref.p.resize(rows * vocab);
  ref.lse.resize(rows);
  ref.loss.resize(rows);
  for (int64_t r = 0; r < rows; r++) {
    const double *xr = &x[r * vocab];
    double max = -INFINITY;
    for (int64_t c = 0; c < vocab; c++) max = xr[c] > max ? xr[c] : max;
    double sum = 0;
    for (int64_t c = 0; c < vocab; c++) sum += exp(xr[c] - max);
    for (int64_t c = 0; c < vocab; c++) ref.p[r * vocab + c] = exp(xr[c] - max) / sum;
    ref.lse[r] = max + log(sum);
    const int32_t t = targets[r];
    ref.loss[r] = t == ignore_index ? 0.0 : ref.lse[r] - xr[t];
  }
  return ref;
}

std::vector<int32_t> random_targets(int64_t rows, int64_t vocab, uint64_t seed, bool with_ignored) {
  std::mt19937_64 g(seed);
  std::vector<int32_t> t(rows);
  for (int64_t r = 0; r < rows; r++) {
    t[r] = (int32_t)(g() % (uint64_t)vocab);
    if (with_ignored && r % 5 == 2) t[r] = kIgnore;
  }
  return t;
}

/* Forward tolerance: lse and loss come from an f32 sum of <= 50257 exps (each within ~2 ulp) in 16
 * lane-interleaved partial sums plus one log, and f32 rounding of the result: ~1e-6 relative in
 * practice, 1e-5 relative (absolute below 1) is the fp32 rule of DESIGN §6. */
double forward_tol(double ref) { return 1e-5 * (fabs(ref) > 1 ? fabs(ref) : 1); }

/* Backward tolerance (a-priori): g = (expf(x - lse) - y) * s with lse stored in f32 (rounding
 * 2^-24 |lse|, plus ~1e-6 from the sum), x - lse rounded (2^-24 |x - lse| relative in exp), expf
 * ~2 ulp: error <= |s| p (2^-23 |lse| + 2^-24 |x - lse| + 1e-5) + the roundings of p - onehot and
 * of the product by s (2 x 2^-24 |g|). bf16 adds one rounding on store: <= 2^-8 |g| (unit
 * roundoff, 8 significant bits); we allow 2^-7, 2x what any implementation storing bf16 must
 * lose (DESIGN §6). */
template <typename T>
double backward_tol(double p, double x, double lse, double g, float scale) {
  double tol = fabs(scale) * p * (ldexp(fabs(lse), -23) + ldexp(fabs(x - lse), -24) + 1e-5) +
               ldexp(fabs(g), -23);
  if (dtype_code<T>() == MOE4J_DTYPE_BF16) tol += ldexp(fabs(g), -7);
  return tol + 1e-37;
}

template <typename T>
void check_forward_and_backward(int64_t rows, int64_t vocab, const std::vector<float> &logits32,
                                const std::vector<int32_t> &targets, int32_t ignore_index,
                                float scale) {
  const int32_t dt = dtype_code<T>();
  std::vector<T> logits = convert<T>(logits32);
  logits.push_back(from_f32<T>(-3.0f)); /* an element past the end: never read into a result */
  std::vector<double> x = widen(logits);
  x.pop_back();
  const Reference ref = reference(x, targets, rows, vocab, ignore_index);
  std::vector<float> losses(rows + 1, 12345.0f), lse(rows + 1, 12345.0f);
  CHECK_STATUS(moe4j_cpu_cross_entropy_forward(dt, logits.data(), targets.data(), losses.data(),
                                               lse.data(), rows, vocab, ignore_index),
               MOE4J_OK);
  CHECK(losses[rows] == 12345.0f && lse[rows] == 12345.0f); /* nothing written past the end */
  int bad = 0;
  for (int64_t r = 0; r < rows; r++) {
    if (fabs(lse[r] - ref.lse[r]) > forward_tol(ref.lse[r]) ||
        fabs(losses[r] - ref.loss[r]) > forward_tol(ref.loss[r]))
      bad++;
    if (targets[r] == ignore_index && losses[r] != 0.0f) bad++;
  }
  if (bad) {
    char msg[200];
    snprintf(msg, sizeof msg, "forward rows=%lld vocab=%lld dtype=%d: %d bad rows", (long long)rows,
             (long long)vocab, dt, bad);
    check::report(__FILE__, __LINE__, msg);
  }
  std::vector<T> dlogits(rows * vocab + 1, from_f32<T>(768.0f));
  CHECK_STATUS(moe4j_cpu_cross_entropy_backward(dt, logits.data(), targets.data(), lse.data(),
                                                dlogits.data(), rows, vocab, ignore_index, scale),
               MOE4J_OK);
  CHECK(to_f32(dlogits[rows * vocab]) == 768.0f);
  bad = 0;
  double worst = 0;
  for (int64_t r = 0; r < rows; r++) {
    const bool ignored = targets[r] == ignore_index;
    for (int64_t c = 0; c < vocab; c++) {
      const int64_t i = r * vocab + c;
      const double p = ref.p[i];
      const double g = ignored ? 0.0 : (p - (c == targets[r] ? 1.0 : 0.0)) * scale;
      const double got = to_f32(dlogits[i]);
      const double tol = ignored ? 0.0 : backward_tol<T>(p, x[i], ref.lse[r], g, scale);
      if (!(fabs(got - g) <= tol)) bad++;
      if (fabs(got - g) / (tol + 1e-300) > worst) worst = fabs(got - g) / (tol + 1e-300);
    }
  }
  if (bad) {
    char msg[200];
    snprintf(msg, sizeof msg, "backward rows=%lld vocab=%lld dtype=%d: %d bad elements (worst %.3g x tol)",
             (long long)rows, (long long)vocab, dt, bad, worst);
    check::report(__FILE__, __LINE__, msg);
  }
}

}  // namespace

TEST_CASE(forward_and_backward_match_fp64_all_shapes) {
  for (int64_t vocab : kVocabs) {
    for (int64_t rows : kRows) {
      const auto logits = check::randn(rows * vocab, 100 + vocab + rows, 3.0f);
      const auto targets = random_targets(rows, vocab, 7 + rows, true);
      const float scale = rows > 0 ? 1.0f / (float)rows : 1.0f;
      check_forward_and_backward<float>(rows, vocab, logits, targets, kIgnore, scale);
      check_forward_and_backward<bf16_t>(rows, vocab, logits, targets, kIgnore, scale);
    }
  }
}

TEST_CASE(ignore_index_rows_get_zero_loss_and_zero_gradient) {
  const int64_t rows = 4, vocab = 9;
  const auto logits = check::randn(rows * vocab, 5);
  /* ignore_index inside [0, vocab): target 0 means "ignored", not class 0 */
  std::vector<int32_t> targets = {0, 3, 0, 8};
  check_forward_and_backward<float>(rows, vocab, logits, targets, 0, -0.5f);
  std::vector<float> losses(rows), lse(rows), dl(rows * vocab, 1.0f);
  CHECK_STATUS(moe4j_cpu_cross_entropy_forward(MOE4J_DTYPE_F32, logits.data(), targets.data(),
                                               losses.data(), lse.data(), rows, vocab, 0),
               MOE4J_OK);
  CHECK(losses[0] == 0.0f && losses[2] == 0.0f && losses[1] > 0.0f);
  CHECK(isfinite(lse[0]) && lse[0] > logits[0]); /* lse still written for ignored rows */
  CHECK_STATUS(moe4j_cpu_cross_entropy_backward(MOE4J_DTYPE_F32, logits.data(), targets.data(),
                                                lse.data(), dl.data(), rows, vocab, 0, 1.0f),
               MOE4J_OK);
  for (int64_t c = 0; c < vocab; c++) CHECK(dl[c] == 0.0f && dl[2 * vocab + c] == 0.0f);
  /* an ignore_index far outside [0, vocab) is accepted as long as targets equal it */
  std::vector<int32_t> all_ignored(rows, INT32_MIN);
  CHECK_STATUS(moe4j_cpu_cross_entropy_forward(MOE4J_DTYPE_F32, logits.data(), all_ignored.data(),
                                               losses.data(), lse.data(), rows, vocab, INT32_MIN),
               MOE4J_OK);
  for (int64_t r = 0; r < rows; r++) CHECK(losses[r] == 0.0f);
}

template <typename T>
static void in_place_case(int64_t rows, int64_t vocab) {
  const int32_t dt = dtype_code<T>();
  const auto logits = convert<T>(check::randn(rows * vocab, 31 + vocab, 2.0f));
  const auto targets = random_targets(rows, vocab, 3, true);
  std::vector<float> losses(rows), lse(rows);
  CHECK_STATUS(moe4j_cpu_cross_entropy_forward(dt, logits.data(), targets.data(), losses.data(),
                                               lse.data(), rows, vocab, kIgnore),
               MOE4J_OK);
  std::vector<T> out_of_place(rows * vocab), in_place = logits;
  CHECK_STATUS(moe4j_cpu_cross_entropy_backward(dt, logits.data(), targets.data(), lse.data(),
                                                out_of_place.data(), rows, vocab, kIgnore, 0.25f),
               MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_cross_entropy_backward(dt, in_place.data(), targets.data(), lse.data(),
                                                in_place.data(), rows, vocab, kIgnore, 0.25f),
               MOE4J_OK);
  CHECK(memcmp(in_place.data(), out_of_place.data(), in_place.size() * sizeof(T)) == 0);
}

TEST_CASE(in_place_backward_equals_out_of_place_bitwise) {
  for (int64_t vocab : {7, 1031, 50257}) {
    in_place_case<float>(3, vocab);
    in_place_case<bf16_t>(3, vocab);
  }
}

TEST_CASE(gradient_matches_fp64_central_differences) {
  const int64_t rows = 3, vocab = 5;
  const auto logits = check::randn(rows * vocab, 77, 1.5f);
  const std::vector<int32_t> targets = {4, kIgnore, 1};
  const float scale = 0.5f;
  std::vector<float> losses(rows), lse(rows), grad(rows * vocab);
  CHECK_STATUS(moe4j_cpu_cross_entropy_forward(MOE4J_DTYPE_F32, logits.data(), targets.data(),
                                               losses.data(), lse.data(), rows, vocab, kIgnore),
               MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_cross_entropy_backward(MOE4J_DTYPE_F32, logits.data(), targets.data(),
                                                lse.data(), grad.data(), rows, vocab, kIgnore,
                                                scale),
               MOE4J_OK);
  /* L(x) = scale * Σ_r loss_r(x) in fp64; h = 1e-4: truncation ~h^2 ~ 1e-8, rounding ~1e-12 */
  auto total = [&](const std::vector<double> &x) {
    const Reference ref = reference(x, targets, rows, vocab, kIgnore);
    double sum = 0;
    for (double l : ref.loss) sum += l;
    return scale * sum;
  };
  std::vector<double> x(logits.begin(), logits.end());
  const double h = 1e-4;
  for (int64_t i = 0; i < rows * vocab; i++) {
    const double keep = x[i];
    x[i] = keep + h;
    const double up = total(x);
    x[i] = keep - h;
    const double down = total(x);
    x[i] = keep;
    /* the f32 backward is within ~1e-6 of the exact derivative (see backward_tol) */
    CHECK_CLOSE(grad[i], (up - down) / (2 * h), 1e-5 * scale);
  }
  /* and the gradient is the derivative of our own f32 forward (h = 2^-6 keeps the f32 loss
   * rounding, ~1e-7 / h, and the h^2 truncation both below 1e-3) */
  std::vector<float> xf = logits, lp(rows), ln(rows), tmp(rows);
  for (int64_t i = 0; i < rows * vocab; i++) {
    const float keep = xf[i], hf = 1.0f / 64;
    xf[i] = keep + hf;
    moe4j_cpu_cross_entropy_forward(MOE4J_DTYPE_F32, xf.data(), targets.data(), lp.data(), tmp.data(), rows, vocab, kIgnore);
    xf[i] = keep - hf;
    moe4j_cpu_cross_entropy_forward(MOE4J_DTYPE_F32, xf.data(), targets.data(), ln.data(), tmp.data(), rows, vocab, kIgnore);
    xf[i] = keep;
    double diff = 0;
    for (int64_t r = 0; r < rows; r++) diff += (double)lp[r] - (double)ln[r];
    CHECK_CLOSE(grad[i], scale * diff / (2 * hf), 1e-3);
  }
}

template <typename T>
static void large_logits_case(float offset) {
  const int64_t rows = 3, vocab = 1031;
  auto logits = check::randn(rows * vocab, 8, 1.0f);
  for (int64_t c = 0; c < vocab; c++) logits[c] += offset;         /* row 0: all near offset */
  logits[vocab + 17] = offset;                                     /* row 1: one huge logit */
  for (int64_t c = 0; c < vocab; c++) logits[2 * vocab + c] -= offset; /* row 2: all very negative */
  const std::vector<int32_t> targets = {5, 3, 1030};
  check_forward_and_backward<T>(rows, vocab, logits, targets, kIgnore, 1.0f);
  std::vector<float> losses(rows), lse(rows);
  const auto lt = convert<T>(logits);
  CHECK_STATUS(moe4j_cpu_cross_entropy_forward(dtype_code<T>(), lt.data(), targets.data(),
                                               losses.data(), lse.data(), rows, vocab, kIgnore),
               MOE4J_OK);
  for (int64_t r = 0; r < rows; r++) CHECK(isfinite(losses[r]) && isfinite(lse[r]));
  CHECK(losses[1] > 0.9f * offset); /* target far below the huge logit: loss ~ offset */
}

TEST_CASE(large_logits_do_not_overflow) {
  for (float offset : {1e4f, 3e4f}) {
    large_logits_case<float>(offset);
    large_logits_case<bf16_t>(offset);
  }
}

TEST_CASE(edge_values_inf_and_nan) {
  const int64_t vocab = 5;
  /* -inf logits contribute 0; an all -inf row except the target is a zero loss */
  std::vector<float> x = {-INFINITY, 2.0f, -INFINITY, -INFINITY, -INFINITY};
  std::vector<int32_t> t = {1};
  float loss = -1, lse = -1;
  CHECK_STATUS(moe4j_cpu_cross_entropy_forward(MOE4J_DTYPE_F32, x.data(), t.data(), &loss, &lse, 1, vocab, kIgnore), MOE4J_OK);
  CHECK(loss == 0.0f && lse == 2.0f);
  std::vector<float> g(vocab);
  CHECK_STATUS(moe4j_cpu_cross_entropy_backward(MOE4J_DTYPE_F32, x.data(), t.data(), &lse, g.data(), 1, vocab, kIgnore, 1.0f), MOE4J_OK);
  for (int64_t c = 0; c < vocab; c++) CHECK(g[c] == 0.0f);
  x[3] = NAN; /* a NaN logit must show up, not vanish */
  CHECK_STATUS(moe4j_cpu_cross_entropy_forward(MOE4J_DTYPE_F32, x.data(), t.data(), &loss, &lse, 1, vocab, kIgnore), MOE4J_OK);
  CHECK(isnan(loss) && isnan(lse));
}

TEST_CASE(results_are_deterministic_and_thread_count_independent) {
  const int64_t rows = 37, vocab = 50257;
  const auto logits = convert<bf16_t>(check::randn(rows * vocab, 9, 4.0f));
  const auto targets = random_targets(rows, vocab, 10, true);
  auto run = [&](std::vector<float> &losses, std::vector<float> &lse, std::vector<bf16_t> &dl) {
    losses.assign(rows, 0);
    lse.assign(rows, 0);
    dl.assign(rows * vocab, bf16_t{0});
    CHECK_STATUS(moe4j_cpu_cross_entropy_forward(MOE4J_DTYPE_BF16, logits.data(), targets.data(), losses.data(), lse.data(), rows, vocab, kIgnore), MOE4J_OK);
    CHECK_STATUS(moe4j_cpu_cross_entropy_backward(MOE4J_DTYPE_BF16, logits.data(), targets.data(), lse.data(), dl.data(), rows, vocab, kIgnore, 0.1f), MOE4J_OK);
  };
  std::vector<float> l1, s1, l2, s2, l3, s3;
  std::vector<bf16_t> d1, d2, d3;
  run(l1, s1, d1);
  run(l2, s2, d2);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  run(l3, s3, d3);
  omp_set_num_threads(threads);
  CHECK(memcmp(l1.data(), l2.data(), rows * 4) == 0 && memcmp(s1.data(), s2.data(), rows * 4) == 0);
  CHECK(memcmp(l1.data(), l3.data(), rows * 4) == 0 && memcmp(s1.data(), s3.data(), rows * 4) == 0);
  CHECK(memcmp(d1.data(), d2.data(), d1.size() * 2) == 0 && memcmp(d1.data(), d3.data(), d1.size() * 2) == 0);
}

TEST_CASE(bad_arguments_are_reported_before_any_write) {
  const int64_t rows = 3, vocab = 7;
  std::vector<float> x(rows * vocab, 0.5f), losses(rows, 9.0f), lse(rows, 9.0f), dl(rows * vocab, 9.0f);
  std::vector<int32_t> t = {1, 2, 3};
  const int32_t F32 = MOE4J_DTYPE_F32;
  auto fwd = [&](int32_t dtype, const void *logits, const int32_t *targets, float *lo, float *ls, int64_t r, int64_t v) {
    return moe4j_cpu_cross_entropy_forward(dtype, logits, targets, lo, ls, r, v, kIgnore);
  };
  CHECK_FAILS(fwd(MOE4J_DTYPE_F16, x.data(), t.data(), losses.data(), lse.data(), rows, vocab), MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16, got F16");
  CHECK_FAILS(fwd(F32, x.data(), t.data(), losses.data(), lse.data(), -1, vocab), MOE4J_ERR_INVALID_ARGUMENT, "rows must be >= 0, got -1");
  CHECK_FAILS(fwd(F32, x.data(), t.data(), losses.data(), lse.data(), rows, 0), MOE4J_ERR_INVALID_ARGUMENT, "vocab must be > 0, got 0");
  CHECK_FAILS(fwd(F32, x.data(), t.data(), losses.data(), lse.data(), INT64_MAX / 2, 3), MOE4J_ERR_INVALID_ARGUMENT, "rows * vocab");
  CHECK_FAILS(fwd(F32, nullptr, t.data(), losses.data(), lse.data(), rows, vocab), MOE4J_ERR_INVALID_ARGUMENT, "logits is NULL");
  CHECK_FAILS(fwd(F32, x.data(), nullptr, losses.data(), lse.data(), rows, vocab), MOE4J_ERR_INVALID_ARGUMENT, "targets is NULL");
  CHECK_FAILS(fwd(F32, x.data(), t.data(), nullptr, lse.data(), rows, vocab), MOE4J_ERR_INVALID_ARGUMENT, "losses is NULL");
  CHECK_FAILS(fwd(F32, x.data(), t.data(), losses.data(), nullptr, rows, vocab), MOE4J_ERR_INVALID_ARGUMENT, "lse is NULL");
  CHECK_FAILS(fwd(F32, (char *)x.data() + 2, t.data(), losses.data(), lse.data(), rows, vocab), MOE4J_ERR_INVALID_ARGUMENT, "logits (address");
  CHECK_FAILS(fwd(F32, x.data(), t.data(), losses.data(), losses.data() + 1, rows, vocab), MOE4J_ERR_INVALID_ARGUMENT, "losses and lse overlap");
  CHECK_FAILS(fwd(F32, x.data(), t.data(), x.data() + 4, lse.data(), rows, vocab), MOE4J_ERR_INVALID_ARGUMENT, "losses/lse overlap logits");
  t[1] = 7;
  CHECK_FAILS(fwd(F32, x.data(), t.data(), losses.data(), lse.data(), rows, vocab), MOE4J_ERR_INVALID_ARGUMENT, "targets[1] = 7 is out of range [0, 7)");
  t[1] = -1;
  CHECK_FAILS(fwd(F32, x.data(), t.data(), losses.data(), lse.data(), rows, vocab), MOE4J_ERR_INVALID_ARGUMENT, "targets[1] = -1 is out of range");
  for (int64_t r = 0; r < rows; r++) CHECK(losses[r] == 9.0f && lse[r] == 9.0f); /* untouched */

  auto bwd = [&](int32_t dtype, const void *logits, const int32_t *targets, const float *ls, void *d, int64_t r, int64_t v, float scale) {
    return moe4j_cpu_cross_entropy_backward(dtype, logits, targets, ls, d, r, v, kIgnore, scale);
  };
  CHECK_FAILS(bwd(MOE4J_DTYPE_I32, x.data(), t.data(), lse.data(), dl.data(), rows, vocab, 1.0f), MOE4J_ERR_UNSUPPORTED, "dtype");
  CHECK_FAILS(bwd(F32, x.data(), t.data(), lse.data(), dl.data(), -2, vocab, 1.0f), MOE4J_ERR_INVALID_ARGUMENT, "rows must be >= 0");
  CHECK_FAILS(bwd(F32, x.data(), t.data(), lse.data(), dl.data(), rows, -7, 1.0f), MOE4J_ERR_INVALID_ARGUMENT, "vocab must be > 0");
  CHECK_FAILS(bwd(F32, x.data(), t.data(), lse.data(), dl.data(), 3, INT64_MAX / 3, 1.0f), MOE4J_ERR_INVALID_ARGUMENT, "overflows");
  CHECK_FAILS(bwd(F32, x.data(), t.data(), lse.data(), dl.data(), rows, vocab, NAN), MOE4J_ERR_INVALID_ARGUMENT, "grad_scale must be finite");
  CHECK_FAILS(bwd(F32, nullptr, t.data(), lse.data(), dl.data(), rows, vocab, 1.0f), MOE4J_ERR_INVALID_ARGUMENT, "logits is NULL");
  CHECK_FAILS(bwd(F32, x.data(), nullptr, lse.data(), dl.data(), rows, vocab, 1.0f), MOE4J_ERR_INVALID_ARGUMENT, "targets is NULL");
  CHECK_FAILS(bwd(F32, x.data(), t.data(), nullptr, dl.data(), rows, vocab, 1.0f), MOE4J_ERR_INVALID_ARGUMENT, "lse is NULL");
  CHECK_FAILS(bwd(F32, x.data(), t.data(), lse.data(), nullptr, rows, vocab, 1.0f), MOE4J_ERR_INVALID_ARGUMENT, "dlogits is NULL");
  CHECK_FAILS(bwd(MOE4J_DTYPE_BF16, x.data(), t.data(), lse.data(), (char *)dl.data() + 1, rows, vocab, 1.0f), MOE4J_ERR_INVALID_ARGUMENT, "dlogits (address");
  CHECK_FAILS(bwd(F32, x.data(), t.data(), lse.data(), x.data() + 1, rows, vocab, 1.0f), MOE4J_ERR_INVALID_ARGUMENT, "logits and dlogits overlap");
  CHECK_FAILS(bwd(F32, x.data(), t.data(), dl.data() + 2, dl.data(), rows, vocab, 1.0f), MOE4J_ERR_INVALID_ARGUMENT, "dlogits overlaps targets/lse");
  CHECK_FAILS(bwd(F32, x.data(), t.data(), lse.data(), dl.data(), rows, vocab, 1.0f), MOE4J_ERR_INVALID_ARGUMENT, "targets[1] = -1 is out of range [0, 7) and is not ignore_index (-100)");
  for (float v : dl) CHECK(v == 9.0f); /* nothing written */
  /* empty calls with NULL buffers succeed and clear the message */
  CHECK_STATUS(fwd(F32, nullptr, nullptr, nullptr, nullptr, 0, vocab), MOE4J_OK);
  CHECK_STATUS(bwd(F32, nullptr, nullptr, nullptr, nullptr, 0, vocab, 1.0f), MOE4J_OK);
  CHECK(moe4j_last_error()[0] == '\0');
}

TEST_MAIN("cross_entropy")
