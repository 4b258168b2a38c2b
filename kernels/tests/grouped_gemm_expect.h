/* fp64 references, tolerances, inputs and CPU-twin outputs of the grouped-expert GEMM tests,
 * shared by the GPU test (kernels/tests/test_grouped_gemm.cpp: the CUDA kernels on a device) and
 * the warp-emulator test (native/tests/test_grouped_gemm_emulated.cpp: the same kernel code on
 * the CPU).
 *
 * Tolerances (bounds, not tuned): inputs are exactly representable in their storage type, so the
 * fp64 reference of a dot product of K terms is exact to 1e-16. An f32 sum of K products, in any
 * order, is within gamma_K * sum|a_i b_i| of it (Higham; gamma_K ~ K u, u = 2^-24); tensor-core
 * adds may truncate instead of rounding to nearest, so we allow 2 K u * sum|terms|. On top: one
 * f32 rounding per later operation (row scale, accumulate add: u * |value|) and the output
 * rounding (bf16: half an ulp, 2^-8 relative; f32: u). SwiGLU propagates the g/u bounds through
 * h = silu(g) u (|silu'| <= 1.1) plus a few ulps for the device expf. The kernel under test and
 * the CPU twin each satisfy the bound, so they agree within the sum of both.
 * Outputs sit between sentinel guards that must stay untouched.
 */
#pragma once
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <random>
#include <vector>

#include "check.h"
#include "moe4j.h"
#include "numerics.h"

namespace grouped_gemm_test {

using namespace moe4j;

constexpr size_t kGuard = 16;
constexpr double kU = 1.0 / (1 << 24);

template <typename S> double val(S s);
template <> inline double val<float>(float s) { return s; }
template <> inline double val<uint16_t>(uint16_t s) { return bf16_bits_to_f32(s); }
template <typename S> S enc(float f);
template <> inline float enc<float>(float f) { return f; }
template <> inline uint16_t enc<uint16_t>(float f) { return f32_to_bf16_bits(f); }
template <typename S> int32_t dtype_of() { return sizeof(S) == 4 ? MOE4J_DTYPE_F32 : MOE4J_DTYPE_BF16; }
template <typename S> S sentinel() { return enc<S>(-7.0f); }
template <typename S> double out_rounding() { return sizeof(S) == 4 ? kU : 1.0 / 256; }

template <typename S>
std::vector<S> encode(const std::vector<float> &v) {
  std::vector<S> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = enc<S>(v[i]);
  return out;
}

/* Storage with kGuard sentinels after `n` values. */
template <typename S>
std::vector<S> guarded(const std::vector<S> &v) {
  std::vector<S> out(v);
  out.resize(v.size() + kGuard, sentinel<S>());
  return out;
}

template <typename S>
bool guard_intact(const std::vector<S> &v, size_t n) {
  S s = sentinel<S>();
  for (size_t i = n; i < v.size(); i++)
    if (memcmp(&v[i], &s, sizeof(S)) != 0) return false;
  return true;
}

/* One test problem: group sizes (dense = offsets NULL), dims. */
struct Problem {
  const char *name;
  std::vector<int64_t> sizes;
  bool dense;
  int64_t n, k;
  int64_t groups() const { return (int64_t)sizes.size(); }
  int64_t rows() const {
    int64_t t = 0;
    for (int64_t s : sizes) t += s;
    return t;
  }
  std::vector<int64_t> offsets() const {
    std::vector<int64_t> o(sizes.size() + 1, 0);
    for (size_t e = 0; e < sizes.size(); e++) o[e + 1] = o[e] + sizes[e];
    return o;
  }
};

/* Expected values with per-element bounds. */
struct Expect {
  std::vector<double> ref, tol;
};

template <typename O>
int count_bad(const char *what, const Problem &p, const std::vector<O> &got, const Expect &want,
              const std::vector<O> *cpu) {
  int bad = 0;
  for (size_t i = 0; i < want.ref.size(); i++) {
    const double g = val(got[i]);
    if (!(fabs(g - want.ref[i]) <= want.tol[i])) {
      if (bad < 3)
        fprintf(stderr, "    %s %s: [%zu] got %.9g want %.9g tol %.3g\n", p.name, what, i, g,
                want.ref[i], want.tol[i]);
      bad++;
    }
    if (cpu != nullptr && !(fabs(g - val((*cpu)[i])) <= 2 * want.tol[i])) {
      if (bad < 3)
        fprintf(stderr, "    %s %s: [%zu] kernel %.9g cpu %.9g tol %.3g\n", p.name, what, i, g,
                val((*cpu)[i]), 2 * want.tol[i]);
      bad++;
    }
  }
  return bad;
}

/* ---- fp64 references ---- */

template <typename S, typename O>
Expect forward_expect(const Problem &p, const std::vector<S> &x, const std::vector<S> &w,
                      const std::vector<float> &scale, const std::vector<O> &prior, bool acc) {
  const int64_t n = p.n, k = p.k;
  const auto off = p.offsets();
  Expect ex;
  ex.ref.resize(p.rows() * n);
  ex.tol.resize(p.rows() * n);
  for (int64_t e = 0; e < p.groups(); e++)
    for (int64_t t = off[e]; t < off[e + 1]; t++)
      for (int64_t j = 0; j < n; j++) {
        double s = 0, sabs = 0;
        for (int64_t kk = 0; kk < k; kk++) {
          double term = val(x[t * k + kk]) * val(w[(e * n + j) * k + kk]);
          s += term;
          sabs += fabs(term);
        }
        const double sc = scale.empty() ? 1.0 : scale[t];
        const double pr = acc ? val(prior[t * n + j]) : 0.0;
        const double r = pr + sc * s;
        ex.ref[t * n + j] = r;
        ex.tol[t * n + j] = 2 * k * kU * sabs * fabs(sc) * 1.01 + kU * fabs(sc * s) + (kU + out_rounding<O>()) * fabs(r) + 1e-30;
      }
  return ex;
}

template <typename S, typename O>
Expect dgrad_expect(const Problem &p, const std::vector<S> &dy, const std::vector<S> &w,
                    const std::vector<O> &prior, bool acc) {
  const int64_t n = p.n, k = p.k;
  const auto off = p.offsets();
  Expect ex;
  ex.ref.resize(p.rows() * k);
  ex.tol.resize(p.rows() * k);
  for (int64_t e = 0; e < p.groups(); e++)
    for (int64_t t = off[e]; t < off[e + 1]; t++)
      for (int64_t j = 0; j < k; j++) {
        double s = 0, sabs = 0;
        for (int64_t jn = 0; jn < n; jn++) {
          double term = val(dy[t * n + jn]) * val(w[(e * n + jn) * k + j]);
          s += term;
          sabs += fabs(term);
        }
        const double r = (acc ? val(prior[t * k + j]) : 0.0) + s;
        ex.ref[t * k + j] = r;
        ex.tol[t * k + j] = 2 * n * kU * sabs * 1.01 + (kU + out_rounding<O>()) * fabs(r) + 1e-30;
      }
  return ex;
}

template <typename S, typename O>
Expect wgrad_expect(const Problem &p, const std::vector<S> &dy, const std::vector<S> &x,
                    const std::vector<O> &prior, bool acc) {
  const int64_t n = p.n, k = p.k;
  const auto off = p.offsets();
  Expect ex;
  ex.ref.resize(p.groups() * n * k);
  ex.tol.resize(p.groups() * n * k);
  for (int64_t e = 0; e < p.groups(); e++)
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < k; j++) {
        double s = 0, sabs = 0;
        for (int64_t t = off[e]; t < off[e + 1]; t++) {
          double term = val(dy[t * n + i]) * val(x[t * k + j]);
          s += term;
          sabs += fabs(term);
        }
        const size_t idx = (e * n + i) * k + j;
        const double r = (acc ? val(prior[idx]) : 0.0) + s;
        ex.ref[idx] = r;
        /* empty group + accumulate: must be exactly unchanged */
        ex.tol[idx] = 2 * (double)p.sizes[e] * kU * sabs * 1.01 + (kU + out_rounding<O>()) * fabs(r) * (p.sizes[e] > 0) + 1e-30;
      }
  return ex;
}

template <typename S, typename O>
void swiglu_expect(const Problem &p, const std::vector<S> &x, const std::vector<S> &w13,
                   Expect &h, Expect &gu) {
  const int64_t f = p.n, k = p.k, T = p.rows();
  const auto off = p.offsets();
  h.ref.assign(T * f, 0);
  h.tol.assign(T * f, 0);
  gu.ref.assign(T * 2 * f, 0);
  gu.tol.assign(T * 2 * f, 0);
  for (int64_t e = 0; e < p.groups(); e++)
    for (int64_t t = off[e]; t < off[e + 1]; t++)
      for (int64_t j = 0; j < f; j++) {
        double g = 0, u = 0, gabs = 0, uabs = 0;
        for (int64_t kk = 0; kk < k; kk++) {
          double xv = val(x[t * k + kk]);
          double tg = xv * val(w13[(e * 2 * f + j) * k + kk]), tu = xv * val(w13[(e * 2 * f + f + j) * k + kk]);
          g += tg;
          u += tu;
          gabs += fabs(tg);
          uabs += fabs(tu);
        }
        const double dg = 2 * k * kU * gabs * 1.01, du = 2 * k * kU * uabs * 1.01;
        const double sig = 1.0 / (1.0 + exp(-g)), silu = g * sig;
        const double hv = silu * u;
        h.ref[t * f + j] = hv;
        h.tol[t * f + j] = 1.1 * fabs(u) * dg + (fabs(silu) + 1.1 * dg) * du + (8 * kU + out_rounding<O>()) * fabs(hv) + 1e-30;
        gu.ref[t * 2 * f + j] = g;
        gu.tol[t * 2 * f + j] = dg + out_rounding<O>() * fabs(g) + 1e-30;
        gu.ref[t * 2 * f + f + j] = u;
        gu.tol[t * 2 * f + f + j] = du + out_rounding<O>() * fabs(u) + 1e-30;
      }
}


/* The inputs of one problem: unit-variance x and dy, weights scaled by 1/sqrt(fan-in) so sums stay
 * O(1), row scales in [0.05, 1), and the prior outputs an accumulating call adds to. */
template <typename S, typename O>
struct Inputs {
  std::vector<S> x, w, w13, dy;
  std::vector<float> scale;
  std::vector<O> y_prior, dx_prior, dw_prior;

  explicit Inputs(const Problem &p) {
    const int64_t E = p.groups(), T = p.rows(), n = p.n, k = p.k;
    const uint64_t seed = 17 * T + 31 * n + k + E;
    const float w_scale = 1.0f / sqrtf((float)std::max<int64_t>(k, 1));
    x = encode<S>(check::randn(T * k, seed));
    w = encode<S>(check::randn(E * n * k, seed + 1, w_scale));
    w13 = encode<S>(check::randn(E * 2 * n * k, seed + 2, w_scale));
    dy = encode<S>(check::randn(T * n, seed + 3));
    scale.resize(T);
    std::mt19937 g((uint32_t)seed);
    std::uniform_real_distribution<float> d(0.05f, 1.0f);
    for (auto &s : scale) s = d(g);
    y_prior = encode<O>(check::randn(T * n, seed + 4));
    dx_prior = encode<O>(check::randn(T * k, seed + 5));
    dw_prior = encode<O>(check::randn(E * n * k, seed + 6));
  }
};

/* y, dx, dw of forward / dgrad / wgrad and h, gate_up of the SwiGLU forward. */
template <typename O>
struct Outputs {
  std::vector<O> y, dx, dw, h, gu;
};

/* All four ops on the CPU twin (moe4j_cpu_grouped_gemm_*). */
template <typename S, typename O>
Outputs<O> cpu_twin(const Problem &p, const Inputs<S, O> &in, int32_t accumulate) {
  const int32_t it = dtype_of<S>(), ot = dtype_of<O>();
  const int64_t E = p.groups(), T = p.rows(), n = p.n, k = p.k;
  const auto off = p.offsets();
  const int64_t *o = p.dense ? nullptr : off.data();
  Outputs<O> c{in.y_prior, in.dx_prior, in.dw_prior, std::vector<O>(T * n), std::vector<O>(T * 2 * n)};
  CHECK_STATUS(moe4j_cpu_grouped_gemm_forward(it, in.x.data(), in.w.data(), ot, c.y.data(), o, E, T, n, k, in.scale.data(), accumulate), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_grouped_gemm_dgrad(it, in.dy.data(), in.w.data(), ot, c.dx.data(), o, E, T, n, k, accumulate), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_grouped_gemm_wgrad(it, in.dy.data(), in.x.data(), ot, c.dw.data(), o, E, T, n, k, accumulate), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_grouped_gemm_swiglu_forward(it, in.x.data(), in.w13.data(), ot, c.h.data(), c.gu.data(), o, E, T, n, k), MOE4J_OK);
  return c;
}

/* Elements of `got` outside the fp64 bounds or too far from the CPU twin's (prints the first few). */
template <typename S, typename O>
int count_all_bad(const Problem &p, const Inputs<S, O> &in, const Outputs<O> &got,
                  const Outputs<O> &cpu, bool acc) {
  int bad = 0;
  bad += count_bad("forward", p, got.y, forward_expect<S, O>(p, in.x, in.w, in.scale, in.y_prior, acc), &cpu.y);
  bad += count_bad("dgrad", p, got.dx, dgrad_expect<S, O>(p, in.dy, in.w, in.dx_prior, acc), &cpu.dx);
  bad += count_bad("wgrad", p, got.dw, wgrad_expect<S, O>(p, in.dy, in.x, in.dw_prior, acc), &cpu.dw);
  Expect eh, egu;
  swiglu_expect<S, O>(p, in.x, in.w13, eh, egu);
  bad += count_bad("swiglu h", p, got.h, eh, &cpu.h);
  bad += count_bad("swiglu gate_up", p, got.gu, egu, &cpu.gu);
  return bad;
}


/* Zipf(s = 1.1) counts of `tokens` over E groups (skewed routing), fixed seed. */
inline std::vector<int64_t> zipf_sizes(int64_t groups, int64_t tokens, uint64_t seed) {
  std::vector<double> wts(groups);
  for (int64_t e = 0; e < groups; e++) wts[e] = 1.0 / pow((double)(e + 1), 1.1);
  std::mt19937_64 g(seed);
  std::discrete_distribution<int64_t> d(wts.begin(), wts.end());
  std::vector<int64_t> sizes(groups, 0);
  for (int64_t t = 0; t < tokens; t++) sizes[d(g)]++;
  std::shuffle(sizes.begin(), sizes.end(), g);
  return sizes;
}


}  // namespace grouped_gemm_test
