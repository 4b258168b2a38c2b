/* RoPE forward/backward (CPU twin) against an fp64 reference (HF rotate-half): odd head counts,
 * head_dim 2/6/64/128, positions from 0 to 100000, F32 and BF16, in place, backward = transpose
 * (adjoint identity in fp64 and finite differences), determinism, guards, bad arguments.
 *
 * Accepted error vs fp64, per output pair (x0, x1) (see rope_math.h):
 *  - angle: inv_freq rounded once to f32 (<= 2^-24 relative), times pos in f32 (<= 2^-24): the
 *    f32 angle is within |angle| * 2^-23 of the exact one. At pos = 100000 and i = 0 that is
 *    up to ~0.012 rad in principle (in fact i = 0 has inv_freq = 1 and an exact angle; larger i
 *    have smaller angles);
 *  - sinf/cosf: < 1 ulp (<= 2^-24 absolute since |sin|, |cos| <= 1);
 *  - the rotation: two products and a sum, each rounded: <= 3 * 2^-24 of |x0| + |x1|.
 *  => |err| <= (|x0| + |x1|) * (|angle| * 2^-23 + 2^-22); tested with 2x margin. BF16 adds one
 *  rounding of the output (2^-8 relative). */
#include <omp.h>
#include <string.h>

#include "check.h"
#include "cpu_common.h"
#include "rope_math.h"

using namespace moe4j;

namespace {

const int32_t kDtypes[] = {MOE4J_DTYPE_F32, MOE4J_DTYPE_BF16};
const uint16_t kSentinelBf16 = 0xc0e0; /* -7.0 */
const double kBf16Round = 1.0 / 256;
const size_t kTail = 8;

/* A host buffer of F32/BF16 elements followed by kTail sentinel elements (-7). */
struct Buf {
  int32_t dtype;
  size_t n;
  std::vector<float> f;
  std::vector<uint16_t> h;
  Buf(int32_t dt, size_t count) : dtype(dt), n(count) {
    if (dt == MOE4J_DTYPE_F32) f.assign(n + kTail, -7.0f);
    else h.assign(n + kTail, kSentinelBf16);
  }
  void *ptr() { return dtype == MOE4J_DTYPE_F32 ? (void *)f.data() : (void *)h.data(); }
  double get(size_t i) const { return dtype == MOE4J_DTYPE_F32 ? f[i] : bf16_bits_to_f32(h[i]); }
  void set(size_t i, float v) {
    if (dtype == MOE4J_DTYPE_F32) f[i] = v;
    else h[i] = f32_to_bf16_bits(v);
  }
  bool tail_untouched() const {
    for (size_t i = n; i < n + kTail; i++)
      if (dtype == MOE4J_DTYPE_F32 ? f[i] != -7.0f : h[i] != kSentinelBf16) return false;
    return true;
  }
  bool bitwise_equal(const Buf &o) const { return f == o.f && h == o.h; }
};

Buf random_buf(int32_t dt, size_t n, uint64_t seed) {
  Buf b(dt, n);
  auto v = check::randn(n, seed);
  for (size_t i = 0; i < n; i++) b.set(i, v[i]);
  return b;
}

/* Positions: 0, 1, a large one (100000), then a spread of values. */
std::vector<int32_t> positions_for(int64_t tokens, uint64_t seed) {
  std::vector<int32_t> p(tokens);
  std::mt19937_64 g(seed);
  for (int64_t t = 0; t < tokens; t++)
    p[t] = t == 0 ? 0 : t == 1 ? 1 : t == 2 ? 100000 : t == 3 ? 65535 : (int32_t)(g() % 8192);
  return p;
}

int32_t run(bool forward, int32_t dt, Buf &in, Buf &out, const std::vector<int32_t> &pos,
            int64_t tokens, int64_t heads, int64_t head_dim, float theta) {
  return forward ? moe4j_cpu_rope_forward(dt, in.ptr(), out.ptr(), pos.data(), tokens, heads,
                                          head_dim, theta)
                 : moe4j_cpu_rope_backward(dt, in.ptr(), out.ptr(), pos.data(), tokens, heads,
                                           head_dim, theta);
}

/* Number of outputs outside the fp64 tolerance. */
int count_bad(bool forward, const Buf &in, const Buf &out, const std::vector<int32_t> &pos,
              int64_t tokens, int64_t heads, int64_t head_dim, double theta, double *worst) {
  const int64_t half = head_dim / 2;
  int bad = 0;
  for (int64_t t = 0; t < tokens; t++)
    for (int64_t h = 0; h < heads; h++)
      for (int64_t i = 0; i < half; i++) {
        const double ang = pos[t] * pow(theta, -2.0 * i / (double)head_dim);
        const double c = cos(ang), s = forward ? sin(ang) : -sin(ang);
        const size_t e = (t * heads + h) * head_dim + i;
        const double x0 = in.get(e), x1 = in.get(e + half);
        const double r0 = x0 * c - x1 * s, r1 = x1 * c + x0 * s;
        const double tol_f32 = (fabs(x0) + fabs(x1)) * (fabs(ang) * ldexp(1, -22) + ldexp(1, -21));
        const double rel = out.dtype == MOE4J_DTYPE_BF16 ? kBf16Round : 0.0;
        const double e0 = fabs(out.get(e) - r0), e1 = fabs(out.get(e + half) - r1);
        if (!(e0 <= tol_f32 + rel * fabs(r0))) bad++;
        if (!(e1 <= tol_f32 + rel * fabs(r1))) bad++;
        *worst = fmax(*worst, fmax(e0, e1));
      }
  return bad;
}

}  // namespace

TEST_CASE(inv_freq_is_correctly_rounded_theta_power) {
  for (float theta : {10000.0f, 500000.0f, 1.5f})
    for (int64_t d : {2, 6, 64, 128, 1024}) {
      const RopeFreqs f = rope_fill_freqs(d, theta);
      CHECK(f.inv[0] == 1.0f);
      for (int64_t i = 0; i < d / 2; i++) {
        const double want = pow((double)theta, -2.0 * i / (double)d);
        CHECK(f.inv[i] == rope_inv_freq(i, d, theta));
        CHECK(fabs(f.inv[i] - want) <= 1.0001 * ldexp(1, -24) * want);
      }
    }
}

TEST_CASE(forward_and_backward_match_fp64) {
  for (int32_t dt : kDtypes)
    for (int64_t tokens : {0, 1, 7})
      for (int64_t heads : {1, 3, 5})
        for (int64_t head_dim : {2, 6, 64, 128})
          for (float theta : {10000.0f, 500000.0f})
            for (int dir = 0; dir < 2; dir++) {
              const size_t n = tokens * heads * head_dim;
              Buf x = random_buf(dt, n, 10 + tokens * 7 + heads * 3 + head_dim), out(dt, n);
              auto pos = positions_for(tokens, 3 + tokens);
              CHECK_STATUS(run(dir == 0, dt, x, out, pos, tokens, heads, head_dim, theta), MOE4J_OK);
              CHECK(out.tail_untouched());
              double worst = 0;
              int bad = count_bad(dir == 0, x, out, pos, tokens, heads, head_dim, theta, &worst);
              if (bad) {
                fprintf(stderr, "    dtype %d dir %d T %lld H %lld D %lld theta %g: %d bad (worst %g)\n",
                        dt, dir, (long long)tokens, (long long)heads, (long long)head_dim,
                        (double)theta, bad, worst);
                CHECK(bad == 0);
              }
            }
}

TEST_CASE(position_zero_is_the_identity) {
  for (int32_t dt : kDtypes) {
    const int64_t tokens = 4, heads = 3, d = 64, n = tokens * heads * d;
    Buf x = random_buf(dt, n, 5), out(dt, n), back(dt, n);
    std::vector<int32_t> pos(tokens, 0);
    CHECK_STATUS(run(true, dt, x, out, pos, tokens, heads, d, 10000.0f), MOE4J_OK);
    CHECK_STATUS(run(false, dt, x, back, pos, tokens, heads, d, 10000.0f), MOE4J_OK);
    for (int64_t i = 0; i < n; i++) CHECK(out.get(i) == x.get(i) && back.get(i) == x.get(i));
  }
}

TEST_CASE(in_place_equals_out_of_place) {
  for (int32_t dt : kDtypes)
    for (int dir = 0; dir < 2; dir++)
      for (int64_t d : {2, 6, 128}) {
        const int64_t tokens = 9, heads = 5, n = tokens * heads * d;
        Buf x = random_buf(dt, n, 21 + d), out(dt, n);
        auto pos = positions_for(tokens, 8);
        CHECK_STATUS(run(dir == 0, dt, x, out, pos, tokens, heads, d, 10000.0f), MOE4J_OK);
        CHECK_STATUS(run(dir == 0, dt, x, x, pos, tokens, heads, d, 10000.0f), MOE4J_OK);
        CHECK(x.bitwise_equal(out));
      }
}

/* <R x, y> = <x, R^T y>: both directions use the same f32 sin/cos, so only the rotation's
 * roundings (<= 2^-22 of |x0| + |x1| per output) remain; 2x margin. */
TEST_CASE(backward_is_the_transpose) {
  const int64_t tokens = 6, heads = 3, d = 64, n = tokens * heads * d, half = d / 2;
  Buf x = random_buf(MOE4J_DTYPE_F32, n, 31), y = random_buf(MOE4J_DTYPE_F32, n, 32);
  Buf rx(MOE4J_DTYPE_F32, n), rty(MOE4J_DTYPE_F32, n);
  auto pos = positions_for(tokens, 9);
  CHECK_STATUS(run(true, MOE4J_DTYPE_F32, x, rx, pos, tokens, heads, d, 10000.0f), MOE4J_OK);
  CHECK_STATUS(run(false, MOE4J_DTYPE_F32, y, rty, pos, tokens, heads, d, 10000.0f), MOE4J_OK);
  double lhs = 0, rhs = 0, bound = 0;
  for (int64_t k = 0; k < n; k++) {
    lhs += rx.get(k) * y.get(k);
    rhs += x.get(k) * rty.get(k);
  }
  for (int64_t r = 0; r < tokens * heads; r++)
    for (int64_t i = 0; i < half; i++) {
      const size_t e = r * d + i;
      bound += (fabs(x.get(e)) + fabs(x.get(e + half))) * (fabs(y.get(e)) + fabs(y.get(e + half)));
    }
  CHECK_CLOSE(lhs, rhs, 2 * 2 * ldexp(1, -22) * bound);
}

/* Central differences of L(x) = <y, forward(x)> (fp64 sum of the f32 outputs) vs backward(y).
 * L is linear, so no truncation error; only the two outputs of the perturbed pair change, so the
 * rounding noise of the others cancels exactly. */
TEST_CASE(backward_matches_finite_differences) {
  const int64_t tokens = 3, heads = 2, d = 6, n = tokens * heads * d, half = d / 2;
  Buf x = random_buf(MOE4J_DTYPE_F32, n, 41), y = random_buf(MOE4J_DTYPE_F32, n, 42);
  Buf dx(MOE4J_DTYPE_F32, n), out(MOE4J_DTYPE_F32, n);
  std::vector<int32_t> pos = {0, 7, 100000};
  CHECK_STATUS(run(false, MOE4J_DTYPE_F32, y, dx, pos, tokens, heads, d, 10000.0f), MOE4J_OK);
  auto loss = [&]() {
    CHECK_STATUS(run(true, MOE4J_DTYPE_F32, x, out, pos, tokens, heads, d, 10000.0f), MOE4J_OK);
    double l = 0;
    for (int64_t k = 0; k < n; k++) l += y.get(k) * out.get(k);
    return l;
  };
  for (int64_t k = 0; k < n; k++) {
    const float keep = x.f[k];
    x.f[k] = keep + 0.25f;
    const float hi = x.f[k];
    const double lp = loss();
    x.f[k] = keep - 0.25f;
    const float lo = x.f[k];
    const double lm = loss();
    x.f[k] = keep;
    const double fd = (lp - lm) / ((double)hi - (double)lo);
    const int64_t i = k % d, p = i < half ? k + half : k - half; /* pair partner */
    const double scale = (fabs(y.get(k)) + fabs(y.get(p))) * (fabs(keep) + fabs(x.get(p)) + 0.25);
    CHECK_CLOSE(dx.get(k), fd, 4 * ldexp(1, -22) * scale / ((double)hi - (double)lo) + 1e-9);
  }
}

TEST_CASE(results_are_bitwise_deterministic_across_runs_and_thread_counts) {
  for (int32_t dt : kDtypes) {
    const int64_t tokens = 257, heads = 5, d = 128, n = tokens * heads * d;
    Buf x = random_buf(dt, n, 51), a(dt, n), ab(dt, n);
    auto pos = positions_for(tokens, 52);
    CHECK_STATUS(run(true, dt, x, a, pos, tokens, heads, d, 10000.0f), MOE4J_OK);
    CHECK_STATUS(run(false, dt, x, ab, pos, tokens, heads, d, 10000.0f), MOE4J_OK);
    int saved = omp_get_max_threads();
    for (int threads : {1, 3, saved}) {
      omp_set_num_threads(threads);
      Buf b(dt, n), bb(dt, n);
      CHECK_STATUS(run(true, dt, x, b, pos, tokens, heads, d, 10000.0f), MOE4J_OK);
      CHECK_STATUS(run(false, dt, x, bb, pos, tokens, heads, d, 10000.0f), MOE4J_OK);
      CHECK(b.bitwise_equal(a) && bb.bitwise_equal(ab));
    }
    omp_set_num_threads(saved);
  }
}

TEST_CASE(bad_arguments_are_reported) {
  float x[64] = {0}, o[64];
  int32_t p[4] = {0, 1, 2, 3};
  const int32_t F = MOE4J_DTYPE_F32, B = MOE4J_DTYPE_BF16, E = MOE4J_ERR_INVALID_ARGUMENT;
  /* forward: x [2, 2, 4] */
  CHECK_FAILS(moe4j_cpu_rope_forward(MOE4J_DTYPE_I32, x, o, p, 2, 2, 4, 1e4f), MOE4J_ERR_UNSUPPORTED, "moe4j_cpu_rope_forward: dtype must be F32 or BF16, got I32");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x, o, p, -1, 2, 4, 1e4f), E, "tokens must be >= 0, got -1");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x, o, p, 2, 0, 4, 1e4f), E, "heads must be >= 1 (0 only when tokens is 0), got 0");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x, o, p, 2, -2, 4, 1e4f), E, "heads must be >= 1");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x, o, p, 2, 2, 5, 1e4f), E, "head_dim must be even and in [2, 1024], got 5");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x, o, p, 2, 2, 0, 1e4f), E, "head_dim must be even");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x, o, p, 2, 2, 1026, 1e4f), E, "got 1026");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x, o, p, 2, 2, 4, 1.0f), E, "theta must be finite and > 1, got 1");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x, o, p, 2, 2, 4, NAN), E, "theta must be finite");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x, o, p, 2, 2, 4, INFINITY), E, "theta must be finite");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x, o, p, 2, 2, 4, -5.0f), E, "theta");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x, o, p, INT64_MAX / 4, 8, 4, 1e4f), E, "tokens * heads = ");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x, o, p, INT64_MAX / 1024, 64, 1024, 1e4f), E, "tokens * heads * head_dim");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, nullptr, o, p, 2, 2, 4, 1e4f), E, "x is NULL");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x, nullptr, p, 2, 2, 4, 1e4f), E, "out is NULL");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x, o, nullptr, 2, 2, 4, 1e4f), E, "positions is NULL");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, (char *)x + 2, o, p, 2, 2, 4, 1e4f), E, "x (address");
  CHECK_FAILS(moe4j_cpu_rope_forward(B, x, (char *)o + 1, p, 2, 2, 4, 1e4f), E, "out (address");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x, o, (const int32_t *)((char *)p + 2), 2, 2, 4, 1e4f), E, "positions (address");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x, x + 1, p, 2, 2, 4, 1e4f), E, "x and out overlap");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x + 4, x, p, 2, 2, 4, 1e4f), E, "and are not the same buffer");
  CHECK_FAILS(moe4j_cpu_rope_forward(F, x + 32, x, (const int32_t *)(x + 2), 2, 2, 4, 1e4f), E, "out and positions overlap");
  /* backward */
  CHECK_FAILS(moe4j_cpu_rope_backward(MOE4J_DTYPE_F16, x, o, p, 2, 2, 4, 1e4f), MOE4J_ERR_UNSUPPORTED, "moe4j_cpu_rope_backward: dtype must be F32 or BF16");
  CHECK_FAILS(moe4j_cpu_rope_backward(F, x, o, p, -3, 2, 4, 1e4f), E, "tokens must be >= 0");
  CHECK_FAILS(moe4j_cpu_rope_backward(F, x, o, p, 1, 0, 4, 1e4f), E, "heads must be >= 1");
  CHECK_FAILS(moe4j_cpu_rope_backward(F, x, o, p, 2, 2, 3, 1e4f), E, "head_dim must be even");
  CHECK_FAILS(moe4j_cpu_rope_backward(F, x, o, p, 2, 2, 2048, 1e4f), E, "head_dim must be even and in [2, 1024]");
  CHECK_FAILS(moe4j_cpu_rope_backward(F, x, o, p, 2, 2, 4, 0.5f), E, "theta must be finite and > 1");
  CHECK_FAILS(moe4j_cpu_rope_backward(F, x, o, p, 2, 2, 4, -INFINITY), E, "theta");
  CHECK_FAILS(moe4j_cpu_rope_backward(F, x, o, p, INT64_MAX / 2, 4, 4, 1e4f), E, "overflows");
  CHECK_FAILS(moe4j_cpu_rope_backward(F, nullptr, o, p, 2, 2, 4, 1e4f), E, "dout is NULL");
  CHECK_FAILS(moe4j_cpu_rope_backward(F, x, nullptr, p, 2, 2, 4, 1e4f), E, "dx is NULL");
  CHECK_FAILS(moe4j_cpu_rope_backward(F, x, o, nullptr, 2, 2, 4, 1e4f), E, "positions is NULL");
  CHECK_FAILS(moe4j_cpu_rope_backward(F, x, (char *)o + 2, p, 2, 2, 4, 1e4f), E, "dx (address");
  CHECK_FAILS(moe4j_cpu_rope_backward(F, x, x + 2, p, 2, 2, 4, 1e4f), E, "dout and dx overlap");
  CHECK_FAILS(moe4j_cpu_rope_backward(F, x + 32, x, (const int32_t *)(x + 5), 2, 2, 4, 1e4f), E, "dx and positions overlap");
  /* empty calls: NULL buffers are fine and the message is cleared; heads may be 0 then */
  CHECK_STATUS(moe4j_cpu_rope_forward(F, nullptr, nullptr, nullptr, 0, 0, 4, 1e4f), MOE4J_OK);
  CHECK(moe4j_last_error()[0] == '\0');
  CHECK_STATUS(moe4j_cpu_rope_forward(B, nullptr, nullptr, nullptr, 0, 8, 128, 1e4f), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_rope_backward(F, nullptr, nullptr, nullptr, 0, 0, 2, 1e4f), MOE4J_OK);
  /* in place is allowed */
  CHECK_STATUS(moe4j_cpu_rope_forward(F, x, x, p, 2, 2, 4, 1e4f), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_rope_backward(B, x, x, p, 2, 2, 4, 1e4f), MOE4J_OK);
}

TEST_MAIN("rope")
