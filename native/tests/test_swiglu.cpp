/* SwiGLU forward/backward (CPU twin) against fp64 references: odd shapes, F32 and BF16, separate,
 * combined (in_stride = 2 * cols) and padded layouts, finite differences, determinism, guards,
 * bad arguments. */
#include <omp.h>
#include <string.h>

#include "check.h"
#include "cpu_common.h"
#include "swiglu_math.h"

using namespace moe4j;

namespace {

const int64_t kRows[] = {0, 1, 3, 17, 64};
const int64_t kCols[] = {1, 7, 31, 128, 4099};
const int32_t kDtypes[] = {MOE4J_DTYPE_F32, MOE4J_DTYPE_BF16};
const uint16_t kSentinelBf16 = 0xc0e0; /* -7.0 */
const double kBf16Round = 1.0 / 256;   /* unit roundoff of bf16 (8 significant bits) */
/* f32: expf (< 1 ulp in glibc), one add, one divide, two multiplies: a few ulps (2^-24 each);
 * 1e-5 (the design's f32 budget) leaves > 10x margin. */
const double kF32Rel = 1e-5;

float bf(float v) { return to_f32(from_f32<bf16_t>(v)); }
double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* A host buffer of F32/BF16 elements, every element starting as -7 (a sentinel), so writes
 * outside the elements a call owns are detected. */
struct Buf {
  int32_t dtype;
  size_t n;
  std::vector<float> f;
  std::vector<uint16_t> h;
  Buf(int32_t dt, size_t count) : dtype(dt), n(count) {
    if (dt == MOE4J_DTYPE_F32) f.assign(n, -7.0f);
    else h.assign(n, kSentinelBf16);
  }
  void *at(size_t i) { return dtype == MOE4J_DTYPE_F32 ? (void *)(f.data() + i) : (void *)(h.data() + i); }
  float get(size_t i) const { return dtype == MOE4J_DTYPE_F32 ? f[i] : bf16_bits_to_f32(h[i]); }
  void set(size_t i, float v) {
    if (dtype == MOE4J_DTYPE_F32) f[i] = v;
    else h[i] = f32_to_bf16_bits(v);
  }
  bool is_sentinel(size_t i) const {
    return dtype == MOE4J_DTYPE_F32 ? f[i] == -7.0f : h[i] == kSentinelBf16;
  }
  bool bitwise_equal(const Buf &o) const { return f == o.f && h == o.h; }
};

/* One layout case: gate/up/dgate/dup live in `in`-layout buffers (combined: one buffer). */
struct Case {
  int32_t dt;
  int64_t rows, cols, stride;
  bool combined;
  size_t in_elems;           /* elements of each input-layout buffer */
  size_t gate_off, up_off;   /* offsets of gate and up inside their buffers */
  Buf gate_buf, up_buf, out, dout, dgate_buf, dup_buf;
  static constexpr size_t kTail = 8;
  Case(int32_t dtype, int64_t r, int64_t c, int64_t s, bool comb, uint64_t seed)
      : dt(dtype), rows(r), cols(c), stride(s), combined(comb),
        in_elems(r * s + kTail), gate_off(0), up_off(comb ? c : 0),
        gate_buf(dtype, in_elems), up_buf(dtype, comb ? 0 : in_elems),
        out(dtype, r * c + kTail), dout(dtype, r * c + kTail),
        dgate_buf(dtype, in_elems), dup_buf(dtype, comb ? 0 : in_elems) {
    auto g = check::randn(r * c, seed, 3.0f), u = check::randn(r * c, seed + 1),
         d = check::randn(r * c, seed + 2);
    for (int64_t i = 0; i < r; i++)
      for (int64_t j = 0; j < c; j++) {
        ups().set(up_off + i * s + j, u[i * c + j]);
        gate_buf.set(gate_off + i * s + j, g[i * c + j]);
        dout.set(i * c + j, d[i * c + j]);
      }
    if (r * c > 0) { /* saturated and special gates */
      gate_buf.set(gate_off, 0.0f);
      if (r * c > 3) {
        gate_buf.set(gate_off + 1, 30.0f);
        gate_buf.set(gate_off + 2, -30.0f);
        gate_buf.set(gate_off + 3, -100.0f);
      }
    }
  }
  Buf &ups() { return combined ? gate_buf : up_buf; }
  Buf &dups() { return combined ? dgate_buf : dup_buf; }
  size_t gi(int64_t i, int64_t j) const { return gate_off + i * stride + j; }
  size_t ui(int64_t i, int64_t j) const { return up_off + i * stride + j; }
  void *gate() { return gate_buf.at(gate_off); }
  void *up() { return ups().at(up_off); }
  void *dgate() { return dgate_buf.at(gate_off); }
  void *dup() { return dups().at(up_off); }
  int32_t forward() {
    return moe4j_cpu_swiglu_forward(dt, gate(), up(), out.at(0), rows, cols, stride);
  }
  int32_t backward() {
    return moe4j_cpu_swiglu_backward(dt, gate(), up(), dout.at(0), dgate(), dup(), rows, cols,
                                     stride);
  }
  /* Every element outside the ones the calls own still holds the sentinel. */
  bool untouched_elsewhere() {
    std::vector<char> owned_g(in_elems, 0), owned_u(in_elems, 0);
    for (int64_t i = 0; i < rows; i++)
      for (int64_t j = 0; j < cols; j++) {
        owned_g[gi(i, j)] = 1;
        (combined ? owned_g : owned_u)[ui(i, j)] = 1;
      }
    for (size_t k = 0; k < in_elems; k++) {
      if (!owned_g[k] && !dgate_buf.is_sentinel(k)) return false;
      if (!combined && !owned_u[k] && !dup_buf.is_sentinel(k)) return false;
    }
    for (size_t k = rows * cols; k < out.n; k++) if (!out.is_sentinel(k)) return false;
    return true;
  }
};

}  // namespace

TEST_CASE(forward_and_backward_match_fp64_in_every_layout) {
  for (int32_t dt : kDtypes)
    for (int64_t rows : kRows)
      for (int64_t cols : kCols)
        for (int layout = 0; layout < 3; layout++) {
          int64_t stride = layout == 0 ? cols : layout == 1 ? 2 * cols : cols + 3;
          Case k(dt, rows, cols, stride, layout == 1, 500 + rows * 13 + cols + layout);
          CHECK_STATUS(k.forward(), MOE4J_OK);
          CHECK_STATUS(k.backward(), MOE4J_OK);
          CHECK(k.untouched_elsewhere());
          /* bf16: the f32 value rounded once (unit roundoff 2^-8). */
          const double out_rel = dt == MOE4J_DTYPE_F32 ? kF32Rel : kBf16Round + kF32Rel;
          int bad = 0;
          double err_out = 0, err_dg = 0, err_du = 0, nv_out = 0, nv_dg = 0, nv_du = 0;
          for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
              double g = k.gate_buf.get(k.gi(i, j)), u = k.ups().get(k.ui(i, j)),
                     d = k.dout.get(i * cols + j), s = sigmoid(g);
              double out = g * s * u, du = d * g * s, dg = d * u * s * (1 + g * (1 - s));
              /* silu'(g) = s + g s (1 - s): f32 errs relative to the two terms, not their sum
               * (which crosses 0 near g = -1.28). */
              double dg_scale = fabs(d * u) * (s + fabs(g) * s * (1 - s));
              double got_out = k.out.get(i * cols + j), got_dg = k.dgate_buf.get(k.gi(i, j)),
                     got_du = k.dups().get(k.ui(i, j));
              if (!(fabs(got_out - out) <= out_rel * fabs(out) + 1e-30)) bad++;
              if (!(fabs(got_du - du) <= out_rel * fabs(du) + 1e-30)) bad++;
              if (!(fabs(got_dg - dg) <= out_rel * fabs(dg) + kF32Rel * dg_scale + 1e-30)) bad++;
              err_out = fmax(err_out, fabs(got_out - out));
              err_dg = fmax(err_dg, fabs(got_dg - dg));
              err_du = fmax(err_du, fabs(got_du - du));
              /* naive bf16 (PyTorch style: each element-wise op rounded to bf16) */
              float fg = (float)g, fu = (float)u, fd = (float)d, fsil = bf(silu(fg));
              nv_out = fmax(nv_out, fabs(bf(fsil * fu) - out));
              nv_du = fmax(nv_du, fabs(bf(fd * fsil) - du));
              float sg = bf(1.0f / (1.0f + expf(-fg)));
              float grad = bf(sg * bf(1.0f + bf(fg * bf(1.0f - sg))));
              nv_dg = fmax(nv_dg, fabs(bf(bf(fd * fu) * grad) - dg));
            }
          if (bad) {
            fprintf(stderr, "    dtype %d rows %lld cols %lld stride %lld: %d out of tolerance\n",
                    dt, (long long)rows, (long long)cols, (long long)stride, bad);
            CHECK(bad == 0);
          }
          if (dt == MOE4J_DTYPE_BF16) {
            /* FlashAttention rule: <= 2x the naive bf16 error (3x for gradients). */
            CHECK(err_out <= 2 * nv_out);
            CHECK(err_du <= 3 * nv_du);
            CHECK(err_dg <= 3 * nv_dg);
          }
        }
}

TEST_CASE(saturated_gates_give_finite_results) {
  const float gates[] = {-1000.0f, -100.0f, -88.0f, 0.0f, 88.0f, 100.0f, 1000.0f};
  const int64_t n = sizeof gates / sizeof gates[0];
  std::vector<float> up(n, 2.0f), dout(n, 3.0f), out(n), dg(n), du(n);
  CHECK_STATUS(moe4j_cpu_swiglu_forward(MOE4J_DTYPE_F32, gates, up.data(), out.data(), 1, n, n), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_swiglu_backward(MOE4J_DTYPE_F32, gates, up.data(), dout.data(), dg.data(), du.data(), 1, n, n), MOE4J_OK);
  for (int64_t i = 0; i < n; i++) CHECK(isfinite(out[i]) && isfinite(dg[i]) && isfinite(du[i]));
  CHECK(out[6] == 2000.0f && du[6] == 3000.0f && dg[6] == 6.0f); /* silu(x) = x, silu' = 1 */
  CHECK(out[0] == 0.0f && du[0] == 0.0f && dg[0] == 0.0f);       /* silu -> 0, silu' -> 0 */
  CHECK(out[3] == 0.0f && dg[3] == 3.0f);                        /* silu'(0) = 1/2 */
}

/* Central differences in fp64 on tiny shapes vs the kernel's f32 backward. */
TEST_CASE(gradients_match_finite_differences) {
  int64_t rows = 2, cols = 5;
  auto g = check::randn(rows * cols, 71, 2.0f), u = check::randn(rows * cols, 72),
       d = check::randn(rows * cols, 73);
  std::vector<float> dg(rows * cols), du(rows * cols);
  CHECK_STATUS(moe4j_cpu_swiglu_backward(MOE4J_DTYPE_F32, g.data(), u.data(), d.data(),
                                         dg.data(), du.data(), rows, cols, cols), MOE4J_OK);
  std::vector<double> gd(g.begin(), g.end()), ud(u.begin(), u.end());
  auto loss = [&]() { /* L = sum(dout * silu(g) * u) */
    double l = 0;
    for (int64_t i = 0; i < rows * cols; i++) l += d[i] * gd[i] * sigmoid(gd[i]) * ud[i];
    return l;
  };
  /* h = 1e-6: truncation ~h^2 and fp64 cancellation ~1e-16/h are far below the f32 error. */
  const double h = 1e-6;
  for (int64_t i = 0; i < rows * cols; i++) {
    double s = sigmoid(gd[i]);
    double dg_scale = fabs(d[i] * ud[i]) * (s + fabs(gd[i]) * s * (1 - s));
    double keep = gd[i];
    gd[i] = keep + h;
    double lp = loss();
    gd[i] = keep - h;
    double lm = loss();
    gd[i] = keep;
    CHECK_CLOSE(dg[i], (lp - lm) / (2 * h), kF32Rel * dg_scale + 1e-9);
    keep = ud[i];
    ud[i] = keep + h;
    lp = loss();
    ud[i] = keep - h;
    lm = loss();
    ud[i] = keep;
    double fd = (lp - lm) / (2 * h);
    CHECK_CLOSE(du[i], fd, kF32Rel * fabs(fd) + 1e-9);
  }
}

TEST_CASE(results_are_bitwise_deterministic_across_runs_and_thread_counts) {
  for (int32_t dt : kDtypes) {
    Case a(dt, 300, 4099, 2 * 4099, true, 91);
    CHECK_STATUS(a.forward(), MOE4J_OK);
    CHECK_STATUS(a.backward(), MOE4J_OK);
    int saved = omp_get_max_threads();
    for (int threads : {1, 3, saved}) {
      omp_set_num_threads(threads);
      Case b(dt, 300, 4099, 2 * 4099, true, 91);
      CHECK_STATUS(b.forward(), MOE4J_OK);
      CHECK_STATUS(b.backward(), MOE4J_OK);
      CHECK(b.out.bitwise_equal(a.out) && b.dgate_buf.bitwise_equal(a.dgate_buf));
    }
    omp_set_num_threads(saved);
  }
}

TEST_CASE(long_rows_are_split_into_chunks) {
  /* one row longer than a parallel chunk (kChunk): pieces must cover it exactly once */
  int64_t cols = 2 * kChunk + 5;
  Case k(MOE4J_DTYPE_F32, 1, cols, cols, false, 93);
  CHECK_STATUS(k.forward(), MOE4J_OK);
  CHECK_STATUS(k.backward(), MOE4J_OK);
  CHECK(k.untouched_elsewhere());
  for (int64_t j = 0; j < cols; j++)
    CHECK(k.out.f[j] == swiglu_out(k.gate_buf.f[j], k.up_buf.f[j])); /* same shared math */
}

TEST_CASE(bad_arguments_are_reported) {
  float g[8] = {0}, u[8] = {0}, o[8], d[8] = {0}, dg[8], du[8];
  const int32_t F = MOE4J_DTYPE_F32, E = MOE4J_ERR_INVALID_ARGUMENT;
  /* forward */
  CHECK_FAILS(moe4j_cpu_swiglu_forward(MOE4J_DTYPE_U8, g, u, o, 2, 4, 4), MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16, got U8");
  CHECK_FAILS(moe4j_cpu_swiglu_forward(F, g, u, o, -1, 4, 4), E, "rows must be >= 0, got -1");
  CHECK_FAILS(moe4j_cpu_swiglu_forward(F, g, u, o, 2, -4, 4), E, "cols must be >= 0, got -4");
  CHECK_FAILS(moe4j_cpu_swiglu_forward(F, g, u, o, 2, 4, 3), E, "in_stride must be >= 4, got 3");
  CHECK_FAILS(moe4j_cpu_swiglu_forward(F, g, u, o, 2, 0, -1), E, "in_stride must be >= 0, got -1");
  CHECK_FAILS(moe4j_cpu_swiglu_forward(F, g, u, o, INT64_MAX / 4, 4, 8), E, "rows * in_stride");
  CHECK_FAILS(moe4j_cpu_swiglu_forward(F, nullptr, u, o, 2, 4, 4), E, "gate is NULL");
  CHECK_FAILS(moe4j_cpu_swiglu_forward(F, g, nullptr, o, 2, 4, 4), E, "up is NULL");
  CHECK_FAILS(moe4j_cpu_swiglu_forward(F, g, u, nullptr, 2, 4, 4), E, "out is NULL");
  CHECK_FAILS(moe4j_cpu_swiglu_forward(F, g, (char *)u + 2, o, 2, 4, 4), E, "up (address");
  CHECK_FAILS(moe4j_cpu_swiglu_forward(MOE4J_DTYPE_BF16, g, u, (char *)o + 1, 2, 4, 4), E, "out (address");
  /* backward */
  CHECK_FAILS(moe4j_cpu_swiglu_backward(MOE4J_DTYPE_I64, g, u, d, dg, du, 2, 4, 4), MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16, got I64");
  CHECK_FAILS(moe4j_cpu_swiglu_backward(F, g, u, d, dg, du, -3, 4, 4), E, "rows must be >= 0");
  CHECK_FAILS(moe4j_cpu_swiglu_backward(F, g, u, d, dg, du, 2, -1, 4), E, "cols must be >= 0");
  CHECK_FAILS(moe4j_cpu_swiglu_backward(F, g, u, d, dg, du, 2, 4, 2), E, "in_stride must be >= 4");
  CHECK_FAILS(moe4j_cpu_swiglu_backward(F, g, u, d, dg, du, 3, 4, INT64_MAX / 3), E, "overflows");
  CHECK_FAILS(moe4j_cpu_swiglu_backward(F, nullptr, u, d, dg, du, 2, 4, 4), E, "gate is NULL");
  CHECK_FAILS(moe4j_cpu_swiglu_backward(F, g, nullptr, d, dg, du, 2, 4, 4), E, "up is NULL");
  CHECK_FAILS(moe4j_cpu_swiglu_backward(F, g, u, nullptr, dg, du, 2, 4, 4), E, "dout is NULL");
  CHECK_FAILS(moe4j_cpu_swiglu_backward(F, g, u, d, nullptr, du, 2, 4, 4), E, "dgate is NULL");
  CHECK_FAILS(moe4j_cpu_swiglu_backward(F, g, u, d, dg, nullptr, 2, 4, 4), E, "dup is NULL");
  CHECK_FAILS(moe4j_cpu_swiglu_backward(F, g, u, d, dg, (char *)du + 3, 2, 4, 4), E, "dup (address");
  /* empty calls with NULL buffers succeed and clear the message */
  CHECK_STATUS(moe4j_cpu_swiglu_forward(F, nullptr, nullptr, nullptr, 0, 4, 8), MOE4J_OK);
  CHECK(moe4j_last_error()[0] == '\0');
  CHECK_STATUS(moe4j_cpu_swiglu_forward(F, nullptr, nullptr, nullptr, 5, 0, 0), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_swiglu_backward(F, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 0, 0), MOE4J_OK);
}

TEST_MAIN("swiglu")
