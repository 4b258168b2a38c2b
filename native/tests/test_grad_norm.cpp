/* sum_squares and clip_coefficient (CPU twins) against fp64 references, determinism across runs
 * and thread counts, NaN / inf / zero behaviour, and bad arguments. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "check.h"
#include "cpu_common.h"

using namespace moe4j;

static const int64_t kSizes[] = {0, 1, 7, 16383, 16384, 16385, 100003, 1000003};

static double sum_squares_f64(const std::vector<double> &x) {
  double s = 0.0;
  for (double e : x) s += e * e;
  return s;
}

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* The kernel rounds an accurate double sum to float once: |error| <= 0.5 ulp (2^-24 relative)
 * plus the double summation error (~n * 2^-53, < 1e-10 here); the fp64 reference has the same
 * double error. 2^-23 relative allows the two doubles to straddle a float rounding boundary. */
static const double kSumTol = 1.0 / (1 << 23);

TEST_CASE(sum_squares_f32_and_bf16_match_fp64) {
  for (int64_t n : kSizes) {
    auto x = check::randn(n, 200 + n, 2.0f);
    std::vector<bf16_t> xb(n);
    std::vector<double> xd(x.begin(), x.end()), xbd(n);
    for (int64_t i = 0; i < n; i++) {
      xb[i] = from_f32<bf16_t>(x[i]);
      xbd[i] = to_f32(xb[i]);
    }
    float out[2] = {-1.0f, -7.0f};
    CHECK_STATUS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, x.data(), n, out), MOE4J_OK);
    double want = sum_squares_f64(xd);
    CHECK_CLOSE(out[0], want, want * kSumTol);
    CHECK(out[1] == -7.0f); /* nothing written past out[0] */
    CHECK_STATUS(moe4j_cpu_sum_squares(MOE4J_DTYPE_BF16, xb.data(), n, out), MOE4J_OK);
    want = sum_squares_f64(xbd);
    CHECK_CLOSE(out[0], want, want * kSumTol);
    CHECK(out[1] == -7.0f);
  }
}

TEST_CASE(sum_squares_is_bitwise_deterministic_across_runs_and_threads) {
  int saved = omp_get_max_threads();
  for (int64_t n : {16385LL, 1000003LL}) {
    /* wide dynamic range, so any change of summation order would show in the last bit */
    auto x = check::randn(n, 300 + n);
    for (int64_t i = 0; i < n; i += 97) x[i] *= 1000.0f;
    std::vector<bf16_t> xb(n);
    for (int64_t i = 0; i < n; i++) xb[i] = from_f32<bf16_t>(x[i]);
    float f[4], b[4];
    int threads[4] = {1, 2, 3, saved};
    for (int k = 0; k < 4; k++) {
      omp_set_num_threads(threads[k]);
      CHECK_STATUS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, x.data(), n, &f[k]), MOE4J_OK);
      CHECK_STATUS(moe4j_cpu_sum_squares(MOE4J_DTYPE_BF16, xb.data(), n, &b[k]), MOE4J_OK);
    }
    omp_set_num_threads(saved);
    float again;
    CHECK_STATUS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, x.data(), n, &again), MOE4J_OK);
    CHECK(bits(again) == bits(f[0]));
    for (int k = 1; k < 4; k++) {
      CHECK(bits(f[k]) == bits(f[0]));
      CHECK(bits(b[k]) == bits(b[0]));
    }
  }
}

TEST_CASE(sum_squares_of_zeros_nan_and_inf) {
  std::vector<float> x(20000, 0.0f);
  float out = -1.0f;
  CHECK_STATUS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, x.data(), (int64_t)x.size(), &out), MOE4J_OK);
  CHECK(out == 0.0f);
  CHECK_STATUS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, nullptr, 0, &out), MOE4J_OK);
  CHECK(out == 0.0f); /* n = 0 writes 0 */
  x[17000] = NAN;
  CHECK_STATUS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, x.data(), (int64_t)x.size(), &out), MOE4J_OK);
  CHECK(isnan(out));
  x[17000] = -INFINITY;
  CHECK_STATUS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, x.data(), (int64_t)x.size(), &out), MOE4J_OK);
  CHECK(out == INFINITY);
  x[17000] = 3e30f; /* its square overflows f32 but not the double accumulator: result inf */
  CHECK_STATUS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, x.data(), (int64_t)x.size(), &out), MOE4J_OK);
  CHECK(out == INFINITY);
  x[17000] = 1e-30f; /* its square is far below f32 normals but exact in double */
  x[3] = 1e-30f;
  CHECK_STATUS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, x.data(), (int64_t)x.size(), &out), MOE4J_OK);
  CHECK(out == 0.0f); /* 2e-60 rounds to f32 zero */
}

TEST_CASE(clip_coefficient_cases) {
  float out[3] = {-1.0f, -1.0f, -7.0f};
  const float partials[] = {9.0f, 16.0f}; /* norm 5 */
  CHECK_STATUS(moe4j_cpu_clip_coefficient(partials, 2, 10.0f, out), MOE4J_OK);
  CHECK(out[0] == 5.0f);
  CHECK(out[1] == 1.0f); /* below max_norm: no clipping */
  CHECK(out[2] == -7.0f);
  CHECK_STATUS(moe4j_cpu_clip_coefficient(partials, 2, 1.0f, out), MOE4J_OK);
  CHECK(out[0] == 5.0f);
  CHECK(out[1] == (float)(1.0 / (5.0 + 1e-6))); /* above: max_norm / (norm + 1e-6) */
  CHECK_STATUS(moe4j_cpu_clip_coefficient(partials, 2, 5.0f, out), MOE4J_OK);
  CHECK(out[1] < 1.0f && out[1] > 0.9999997f); /* at max_norm the 1e-6 keeps it just below 1 */

  /* many partials, index-order double sum vs fp64 */
  auto x = check::randn(1001, 400);
  std::vector<float> parts(1001);
  double total = 0.0;
  for (size_t i = 0; i < parts.size(); i++) {
    parts[i] = x[i] * x[i];
    total += (double)parts[i];
  }
  CHECK_STATUS(moe4j_cpu_clip_coefficient(parts.data(), (int64_t)parts.size(), 1.0f, out), MOE4J_OK);
  CHECK(out[0] == (float)sqrt(total));
  CHECK(out[1] == (float)(1.0 / (sqrt(total) + 1e-6)));

  /* zero gradients and no tensors at all: norm 0, coefficient 1 */
  const float zeros[3] = {0.0f, 0.0f, 0.0f};
  CHECK_STATUS(moe4j_cpu_clip_coefficient(zeros, 3, 1.0f, out), MOE4J_OK);
  CHECK(out[0] == 0.0f && out[1] == 1.0f);
  CHECK_STATUS(moe4j_cpu_clip_coefficient(nullptr, 0, 1.0f, out), MOE4J_OK);
  CHECK(out[0] == 0.0f && out[1] == 1.0f);

  /* a NaN anywhere: NaN norm AND NaN coefficient (not a silent 1) */
  const float with_nan[3] = {1.0f, NAN, 4.0f};
  CHECK_STATUS(moe4j_cpu_clip_coefficient(with_nan, 3, 1.0f, out), MOE4J_OK);
  CHECK(isnan(out[0]) && isnan(out[1]));
  CHECK_STATUS(moe4j_cpu_clip_coefficient(with_nan, 3, 1e30f, out), MOE4J_OK);
  CHECK(isnan(out[1]));
  /* an inf partial: inf norm, coefficient 0 (torch.nn.utils.clip_grad_norm_ behaviour) */
  const float with_inf[2] = {1.0f, INFINITY};
  CHECK_STATUS(moe4j_cpu_clip_coefficient(with_inf, 2, 1.0f, out), MOE4J_OK);
  CHECK(out[0] == INFINITY && out[1] == 0.0f);
  /* partials whose f32 sum would overflow are summed in double: norm is finite */
  const float huge[2] = {3e38f, 3e38f};
  CHECK_STATUS(moe4j_cpu_clip_coefficient(huge, 2, 1.0f, out), MOE4J_OK);
  CHECK(out[0] == (float)sqrt(6e38) && isfinite(out[1]));
}

TEST_CASE(bad_arguments_are_reported_not_fatal) {
  float x[8] = {0}, out[4] = {0};
  const int32_t INV = MOE4J_ERR_INVALID_ARGUMENT;
  CHECK_FAILS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F16, x, 8, out), MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16, got F16");
  CHECK_FAILS(moe4j_cpu_sum_squares(MOE4J_DTYPE_I32, x, 8, out), MOE4J_ERR_UNSUPPORTED, "got I32");
  CHECK_FAILS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, x, -3, out), INV, "n must be >= 0, got -3");
  CHECK_FAILS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, x, INT64_MAX, out), INV, "overflows");
  CHECK_FAILS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, nullptr, 8, out), INV, "x is NULL");
  CHECK_FAILS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, x, 8, nullptr), INV, "out is NULL");
  CHECK_FAILS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, nullptr, 0, nullptr), INV, "out is NULL");
  CHECK_FAILS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, (char *)x + 2, 4, out), INV, "x (address");
  CHECK_FAILS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, x, 8, (float *)((char *)out + 1)), INV, "out (address");
  CHECK_FAILS(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, x, 8, x + 7), INV, "x and out overlap");

  CHECK_FAILS(moe4j_cpu_clip_coefficient(x, -1, 1.0f, out), INV, "count must be >= 0, got -1");
  CHECK_FAILS(moe4j_cpu_clip_coefficient(x, INT64_MAX, 1.0f, out), INV, "overflows");
  CHECK_FAILS(moe4j_cpu_clip_coefficient(nullptr, 3, 1.0f, out), INV, "partials is NULL");
  CHECK_FAILS(moe4j_cpu_clip_coefficient(x, 3, 1.0f, nullptr), INV, "out is NULL");
  CHECK_FAILS(moe4j_cpu_clip_coefficient(x, 3, 0.0f, out), INV, "max_norm must be finite and > 0");
  CHECK_FAILS(moe4j_cpu_clip_coefficient(x, 3, -1.0f, out), INV, "max_norm must be finite and > 0");
  CHECK_FAILS(moe4j_cpu_clip_coefficient(x, 3, NAN, out), INV, "max_norm must be finite and > 0");
  CHECK_FAILS(moe4j_cpu_clip_coefficient(x, 3, INFINITY, out), INV, "max_norm must be finite and > 0");
  CHECK_FAILS(moe4j_cpu_clip_coefficient(x, 3, 1.0f, x + 2), INV, "partials and out overlap");
  CHECK_FAILS(moe4j_cpu_clip_coefficient(x, 3, 1.0f, (float *)((char *)out + 2)), INV, "out (address");
  for (int i = 0; i < 4; i++) CHECK(out[i] == 0.0f); /* failed calls wrote nothing */
  CHECK_STATUS(moe4j_cpu_clip_coefficient(x, 3, 1.0f, out), MOE4J_OK);
  CHECK(moe4j_last_error()[0] == '\0');
}

TEST_MAIN("grad_norm")
