/* CUDA grouped-expert GEMM (tensor-core, SIMT and reference kernels) against an fp64 reference and
 * against the CPU twin, for forward (row scale, accumulate), dgrad, wgrad and the SwiGLU forward.
 *
 * Tolerances (bounds, not tuned): inputs are exactly representable in their storage type, so the
 * fp64 reference of a dot product of K terms is exact to 1e-16. An f32 sum of K products, in any
 * order, is within gamma_K * sum|a_i b_i| of it (Higham; gamma_K ~ K u, u = 2^-24); tensor-core
 * adds may truncate instead of rounding to nearest, so we allow 2 K u * sum|terms|. On top: one
 * f32 rounding per later operation (row scale, accumulate add: u * |value|) and the output
 * rounding (bf16: half an ulp, 2^-8 relative; f32: u). SwiGLU propagates the g/u bounds through
 * h = silu(g) u (|silu'| <= 1.1) plus a few ulps for the device expf. The GPU and the CPU twin each
 * satisfy the bound, so they agree within the sum of both.
 * Outputs sit between sentinel guards that must stay untouched. */
#include <string.h>

#include <algorithm>
#include <random>

#include "gpu_test.h"
#include "numerics.h"

using namespace moe4j;

namespace {

constexpr size_t kGuard = 16;
constexpr double kU = 1.0 / (1 << 24);

template <typename S> double val(S s);
template <> double val<float>(float s) { return s; }
template <> double val<uint16_t>(uint16_t s) { return bf16_bits_to_f32(s); }
template <typename S> S enc(float f);
template <> float enc<float>(float f) { return f; }
template <> uint16_t enc<uint16_t>(float f) { return f32_to_bf16_bits(f); }
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
        fprintf(stderr, "    %s %s: [%zu] gpu %.9g cpu %.9g tol %.3g\n", p.name, what, i, g,
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

/* Runs all four ops of one problem on the GPU (path per `reference`) and on the CPU twin. */
template <typename S, typename O>
void run_problem(const Problem &p, bool reference, int32_t accumulate, bool misalign) {
  const int32_t it = dtype_of<S>(), ot = dtype_of<O>();
  const int64_t E = p.groups(), T = p.rows(), n = p.n, k = p.k;
  const bool acc = accumulate != 0;
  const uint64_t seed = 17 * T + 31 * n + k + E;
  /* unit-variance inputs, weights scaled by 1/sqrt(fan-in) so sums stay O(1) */
  const auto x = encode<S>(check::randn(T * k, seed));
  const auto w = encode<S>(check::randn(E * n * k, seed + 1, 1.0f / sqrtf((float)std::max<int64_t>(k, 1))));
  const auto w13 = encode<S>(check::randn(E * 2 * n * k, seed + 2, 1.0f / sqrtf((float)std::max<int64_t>(k, 1))));
  const auto dy = encode<S>(check::randn(T * n, seed + 3));
  std::vector<float> scale(T);
  {
    std::mt19937 g((uint32_t)seed);
    std::uniform_real_distribution<float> d(0.05f, 1.0f);
    for (auto &s : scale) s = d(g);
  }
  const auto y_prior = encode<O>(check::randn(T * n, seed + 4));
  const auto dx_prior = encode<O>(check::randn(T * k, seed + 5));
  const auto dw_prior = encode<O>(check::randn(E * n * k, seed + 6));
  const auto off = p.offsets();
  const int64_t *h_off = p.dense ? nullptr : off.data();

  /* CPU twin */
  std::vector<O> y_cpu = y_prior, dx_cpu = dx_prior, dw_cpu = dw_prior, h_cpu(T * n), gu_cpu(T * 2 * n);
  CHECK_STATUS(moe4j_cpu_grouped_gemm_forward(it, x.data(), w.data(), ot, y_cpu.data(), h_off, E, T, n, k, scale.data(), accumulate), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_grouped_gemm_dgrad(it, dy.data(), w.data(), ot, dx_cpu.data(), h_off, E, T, n, k, accumulate), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_grouped_gemm_wgrad(it, dy.data(), x.data(), ot, dw_cpu.data(), h_off, E, T, n, k, accumulate), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_grouped_gemm_swiglu_forward(it, x.data(), w13.data(), ot, h_cpu.data(), gu_cpu.data(), h_off, E, T, n, k), MOE4J_OK);

  /* GPU; `misalign` shifts x by one element so bf16 leaves the tensor-core path */
  CHECK_STATUS(moe4j_cuda_use_reference_kernels(reference ? 1 : 0), MOE4J_OK);
  const size_t shift = misalign ? 1 : 0;
  std::vector<S> x_shifted(shift + x.size());
  std::copy(x.begin(), x.end(), x_shifted.begin() + shift);
  gpu::DeviceBuffer<S> d_x(x_shifted), d_w(w), d_w13(w13), d_dy(dy);
  gpu::DeviceBuffer<float> d_scale(scale);
  gpu::DeviceBuffer<int64_t> d_off(off);
  const int64_t *dev_off = p.dense ? nullptr : d_off.ptr;
  gpu::DeviceBuffer<O> d_y(guarded(acc ? y_prior : std::vector<O>(T * n, sentinel<O>())));
  gpu::DeviceBuffer<O> d_dx(guarded(acc ? dx_prior : std::vector<O>(T * k, sentinel<O>())));
  gpu::DeviceBuffer<O> d_dw(guarded(acc ? dw_prior : std::vector<O>(E * n * k, sentinel<O>())));
  gpu::DeviceBuffer<O> d_h(guarded(std::vector<O>(T * n, sentinel<O>())));
  gpu::DeviceBuffer<O> d_gu(guarded(std::vector<O>(T * 2 * n, sentinel<O>())));
  const S *xp = d_x.ptr + shift;
  CHECK_STATUS(moe4j_cuda_grouped_gemm_forward(it, xp, d_w.ptr, ot, d_y.ptr, dev_off, E, T, n, k, d_scale.ptr, accumulate, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_grouped_gemm_dgrad(it, d_dy.ptr, d_w.ptr, ot, d_dx.ptr, dev_off, E, T, n, k, accumulate, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_grouped_gemm_wgrad(it, d_dy.ptr, xp, ot, d_dw.ptr, dev_off, E, T, n, k, accumulate, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_grouped_gemm_swiglu_forward(it, xp, d_w13.ptr, ot, d_h.ptr, d_gu.ptr, dev_off, E, T, n, k, nullptr), MOE4J_OK);
  gpu::sync();
  const auto y = d_y.download(), dx = d_dx.download(), dw = d_dw.download(), h = d_h.download(),
             gu = d_gu.download();
  CHECK(guard_intact(y, T * n) && guard_intact(dx, T * k) && guard_intact(dw, E * n * k) &&
        guard_intact(h, T * n) && guard_intact(gu, T * 2 * n));

  int bad = 0;
  bad += count_bad("forward", p, y, forward_expect<S, O>(p, x, w, scale, y_prior, acc), &y_cpu);
  bad += count_bad("dgrad", p, dx, dgrad_expect<S, O>(p, dy, w, dx_prior, acc), &dx_cpu);
  bad += count_bad("wgrad", p, dw, wgrad_expect<S, O>(p, dy, x, dw_prior, acc), &dw_cpu);
  Expect eh, egu;
  swiglu_expect<S, O>(p, x, w13, eh, egu);
  bad += count_bad("swiglu h", p, h, eh, &h_cpu);
  bad += count_bad("swiglu gate_up", p, gu, egu, &gu_cpu);
  if (bad) {
    fprintf(stderr, "    %s in %s out %s E %lld T %lld n %lld k %lld %s acc %d misalign %d: %d bad\n",
            p.name, sizeof(S) == 4 ? "F32" : "BF16", sizeof(O) == 4 ? "F32" : "BF16", (long long)E,
            (long long)T, (long long)n, (long long)k, reference ? "reference" : "fast", accumulate,
            (int)misalign, bad);
    CHECK(bad == 0);
  }
  /* swiglu without gate_up writes the same h */
  gpu::DeviceBuffer<O> d_h2(guarded(std::vector<O>(T * n, sentinel<O>())));
  CHECK_STATUS(moe4j_cuda_grouped_gemm_swiglu_forward(it, xp, d_w13.ptr, ot, d_h2.ptr, nullptr, dev_off, E, T, n, k, nullptr), MOE4J_OK);
  gpu::sync();
  CHECK(d_h2.download() == h);
  CHECK_STATUS(moe4j_cuda_use_reference_kernels(0), MOE4J_OK);
}

template <typename S, typename O>
void run_all_paths(const Problem &p) {
  run_problem<S, O>(p, false, 0, false);
  run_problem<S, O>(p, false, 1, false);
  run_problem<S, O>(p, true, 1, false);
  if (sizeof(S) == 2) run_problem<S, O>(p, false, 0, true); /* bf16 misaligned: SIMT path */
}

void run_dtypes(const Problem &p) {
  run_all_paths<float, float>(p);
  run_all_paths<uint16_t, uint16_t>(p);
  run_all_paths<uint16_t, float>(p);
  run_problem<float, uint16_t>(p, false, 1, false);
}

/* Zipf(s = 1.1) counts of `tokens` over E groups (skewed routing), fixed seed. */
std::vector<int64_t> zipf_sizes(int64_t groups, int64_t tokens, uint64_t seed) {
  std::vector<double> wts(groups);
  for (int64_t e = 0; e < groups; e++) wts[e] = 1.0 / pow((double)(e + 1), 1.1);
  std::mt19937_64 g(seed);
  std::discrete_distribution<int64_t> d(wts.begin(), wts.end());
  std::vector<int64_t> sizes(groups, 0);
  for (int64_t t = 0; t < tokens; t++) sizes[d(g)]++;
  std::shuffle(sizes.begin(), sizes.end(), g);
  return sizes;
}

}  // namespace

/* n, k multiples of 8 (tensor-core path for bf16) with M/N/K tails; and odd dims (SIMT path). */
TEST_CASE(dense_null_offsets) {
  for (auto nk : {std::pair<int64_t, int64_t>{136, 200}, {130, 70}}) {
    run_dtypes({"dense", {300}, true, nk.first, nk.second});
    run_dtypes({"dense one row", {1}, true, nk.first, nk.second});
  }
}

TEST_CASE(one_group_holds_all_rows) {
  run_dtypes({"all rows in group 2", {0, 0, 300, 0, 0, 0}, false, 136, 200});
  run_dtypes({"all rows in last group", {0, 0, 0, 257}, false, 72, 40});
}

TEST_CASE(empty_tiny_and_tile_boundary_groups) {
  run_dtypes({"empty and tiny", {0, 3, 1, 0, 130, 7, 0}, false, 136, 200});
  run_dtypes({"tile boundaries", {127, 128, 129, 255, 256, 1}, false, 264, 96});
  run_dtypes({"odd dims", {5, 0, 140, 33}, false, 130, 70});
  run_dtypes({"k below one k tile", {40, 90}, false, 24, 8});
}

TEST_CASE(many_groups_balanced_and_skewed) {
  std::vector<int64_t> balanced(64, 3);
  run_dtypes({"E=64 balanced", balanced, false, 136, 64});
  run_dtypes({"E=256 zipf", zipf_sizes(256, 700, 11), false, 136, 64});
  run_dtypes({"E=16 zipf", zipf_sizes(16, 900, 12), false, 200, 128});
  std::vector<int64_t> one_hot(128, 0);
  one_hot[77] = 400;
  run_dtypes({"E=128 one hot", one_hot, false, 64, 64});
}

/* More groups than the shared-memory prefix holds: the row-tiled ops take the reference kernel. */
TEST_CASE(groups_beyond_shared_prefix) {
  auto sizes = zipf_sizes(2500, 300, 13);
  run_all_paths<uint16_t, uint16_t>({"E=2500", sizes, false, 24, 16});
  run_all_paths<float, float>({"E=2500", sizes, false, 24, 16});
}

/* Same inputs, same kernel: bitwise identical outputs (no atomics, fixed order). */
TEST_CASE(fast_kernels_are_deterministic) {
  const int64_t E = 8, T = 2000, n = 256, k = 512;
  auto sizes = zipf_sizes(E, T, 21);
  std::vector<int64_t> off(E + 1, 0);
  for (int64_t e = 0; e < E; e++) off[e + 1] = off[e] + sizes[e];
  gpu::DeviceBuffer<uint16_t> x(encode<uint16_t>(check::randn(T * k, 1))),
      w(encode<uint16_t>(check::randn(E * n * k, 2, 0.05f))), dy(encode<uint16_t>(check::randn(T * n, 3)));
  gpu::DeviceBuffer<int64_t> d_off(off);
  gpu::DeviceBuffer<float> y(T * n), dx(T * k), dw(E * n * k);
  std::vector<float> y0, dx0, dw0;
  for (int run = 0; run < 3; run++) {
    CHECK_STATUS(moe4j_cuda_grouped_gemm_forward(MOE4J_DTYPE_BF16, x.ptr, w.ptr, MOE4J_DTYPE_F32, y.ptr, d_off.ptr, E, T, n, k, nullptr, 0, nullptr), MOE4J_OK);
    CHECK_STATUS(moe4j_cuda_grouped_gemm_dgrad(MOE4J_DTYPE_BF16, dy.ptr, w.ptr, MOE4J_DTYPE_F32, dx.ptr, d_off.ptr, E, T, n, k, 0, nullptr), MOE4J_OK);
    CHECK_STATUS(moe4j_cuda_grouped_gemm_wgrad(MOE4J_DTYPE_BF16, dy.ptr, x.ptr, MOE4J_DTYPE_F32, dw.ptr, d_off.ptr, E, T, n, k, 0, nullptr), MOE4J_OK);
    gpu::sync();
    if (run == 0) {
      y0 = y.download();
      dx0 = dx.download();
      dw0 = dw.download();
    } else {
      CHECK(y.download() == y0 && dx.download() == dx0 && dw.download() == dw0);
    }
  }
}

/* Empty launches succeed; wgrad with no rows zeroes dw (or leaves it when accumulating). */
TEST_CASE(zero_rows) {
  const int64_t E = 3, n = 16, k = 24;
  std::vector<int64_t> off(E + 1, 0);
  gpu::DeviceBuffer<int64_t> d_off(off);
  gpu::DeviceBuffer<uint16_t> w(E * n * k);
  gpu::DeviceBuffer<float> dw(std::vector<float>(E * n * k, 5.0f));
  const int32_t B = MOE4J_DTYPE_BF16, F = MOE4J_DTYPE_F32;
  CHECK_STATUS(moe4j_cuda_grouped_gemm_forward(B, nullptr, w.ptr, F, nullptr, d_off.ptr, E, 0, n, k, nullptr, 0, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_grouped_gemm_dgrad(B, nullptr, w.ptr, F, nullptr, d_off.ptr, E, 0, n, k, 0, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_grouped_gemm_swiglu_forward(B, nullptr, w.ptr, F, nullptr, nullptr, d_off.ptr, E, 0, n / 2, k, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_grouped_gemm_wgrad(B, nullptr, nullptr, F, dw.ptr, d_off.ptr, E, 0, n, k, 1, nullptr), MOE4J_OK);
  gpu::sync();
  CHECK(dw.download() == std::vector<float>(E * n * k, 5.0f));
  CHECK_STATUS(moe4j_cuda_grouped_gemm_wgrad(B, nullptr, nullptr, F, dw.ptr, d_off.ptr, E, 0, n, k, 0, nullptr), MOE4J_OK);
  gpu::sync();
  CHECK(dw.download() == std::vector<float>(E * n * k, 0.0f));
}

TEST_CASE(bad_arguments_fail_without_launch) {
  gpu::DeviceBuffer<float> d(4096);
  gpu::DeviceBuffer<int64_t> off(std::vector<int64_t>{0, 2, 4});
  const int32_t F = MOE4J_DTYPE_F32, E = MOE4J_ERR_INVALID_ARGUMENT;
  float *x = d.ptr, *w = d.ptr + 512, *y = d.ptr + 1024;
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(MOE4J_DTYPE_F16, x, w, F, y, off.ptr, 2, 4, 8, 8, nullptr, 0, nullptr), MOE4J_ERR_UNSUPPORTED, "in_dtype must be F32 or BF16");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, MOE4J_DTYPE_I32, y, off.ptr, 2, 4, 8, 8, nullptr, 0, nullptr), MOE4J_ERR_UNSUPPORTED, "out_dtype");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, F, y, off.ptr, 0, 4, 8, 8, nullptr, 0, nullptr), E, "num_groups must be in [1, 1048576]");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, F, y, nullptr, 2, 4, 8, 8, nullptr, 0, nullptr), E, "offsets is NULL");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, F, y, off.ptr, 2, -1, 8, 8, nullptr, 0, nullptr), E, "total_rows must be >= 0");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, F, y, off.ptr, 2, 4, -8, 8, nullptr, 0, nullptr), E, "n must be >= 0");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, F, y, off.ptr, 2, INT64_MAX / 4, 8, 8, nullptr, 0, nullptr), E, "overflows");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, nullptr, w, F, y, off.ptr, 2, 4, 8, 8, nullptr, 0, nullptr), E, "x is NULL");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, F, (float *)((char *)y + 2), off.ptr, 2, 4, 8, 8, nullptr, 0, nullptr), E, "y (address");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, F, x + 8, off.ptr, 2, 4, 8, 8, nullptr, 0, nullptr), E, "y and x overlap");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, F, w, off.ptr, 2, 4, 8, 8, nullptr, 0, nullptr), E, "y and w overlap");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_dgrad(F, x, w, F, w + 4, off.ptr, 2, 4, 8, 8, 0, nullptr), E, "dx and w overlap");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_wgrad(F, x, y, F, nullptr, off.ptr, 2, 4, 8, 8, 0, nullptr), E, "dw is NULL");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_swiglu_forward(F, x, w, F, y, y + 8, off.ptr, 2, 4, 8, 8, nullptr), E, "gate_up and h overlap");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_swiglu_forward(F, x, w, F, y, nullptr, off.ptr, 2, 4, -1, 8, nullptr), E, "f must be >= 0");
  CHECK_FAILS(moe4j_cuda_cublas_gemm(F, x, w, F, y, -1, 8, 8, nullptr), E, "m must be >= 0");
  CHECK_FAILS(moe4j_cuda_cublas_gemm(F, x, w, F, x, 4, 8, 8, nullptr), E, "c and a overlap");
  gpu::sync();
}

/* cuBLAS baseline (when a libcublas is present) equals our dense kernel to f32 bounds. */
TEST_CASE(cublas_gemm_matches_dense_kernel) {
  const int64_t m = 77, n = 136, k = 200;
  auto a = encode<uint16_t>(check::randn(m * k, 41)), b = encode<uint16_t>(check::randn(n * k, 42, 0.07f));
  gpu::DeviceBuffer<uint16_t> d_a(a), d_b(b);
  gpu::DeviceBuffer<float> c1(m * n), c2(m * n);
  int32_t s = moe4j_cuda_cublas_gemm(MOE4J_DTYPE_BF16, d_a.ptr, d_b.ptr, MOE4J_DTYPE_F32, c1.ptr, m, n, k, nullptr);
  if (strcmp(moe4j_cuda_cublas_library(), "") == 0) {
    CHECK(s == MOE4J_ERR_UNSUPPORTED);
    return;
  }
  CHECK_STATUS(s, MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_grouped_gemm_forward(MOE4J_DTYPE_BF16, d_a.ptr, d_b.ptr, MOE4J_DTYPE_F32, c2.ptr, nullptr, 1, m, n, k, nullptr, 0, nullptr), MOE4J_OK);
  gpu::sync();
  auto r1 = c1.download(), r2 = c2.download();
  int bad = 0;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double sabs = 0;
      for (int64_t kk = 0; kk < k; kk++) sabs += fabs(val(a[i * k + kk]) * val(b[j * k + kk]));
      if (!(fabs(r1[i * n + j] - r2[i * n + j]) <= 4 * k * kU * sabs + 1e-30)) bad++;
    }
  CHECK(bad == 0);
}

GPU_TEST_MAIN("gpu_grouped_gemm")
