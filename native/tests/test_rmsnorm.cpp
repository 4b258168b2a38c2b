/* RMSNorm forward/backward (CPU twin) against fp64 references: odd shapes, F32 and BF16,
 * dweight accumulate vs overwrite, finite differences, determinism, guards, bad arguments. */
#include <omp.h>
#include <string.h>

#include "check.h"
#include "cpu_common.h"
#include "rmsnorm_math.h"

using namespace moe4j;

namespace {

const int64_t kRows[] = {0, 1, 3, 17, 64};
const int64_t kCols[] = {1, 7, 31, 128, 4099};
const int32_t kDtypes[] = {MOE4J_DTYPE_F32, MOE4J_DTYPE_BF16};
constexpr size_t kGuard = 8;
constexpr float kEps = 1e-5f;
const double kBf16Round = 1.0 / 256; /* unit roundoff of bf16 (8 significant bits) */

float bf(float v) { return to_f32(from_f32<bf16_t>(v)); }

/* A host tensor of F32 or BF16 with kGuard sentinel elements after its end. */
struct Buf {
  int32_t dtype;
  size_t n;
  std::vector<float> f;
  std::vector<uint16_t> h;
  Buf(int32_t dt, size_t count) : dtype(dt), n(count) {
    if (dt == MOE4J_DTYPE_F32) f.assign(n + kGuard, -7.0f);
    else h.assign(n + kGuard, 0xc0e0); /* bf16 -7.0 */
  }
  Buf(int32_t dt, const std::vector<float> &v) : Buf(dt, v.size()) {
    for (size_t i = 0; i < n; i++) set(i, v[i]);
  }
  void *ptr() { return dtype == MOE4J_DTYPE_F32 ? (void *)f.data() : (void *)h.data(); }
  float get(size_t i) const { return dtype == MOE4J_DTYPE_F32 ? f[i] : bf16_bits_to_f32(h[i]); }
  void set(size_t i, float v) {
    if (dtype == MOE4J_DTYPE_F32) f[i] = v;
    else h[i] = f32_to_bf16_bits(v);
  }
  std::vector<double> values() const {
    std::vector<double> d(n);
    for (size_t i = 0; i < n; i++) d[i] = get(i);
    return d;
  }
  bool guard_intact() const {
    for (size_t i = n; i < n + kGuard; i++)
      if (dtype == MOE4J_DTYPE_F32 ? f[i] != -7.0f : h[i] != 0xc0e0) return false;
    return true;
  }
  bool bitwise_equal(const Buf &o) const {
    return dtype == MOE4J_DTYPE_F32 ? memcmp(f.data(), o.f.data(), n * 4) == 0
                                    : memcmp(h.data(), o.h.data(), n * 2) == 0;
  }
};

/* Inputs: rows at different scales, weights around 1. */
struct Inputs {
  std::vector<float> x, w, dy;
  Inputs(int64_t rows, int64_t cols, uint64_t seed) {
    x = check::randn(rows * cols, seed);
    w = check::randn(cols, seed + 1, 0.5f);
    dy = check::randn(rows * cols, seed + 2);
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++) x[r * cols + c] *= ldexpf(1.0f, (int)(r % 5) - 2);
    for (auto &v : w) v += 1.0f;
  }
};

struct Ref {
  std::vector<double> y, rstd, dx, dw;
  std::vector<double> dx_scale, dw_scale; /* magnitudes of the terms each result is made of */
};

/* fp64 reference: plain loops, materialized intermediates. */
Ref reference(const std::vector<double> &x, const std::vector<double> &w,
              const std::vector<double> &dy, int64_t rows, int64_t cols, double eps) {
  Ref r;
  r.y.resize(rows * cols);
  r.rstd.resize(rows);
  r.dx.resize(rows * cols);
  r.dx_scale.resize(rows * cols);
  r.dw.assign(cols, 0.0);
  r.dw_scale.assign(cols, 0.0);
  for (int64_t i = 0; i < rows; i++) {
    const double *xr = &x[i * cols], *dyr = &dy[i * cols];
    double ss = 0;
    for (int64_t c = 0; c < cols; c++) ss += xr[c] * xr[c];
    double rs = 1.0 / sqrt(ss / cols + eps);
    r.rstd[i] = rs;
    double sgx = 0, sabs = 0;
    for (int64_t c = 0; c < cols; c++) {
      r.y[i * cols + c] = xr[c] * rs * w[c];
      sgx += w[c] * dyr[c] * xr[c];
      sabs += fabs(w[c] * dyr[c] * xr[c]);
    }
    for (int64_t c = 0; c < cols; c++) {
      double g = w[c] * dyr[c];
      r.dx[i * cols + c] = rs * (g - xr[c] * rs * rs * sgx / cols);
      r.dx_scale[i * cols + c] = rs * fabs(g) + fabs(xr[c]) * rs * rs * rs * sabs / cols;
      r.dw[c] += dyr[c] * xr[c] * rs;
      r.dw_scale[c] += fabs(dyr[c] * xr[c] * rs);
    }
  }
  return r;
}

/* A naive bf16 implementation (HF/PyTorch style: every element-wise op rounded to bf16,
 * reductions accumulated in f32): the yardstick of the FlashAttention tolerance rule. */
Ref naive_bf16(const Buf &x, const Buf &w, const Buf &dy, int64_t rows, int64_t cols, float eps) {
  Ref r;
  r.y.resize(rows * cols);
  r.dx.resize(rows * cols);
  std::vector<float> dw(cols, 0.0f);
  for (int64_t i = 0; i < rows; i++) {
    float ss = 0;
    for (int64_t c = 0; c < cols; c++) ss += x.get(i * cols + c) * x.get(i * cols + c);
    float rs = 1.0f / sqrtf(ss / cols + eps);
    float sgx = 0;
    for (int64_t c = 0; c < cols; c++) {
      float xv = x.get(i * cols + c), g = bf(w.get(c) * dy.get(i * cols + c));
      r.y[i * cols + c] = bf(w.get(c) * bf(xv * rs));
      sgx += bf(g * xv);
    }
    float coef = bf(bf(rs * rs) * bf(sgx / cols));
    for (int64_t c = 0; c < cols; c++) {
      float xv = x.get(i * cols + c), d = dy.get(i * cols + c), g = bf(w.get(c) * d);
      r.dx[i * cols + c] = bf(rs * bf(g - bf(xv * coef)));
      dw[c] += bf(bf(d * xv) * rs);
    }
  }
  r.dw.resize(cols);
  for (int64_t c = 0; c < cols; c++) r.dw[c] = bf(dw[c]);
  return r;
}

template <typename Get>
double max_abs_err(Get got, const std::vector<double> &ref) {
  double e = 0;
  for (size_t i = 0; i < ref.size(); i++) e = fmax(e, fabs((double)got(i) - ref[i]));
  return e;
}

struct Run {
  Buf y, dx;
  std::vector<float> rstd, dw;
  Run(int32_t dt, int64_t rows, int64_t cols)
      : y(dt, rows * cols), dx(dt, rows * cols), rstd(rows + kGuard, -7.0f),
        dw(cols + kGuard, -7.0f) {}
};

Run run_both(int32_t dt, Buf &x, Buf &w, Buf &dy, int64_t rows, int64_t cols, float eps) {
  Run o(dt, rows, cols);
  CHECK_STATUS(moe4j_cpu_rmsnorm_forward(dt, x.ptr(), w.ptr(), o.y.ptr(), o.rstd.data(), rows,
                                         cols, eps), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_rmsnorm_backward(dt, dy.ptr(), x.ptr(), w.ptr(), o.rstd.data(),
                                          o.dx.ptr(), o.dw.data(), rows, cols, 0), MOE4J_OK);
  return o;
}

}  // namespace

TEST_CASE(forward_and_backward_match_fp64) {
  for (int32_t dt : kDtypes)
    for (int64_t rows : kRows)
      for (int64_t cols : kCols) {
        Inputs in(rows, cols, 100 + rows * 7 + cols);
        Buf x(dt, in.x), w(dt, in.w), dy(dt, in.dy);
        Ref ref = reference(x.values(), w.values(), dy.values(), rows, cols, kEps);
        Run o = run_both(dt, x, w, dy, rows, cols, kEps);
        /* f32: a sum of cols/16 + 4 positive terms per lane errs <= (cols/16 + 4) * 2^-24
         * relative (< 1.6e-5 for 4099 cols), halved by the sqrt, plus 4 roundings: < 1e-5. */
        const double f32_rel = 1e-5;
        /* bf16 output: the f32 value (f32_rel) rounded once to bf16 (unit roundoff 2^-8). */
        const double out_rel = dt == MOE4J_DTYPE_F32 ? f32_rel : kBf16Round + f32_rel;
        int bad = 0;
        for (int64_t i = 0; i < rows; i++)
          if (!(fabs(o.rstd[i] - ref.rstd[i]) <= f32_rel * ref.rstd[i])) bad++;
        for (int64_t i = 0; i < rows * cols; i++) {
          if (!(fabs(o.y.get(i) - ref.y[i]) <= out_rel * fabs(ref.y[i]) + 1e-30)) bad++;
          /* dx is a difference of two terms; f32 errs relative to the terms (dx_scale). */
          if (!(fabs(o.dx.get(i) - ref.dx[i]) <=
                out_rel * fabs(ref.dx[i]) + f32_rel * ref.dx_scale[i] + 1e-30))
            bad++;
        }
        /* dweight is f32 for both dtypes: sums of <= 64 terms in blocks of 16 (~20 roundings),
         * and the f32 rstd: 1e-5 of the sum of |terms|. */
        for (int64_t c = 0; c < cols; c++)
          if (!(fabs(o.dw[c] - ref.dw[c]) <= f32_rel * ref.dw_scale[c] + 1e-30)) bad++;
        if (bad) {
          fprintf(stderr, "    dtype %d rows %lld cols %lld: %d elements out of tolerance\n", dt,
                  (long long)rows, (long long)cols, bad);
          CHECK(bad == 0);
        }
        CHECK(o.y.guard_intact() && o.dx.guard_intact());
        CHECK(o.rstd[rows] == -7.0f && o.dw[cols] == -7.0f);
        if (dt == MOE4J_DTYPE_BF16 && rows * cols > 0) {
          /* FlashAttention rule: error vs fp64 <= 2x that of a naive bf16 implementation
           * (3x for gradients). */
          Ref nv = naive_bf16(x, w, dy, rows, cols, kEps);
          double ey = max_abs_err([&](size_t i) { return o.y.get(i); }, ref.y);
          double edx = max_abs_err([&](size_t i) { return o.dx.get(i); }, ref.dx);
          double edw = max_abs_err([&](size_t i) { return o.dw[i]; }, ref.dw);
          CHECK(ey <= 2 * max_abs_err([&](size_t i) { return nv.y[i]; }, ref.y));
          CHECK(edx <= 3 * max_abs_err([&](size_t i) { return nv.dx[i]; }, ref.dx));
          CHECK(edw <= 3 * max_abs_err([&](size_t i) { return nv.dw[i]; }, ref.dw));
        }
      }
}

TEST_CASE(rstd_follows_the_documented_lane_order_bitwise) {
  int64_t rows = 5, cols = 4099;
  Inputs in(rows, cols, 7);
  std::vector<float> y(rows * cols), rstd(rows);
  CHECK_STATUS(moe4j_cpu_rmsnorm_forward(MOE4J_DTYPE_F32, in.x.data(), in.w.data(), y.data(),
                                         rstd.data(), rows, cols, kEps), MOE4J_OK);
  for (int64_t r = 0; r < rows; r++) {
    float expect = rmsnorm_rstd(rmsnorm_row_sum_squares(&in.x[r * cols], cols), cols, kEps);
    CHECK(rstd[r] == expect);
    for (int64_t c = 0; c < cols; c++)
      CHECK(y[r * cols + c] == rmsnorm_y(in.x[r * cols + c], expect, in.w[c]));
  }
}

TEST_CASE(rstd_may_be_null_in_forward) {
  int64_t rows = 3, cols = 31;
  Inputs in(rows, cols, 9);
  std::vector<float> y1(rows * cols), y2(rows * cols), rstd(rows);
  CHECK_STATUS(moe4j_cpu_rmsnorm_forward(MOE4J_DTYPE_F32, in.x.data(), in.w.data(), y1.data(),
                                         nullptr, rows, cols, kEps), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_rmsnorm_forward(MOE4J_DTYPE_F32, in.x.data(), in.w.data(), y2.data(),
                                         rstd.data(), rows, cols, kEps), MOE4J_OK);
  CHECK(y1 == y2);
}

TEST_CASE(dweight_accumulate_adds_to_existing_values) {
  for (int32_t dt : kDtypes)
    for (int64_t rows : {0, 1, 17, 64}) {
      int64_t cols = 31;
      Inputs in(rows, cols, 21);
      Buf x(dt, in.x), w(dt, in.w), dy(dt, in.dy), dx(dt, rows * cols);
      std::vector<float> rstd(rows), y_unused(rows * cols * 2);
      CHECK_STATUS(moe4j_cpu_rmsnorm_forward(dt, x.ptr(), w.ptr(), y_unused.data(), rstd.data(),
                                             rows, cols, kEps), MOE4J_OK);
      std::vector<float> over(cols, 123.0f), prior = check::randn(cols, 22), acc = prior;
      CHECK_STATUS(moe4j_cpu_rmsnorm_backward(dt, dy.ptr(), x.ptr(), w.ptr(), rstd.data(),
                                              dx.ptr(), over.data(), rows, cols, 0), MOE4J_OK);
      CHECK_STATUS(moe4j_cpu_rmsnorm_backward(dt, dy.ptr(), x.ptr(), w.ptr(), rstd.data(),
                                              dx.ptr(), acc.data(), rows, cols, 7), MOE4J_OK);
      for (int64_t c = 0; c < cols; c++) {
        if (rows == 0) CHECK(over[c] == 0.0f); /* overwrite with an empty sum: zeros */
        CHECK(acc[c] == prior[c] + over[c]);   /* accumulate: one f32 add of the same total */
      }
    }
}

/* Central differences in fp64 on tiny shapes vs the kernel's f32 backward. */
TEST_CASE(gradients_match_finite_differences) {
  for (int64_t cols : {1, 7, 20})
    for (float eps : {1e-5f, 0.1f}) {
      int64_t rows = 3;
      Inputs in(rows, cols, 31 + cols);
      std::vector<float> y(rows * cols), rstd(rows), dx(rows * cols), dw(cols);
      CHECK_STATUS(moe4j_cpu_rmsnorm_forward(MOE4J_DTYPE_F32, in.x.data(), in.w.data(), y.data(),
                                             rstd.data(), rows, cols, eps), MOE4J_OK);
      CHECK_STATUS(moe4j_cpu_rmsnorm_backward(MOE4J_DTYPE_F32, in.dy.data(), in.x.data(),
                                              in.w.data(), rstd.data(), dx.data(), dw.data(),
                                              rows, cols, 0), MOE4J_OK);
      std::vector<double> x(in.x.begin(), in.x.end()), w(in.w.begin(), in.w.end()),
          dy(in.dy.begin(), in.dy.end());
      auto loss = [&]() { /* L = sum(dy * y), so dL/dy = dy */
        Ref r = reference(x, w, dy, rows, cols, eps);
        double l = 0;
        for (int64_t i = 0; i < rows * cols; i++) l += dy[i] * r.y[i];
        return l;
      };
      Ref ref = reference(x, w, dy, rows, cols, eps);
      /* h = 1e-6: truncation ~h^2 and fp64 cancellation ~1e-16/h are both < 1e-9, far below
       * the f32 backward's own error, so the f32 tolerance of the accuracy test applies. */
      const double h = 1e-6;
      for (int64_t i = 0; i < rows * cols; i++) {
        double keep = x[i];
        x[i] = keep + h;
        double lp = loss();
        x[i] = keep - h;
        double lm = loss();
        x[i] = keep;
        CHECK_CLOSE(dx[i], (lp - lm) / (2 * h), 1e-5 * ref.dx_scale[i] + 1e-9);
      }
      for (int64_t c = 0; c < cols; c++) {
        double keep = w[c];
        w[c] = keep + h;
        double lp = loss();
        w[c] = keep - h;
        double lm = loss();
        w[c] = keep;
        CHECK_CLOSE(dw[c], (lp - lm) / (2 * h), 1e-5 * ref.dw_scale[c] + 1e-9);
      }
    }
}

TEST_CASE(results_are_bitwise_deterministic_across_runs_and_thread_counts) {
  int64_t rows = 1000, cols = 4099; /* 63 dweight blocks of 16 rows */
  for (int32_t dt : kDtypes) {
    Inputs in(rows, cols, 41);
    Buf x(dt, in.x), w(dt, in.w), dy(dt, in.dy);
    int saved = omp_get_max_threads();
    Run first = run_both(dt, x, w, dy, rows, cols, kEps);
    for (int threads : {1, 3, saved}) {
      omp_set_num_threads(threads);
      Run again = run_both(dt, x, w, dy, rows, cols, kEps);
      CHECK(again.y.bitwise_equal(first.y) && again.dx.bitwise_equal(first.dx));
      CHECK(memcmp(again.rstd.data(), first.rstd.data(), rows * 4) == 0);
      CHECK(memcmp(again.dw.data(), first.dw.data(), cols * 4) == 0);
    }
    omp_set_num_threads(saved);
  }
}

TEST_CASE(bad_arguments_are_reported) {
  float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, w[4] = {1, 1, 1, 1}, y[8], rstd[2], dx[8], dw[4];
  const int32_t F = MOE4J_DTYPE_F32, E = MOE4J_ERR_INVALID_ARGUMENT;
  /* forward */
  CHECK_FAILS(moe4j_cpu_rmsnorm_forward(MOE4J_DTYPE_F16, x, w, y, rstd, 2, 4, kEps), MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16, got F16");
  CHECK_FAILS(moe4j_cpu_rmsnorm_forward(F, x, w, y, rstd, -1, 4, kEps), E, "rows must be >= 0, got -1");
  CHECK_FAILS(moe4j_cpu_rmsnorm_forward(F, x, w, y, rstd, 2, -4, kEps), E, "cols must be >= 0, got -4");
  CHECK_FAILS(moe4j_cpu_rmsnorm_forward(F, x, w, y, rstd, 2, 0, kEps), E, "cols must be > 0 when rows > 0");
  CHECK_FAILS(moe4j_cpu_rmsnorm_forward(F, x, w, y, rstd, INT64_MAX / 2, 4, kEps), E, "rows * cols");
  CHECK_FAILS(moe4j_cpu_rmsnorm_forward(F, x, w, y, rstd, 2, 4, 0.0f), E, "eps must be finite and > 0");
  CHECK_FAILS(moe4j_cpu_rmsnorm_forward(F, x, w, y, rstd, 2, 4, NAN), E, "eps must be finite and > 0");
  CHECK_FAILS(moe4j_cpu_rmsnorm_forward(F, x, w, y, rstd, 2, 4, -1e-5f), E, "eps");
  CHECK_FAILS(moe4j_cpu_rmsnorm_forward(F, nullptr, w, y, rstd, 2, 4, kEps), E, "x is NULL");
  CHECK_FAILS(moe4j_cpu_rmsnorm_forward(F, x, nullptr, y, rstd, 2, 4, kEps), E, "weight is NULL");
  CHECK_FAILS(moe4j_cpu_rmsnorm_forward(F, x, w, nullptr, rstd, 2, 4, kEps), E, "y is NULL");
  CHECK_FAILS(moe4j_cpu_rmsnorm_forward(F, x, w, y, (float *)((char *)rstd + 2), 2, 4, kEps), E, "rstd (address");
  CHECK_FAILS(moe4j_cpu_rmsnorm_forward(F, (char *)x + 2, w, y, rstd, 1, 4, kEps), E, "x (address");
  CHECK_FAILS(moe4j_cpu_rmsnorm_forward(F, x, w, x + 2, rstd, 2, 4, kEps), E, "x and y overlap");
  CHECK_FAILS(moe4j_cpu_rmsnorm_forward(F, x, w, x, rstd, 2, 4, kEps), E, "overlap");
  /* backward */
  CHECK_FAILS(moe4j_cpu_rmsnorm_backward(MOE4J_DTYPE_I32, y, x, w, rstd, dx, dw, 2, 4, 0), MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16, got I32");
  CHECK_FAILS(moe4j_cpu_rmsnorm_backward(F, y, x, w, rstd, dx, dw, -2, 4, 0), E, "rows must be >= 0");
  CHECK_FAILS(moe4j_cpu_rmsnorm_backward(F, y, x, w, rstd, dx, dw, 2, -1, 0), E, "cols must be >= 0");
  CHECK_FAILS(moe4j_cpu_rmsnorm_backward(F, y, x, w, rstd, dx, dw, 2, 0, 0), E, "cols must be > 0 when rows > 0");
  CHECK_FAILS(moe4j_cpu_rmsnorm_backward(F, y, x, w, rstd, dx, dw, 3, INT64_MAX / 3, 0), E, "overflows");
  CHECK_FAILS(moe4j_cpu_rmsnorm_backward(F, nullptr, x, w, rstd, dx, dw, 2, 4, 0), E, "dy is NULL");
  CHECK_FAILS(moe4j_cpu_rmsnorm_backward(F, y, nullptr, w, rstd, dx, dw, 2, 4, 0), E, "x is NULL");
  CHECK_FAILS(moe4j_cpu_rmsnorm_backward(F, y, x, nullptr, rstd, dx, dw, 2, 4, 0), E, "weight is NULL");
  CHECK_FAILS(moe4j_cpu_rmsnorm_backward(F, y, x, w, nullptr, dx, dw, 2, 4, 0), E, "rstd is NULL");
  CHECK_FAILS(moe4j_cpu_rmsnorm_backward(F, y, x, w, rstd, nullptr, dw, 2, 4, 0), E, "dx is NULL");
  CHECK_FAILS(moe4j_cpu_rmsnorm_backward(F, y, x, w, rstd, dx, nullptr, 2, 4, 0), E, "dweight is NULL");
  CHECK_FAILS(moe4j_cpu_rmsnorm_backward(F, y, x, w, rstd, dx, nullptr, 0, 4, 0), E, "dweight is NULL");
  CHECK_FAILS(moe4j_cpu_rmsnorm_backward(F, y, x, w, rstd, dx, (float *)((char *)dw + 1), 2, 4, 0), E, "dweight (address");
  CHECK_FAILS(moe4j_cpu_rmsnorm_backward(F, y, x, w, rstd, y, dw, 2, 4, 0), E, "dx and dy overlap");
  CHECK_FAILS(moe4j_cpu_rmsnorm_backward(F, y, x, w, rstd, x, dw, 2, 4, 0), E, "dx and x overlap");
  /* empty calls with NULL buffers succeed and clear the message */
  CHECK_STATUS(moe4j_cpu_rmsnorm_forward(F, nullptr, nullptr, nullptr, nullptr, 0, 0, kEps), MOE4J_OK);
  CHECK(moe4j_last_error()[0] == '\0');
  CHECK_STATUS(moe4j_cpu_rmsnorm_backward(F, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 0, 0), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_rmsnorm_backward(F, nullptr, nullptr, w, nullptr, nullptr, dw, 0, 4, 0), MOE4J_OK);
  for (float v : dw) CHECK(v == 0.0f);
}

TEST_MAIN("rmsnorm")
