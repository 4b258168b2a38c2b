/* Grouped-expert GEMM (forward, dgrad, wgrad, SwiGLU forward) against fp64 references: every
 * in/out dtype pair, ragged routings (empty groups, 1 row, all rows in one group, Zipf skew),
 * odd/prime n and k, accumulate, row_scale, determinism across runs and thread counts, guard
 * elements around every output, the tile schedule header, and bad arguments for every function.
 *
 * Tolerances: each output is one f32 FMA chain over K terms, so |err| <= (K + 2) * 2^-24 *
 * (sum |a*b| (times |scale|) + |old|) (the +2 covers the scale product and the accumulate add);
 * bf16 inputs are exact in f32, so the same bound holds; a bf16 output adds one RNE rounding,
 * at most 2^-9 relative (we allow 2^-8). The small-M (GEMV) forward path sums in 16 lanes and a
 * 4-level tree: each term passes through at most K/16 + 4 roundings, inside the same bound. */
#include <omp.h>
#include <string.h>

#include <algorithm>

#include "check.h"
#include "cpu_common.h"
#include "cpu_gemv.h"
#include "grouped_gemm_schedule.h"
#include "swiglu_math.h"

using namespace moe4j;

namespace {

const int kF32 = MOE4J_DTYPE_F32, kBF16 = MOE4J_DTYPE_BF16;
const int64_t kGuard = 37;
const float kSentinel = -12352.0f; /* exact in bf16 */

/* A buffer of `count` elements of dtype with guard elements on both sides. */
struct Buf {
  int dtype;
  int64_t count;
  std::vector<float> f;
  std::vector<bf16_t> b;
  Buf(int dt, int64_t n) : dtype(dt), count(n) {
    if (dt == kF32) f.assign(n + 2 * kGuard, kSentinel);
    else b.assign(n + 2 * kGuard, from_f32<bf16_t>(kSentinel));
  }
  void *ptr() { return dtype == kF32 ? (void *)(f.data() + kGuard) : (void *)(b.data() + kGuard); }
  float get(int64_t i) const { return dtype == kF32 ? f[kGuard + i] : to_f32(b[kGuard + i]); }
  void set(int64_t i, float v) {
    if (dtype == kF32) f[kGuard + i] = v;
    else b[kGuard + i] = from_f32<bf16_t>(v);
  }
  /* fill with random values exactly representable in the dtype */
  void fill(uint64_t seed, float scale = 1.0f) {
    auto r = check::randn(count, seed, scale);
    for (int64_t i = 0; i < count; i++) set(i, r[i]);
  }
  bool guards_intact() const {
    for (int64_t i = 0; i < kGuard; i++) {
      float lo = dtype == kF32 ? f[i] : to_f32(b[i]);
      float hi = dtype == kF32 ? f[kGuard + count + i] : to_f32(b[kGuard + count + i]);
      if (lo != kSentinel || hi != kSentinel) return false;
    }
    return true;
  }
  bool bitwise_equal(const Buf &o) const {
    return dtype == kF32 ? memcmp(f.data(), o.f.data(), f.size() * 4) == 0
                         : memcmp(b.data(), o.b.data(), b.size() * 2) == 0;
  }
};

/* Group sizes -> offsets */
std::vector<int64_t> offsets_of(const std::vector<int64_t> &sizes) {
  std::vector<int64_t> off(sizes.size() + 1, 0);
  for (size_t e = 0; e < sizes.size(); e++) off[e + 1] = off[e] + sizes[e];
  return off;
}

/* T rows over E groups, Zipf(s) skewed with a random permutation of the groups. */
std::vector<int64_t> zipf_sizes(int64_t E, int64_t T, double s, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<double> w(E);
  for (int64_t e = 0; e < E; e++) w[e] = 1.0 / pow((double)(e + 1), s);
  std::shuffle(w.begin(), w.end(), g);
  std::discrete_distribution<int64_t> d(w.begin(), w.end());
  std::vector<int64_t> sizes(E, 0);
  for (int64_t t = 0; t < T; t++) sizes[d(g)]++;
  return sizes;
}

enum class Op { kForward, kDgrad, kWgrad };

struct Case {
  Op op;
  int in, out;
  std::vector<int64_t> sizes; /* empty: dense (offsets NULL, one group) */
  int64_t total, n, k;
  bool scale, accumulate;
};

/* Runs one case, compares with fp64, checks guards; returns the output for determinism checks. */
Buf run_case(const Case &c, uint64_t seed) {
  const bool dense = c.sizes.empty();
  const int64_t E = dense ? 1 : (int64_t)c.sizes.size(), T = c.total, n = c.n, k = c.k;
  std::vector<int64_t> off = dense ? std::vector<int64_t>{0, T} : offsets_of(c.sizes);
  const int64_t *offp = dense ? nullptr : off.data();
  int64_t na, nb, nout;
  switch (c.op) {
    case Op::kForward: na = T * k; nb = E * n * k; nout = T * n; break;
    case Op::kDgrad: na = T * n; nb = E * n * k; nout = T * k; break;
    default: na = T * n; nb = T * k; nout = E * n * k; break;
  }
  Buf a(c.in, na), b(c.in, nb), out(c.out, nout), old(c.out, nout);
  a.fill(seed);
  b.fill(seed + 1);
  std::vector<float> scale = check::randn(T, seed + 2);
  if (c.accumulate) {
    out.fill(seed + 3);
    old = out;
  }
  const float *sp = c.scale ? scale.data() : nullptr;
  auto call = [&](Buf &o) {
    switch (c.op) {
      case Op::kForward:
        return moe4j_cpu_grouped_gemm_forward(c.in, a.ptr(), b.ptr(), c.out, o.ptr(), offp, E, T, n, k, sp, c.accumulate);
      case Op::kDgrad:
        return moe4j_cpu_grouped_gemm_dgrad(c.in, a.ptr(), b.ptr(), c.out, o.ptr(), offp, E, T, n, k, c.accumulate);
      default:
        return moe4j_cpu_grouped_gemm_wgrad(c.in, a.ptr(), b.ptr(), c.out, o.ptr(), offp, E, T, n, k, c.accumulate);
    }
  };
  CHECK_STATUS(call(out), MOE4J_OK);
  CHECK(out.guards_intact());
  /* fp64 reference */
  std::vector<double> ref(nout), mag(nout);
  for (int64_t e = 0; e < E; e++) {
    const int64_t r0 = off[e], r1 = off[e + 1];
    if (c.op == Op::kWgrad) {
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++) {
          double s = 0, m = 0;
          for (int64_t t = r0; t < r1; t++) {
            double p = (double)a.get(t * n + i) * b.get(t * k + j);
            s += p;
            m += fabs(p);
          }
          ref[(e * n + i) * k + j] = s;
          mag[(e * n + i) * k + j] = m;
        }
      continue;
    }
    for (int64_t t = r0; t < r1; t++) {
      const int64_t cols = c.op == Op::kForward ? n : k, red = c.op == Op::kForward ? k : n;
      for (int64_t j = 0; j < cols; j++) {
        double s = 0, m = 0;
        for (int64_t p = 0; p < red; p++) {
          double prod = c.op == Op::kForward ? (double)a.get(t * k + p) * b.get((e * n + j) * k + p)
                                             : (double)a.get(t * n + p) * b.get((e * n + p) * k + j);
          s += prod;
          m += fabs(prod);
        }
        if (c.scale) {
          s *= scale[t];
          m *= fabs(scale[t]);
        }
        ref[t * cols + j] = s;
        mag[t * cols + j] = m;
      }
    }
  }
  const int64_t red = c.op == Op::kForward ? k : (c.op == Op::kDgrad ? n : T);
  const double eps = ldexp(1.0, -24);
  int bad = 0;
  for (int64_t i = 0; i < nout && bad < 5; i++) {
    double o = c.accumulate ? (double)old.get(i) : 0.0;
    double want = o + ref[i];
    double tol = (red + 2) * eps * (mag[i] + fabs(o)) + 1e-30;
    if (c.out == kBF16) tol += fabs(want) * ldexp(1.0, -8);
    double got = out.get(i);
    if (!(fabs(got - want) <= tol)) {
      bad++;
      char msg[256];
      snprintf(msg, sizeof msg, "op %d in %d out %d E %lld T %lld n %lld k %lld: out[%lld] = %.9g want %.9g tol %.3g",
               (int)c.op, c.in, c.out, (long long)E, (long long)T, (long long)n, (long long)k,
               (long long)i, got, want, tol);
      check::report(__FILE__, __LINE__, msg);
    }
  }
  return out;
}

/* Sets MOE4J_CPU_GEMV_MAX_ROWS (the small-M path's threshold) for the scope, "" = default. */
struct GemvRows {
  explicit GemvRows(const char *v) { setenv("MOE4J_CPU_GEMV_MAX_ROWS", v, 1); }
  ~GemvRows() { unsetenv("MOE4J_CPU_GEMV_MAX_ROWS"); }
};

/* Routings covering the edge cases. */
std::vector<std::vector<int64_t>> routings() {
  std::vector<std::vector<int64_t>> r;
  r.push_back({5});                               /* E = 1 */
  r.push_back({0, 1, 0});                         /* empty groups and a single row */
  r.push_back({0, 45, 0});                        /* all rows in one group */
  r.push_back({3, 17, 29, 1, 0, 13, 2, 40});      /* E = 8, not tile multiples */
  r.push_back(zipf_sizes(64, 300, 1.1, 11));      /* E = 64 Zipf skew */
  r.push_back(zipf_sizes(256, 600, 1.3, 12));     /* E = 256, many empty */
  return r;
}

int64_t sum(const std::vector<int64_t> &v) {
  int64_t s = 0;
  for (auto x : v) s += x;
  return s;
}

}  // namespace

TEST_CASE(schedule_locates_every_tile) {
  CHECK(tiles_in_group(0, 16, 3) == 0);
  CHECK(tiles_in_group(1, 16, 3) == 3);
  CHECK(tiles_in_group(16, 16, 3) == 3);
  CHECK(tiles_in_group(17, 16, 3) == 6);
  std::vector<int64_t> sizes = {0, 5, 0, 0, 33, 16, 1, 0};
  auto off = offsets_of(sizes);
  const int64_t E = sizes.size(), tile_m = 16, n_tiles = 3;
  std::vector<int64_t> prefix(E + 1);
  build_tile_prefix(off.data(), E, tile_m, n_tiles, prefix.data());
  CHECK(prefix[E] == (1 + 3 + 1 + 1) * n_tiles);
  int64_t t = 0;
  for (int64_t e = 0; e < E; e++)
    for (int64_t m = 0; m < ceil_div_i64(sizes[e], tile_m); m++)
      for (int64_t nt = 0; nt < n_tiles; nt++, t++) {
        GroupTile g{-1, -1, -1};
        CHECK(locate_tile(prefix.data(), E, t, n_tiles, &g));
        CHECK(g.group == e && g.m_tile == m && g.n_tile == nt);
      }
  CHECK(t == prefix[E]);
  GroupTile g{-1, -1, -1};
  CHECK(!locate_tile(prefix.data(), E, prefix[E], n_tiles, &g));
  CHECK(!locate_tile(prefix.data(), E, -1, n_tiles, &g));
  CHECK(g.group == -1);
}

TEST_CASE(forward_dgrad_wgrad_match_fp64_all_dtypes) {
  const int64_t dims[][2] = {{1, 1}, {7, 33}, {33, 7}, {257, 33}, {40, 257}};
  uint64_t seed = 100;
  for (Op op : {Op::kForward, Op::kDgrad, Op::kWgrad})
    for (int in : {kF32, kBF16})
      for (int out : {kF32, kBF16}) {
        int idx = 0;
        for (auto &sizes : routings()) {
          auto &d = dims[(idx++ + (int)op) % 5];
          Case c{op, in, out, sizes, sum(sizes), d[0], d[1], false, false};
          run_case(c, seed++);
          c.accumulate = true;
          c.scale = op == Op::kForward;
          run_case(c, seed++);
        }
      }
}

TEST_CASE(dense_offsets_null_and_large_shapes) {
  uint64_t seed = 500;
  for (int in : {kF32, kBF16})
    for (int out : {kF32, kBF16}) {
      run_case(Case{Op::kForward, in, out, {}, 301, 257, 129, false, false}, seed++);
      run_case(Case{Op::kDgrad, in, out, {}, 77, 65, 300, false, true}, seed++);
      run_case(Case{Op::kWgrad, in, out, {}, 263, 33, 70, false, false}, seed++);
    }
  /* bigger than one tile in every dimension (1024-row x 2048-column tiles, KC = 512 blocks on
   * AVX-512, 256 on AVX2) */
  run_case(Case{Op::kForward, kF32, kF32, {}, 40, 2100, 530, false, false}, seed++);
  run_case(Case{Op::kForward, kF32, kF32, {1100, 0, 7, 950}, 2057, 67, 520, true, false}, seed++);
  run_case(Case{Op::kDgrad, kBF16, kF32, {}, 1500, 300, 40, false, false}, seed++);
  run_case(Case{Op::kWgrad, kF32, kBF16, {600, 0, 700}, 1300, 45, 70, false, true}, seed++);
  /* zero-sized dimensions */
  run_case(Case{Op::kForward, kF32, kF32, {0, 0}, 0, 7, 5, false, false}, seed++);
  run_case(Case{Op::kForward, kF32, kF32, {3, 2}, 5, 7, 0, true, false}, seed++);
  run_case(Case{Op::kWgrad, kF32, kF32, {3, 0}, 3, 7, 5, false, false}, seed++);
  run_case(Case{Op::kDgrad, kBF16, kBF16, {3, 4}, 7, 0, 9, false, true}, seed++);
}

TEST_CASE(wgrad_empty_group_zero_or_unchanged) {
  std::vector<int64_t> off = {0, 0, 4};
  const int64_t n = 3, k = 5, T = 4;
  auto dy = check::randn(T * n, 1), x = check::randn(T * k, 2);
  std::vector<float> dw(2 * n * k, 9.0f);
  CHECK_STATUS(moe4j_cpu_grouped_gemm_wgrad(kF32, dy.data(), x.data(), kF32, dw.data(), off.data(), 2, T, n, k, 1), MOE4J_OK);
  for (int64_t i = 0; i < n * k; i++) CHECK(dw[i] == 9.0f); /* accumulate: unchanged */
  CHECK_STATUS(moe4j_cpu_grouped_gemm_wgrad(kF32, dy.data(), x.data(), kF32, dw.data(), off.data(), 2, T, n, k, 0), MOE4J_OK);
  for (int64_t i = 0; i < n * k; i++) CHECK(dw[i] == 0.0f); /* overwrite: zeros */
}

TEST_CASE(swiglu_forward_matches_fp64) {
  uint64_t seed = 900;
  for (int in : {kF32, kBF16})
    for (int out : {kF32, kBF16})
      for (auto sizes : std::vector<std::vector<int64_t>>{{}, {0, 9, 0, 30, 1}, zipf_sizes(64, 200, 1.2, 5)})
        for (int64_t f : {1, 33, 257}) {
          const int64_t k = f == 33 ? 257 : 7 + f % 5;
          const bool dense = sizes.empty();
          const int64_t T = dense ? 45 : sum(sizes), E = dense ? 1 : sizes.size();
          auto off = dense ? std::vector<int64_t>{0, T} : offsets_of(sizes);
          Buf x(in, T * k), w(in, E * 2 * f * k), h(out, T * f), gu(out, T * 2 * f), h2(out, T * f);
          x.fill(seed++);
          w.fill(seed++);
          CHECK_STATUS(moe4j_cpu_grouped_gemm_swiglu_forward(in, x.ptr(), w.ptr(), out, h.ptr(), gu.ptr(),
                                                             dense ? nullptr : off.data(), E, T, f, k), MOE4J_OK);
          CHECK_STATUS(moe4j_cpu_grouped_gemm_swiglu_forward(in, x.ptr(), w.ptr(), out, h2.ptr(), nullptr,
                                                             dense ? nullptr : off.data(), E, T, f, k), MOE4J_OK);
          CHECK(h.guards_intact() && gu.guards_intact() && h2.guards_intact());
          CHECK(h.bitwise_equal(h2));
          const double eps = ldexp(1.0, -24);
          int bad = 0;
          for (int64_t e = 0; e < E; e++)
            for (int64_t t = off[e]; t < off[e + 1]; t++)
              for (int64_t j = 0; j < f && bad < 5; j++) {
                double g = 0, u = 0, mg = 0, mu = 0;
                for (int64_t p = 0; p < k; p++) {
                  double xv = x.get(t * k + p);
                  double pg = xv * w.get((e * 2 * f + j) * k + p), pu = xv * w.get((e * 2 * f + f + j) * k + p);
                  g += pg; u += pu; mg += fabs(pg); mu += fabs(pu);
                }
                double tg = (k + 1) * eps * mg, tu = (k + 1) * eps * mu;
                double bfg = out == kBF16 ? ldexp(1.0, -8) : 0.0;
                bool ok = fabs(gu.get(t * 2 * f + j) - g) <= tg + bfg * fabs(g) + 1e-30 &&
                          fabs(gu.get(t * 2 * f + f + j) - u) <= tu + bfg * fabs(u) + 1e-30;
                /* h = silu(g) * u: |d silu| <= 1.1, so the f32 g/u errors propagate with factor
                 * 1.1|u| + |silu(g)|, plus a few ulps of f32 math and the output rounding */
                double sg = g / (1.0 + exp(-g)), hw = sg * u;
                double th = 1.1 * fabs(u) * tg + fabs(sg) * tu + 8 * eps * fabs(hw) + bfg * fabs(hw) + 1e-30;
                ok = ok && fabs(h.get(t * f + j) - hw) <= th;
                if (!ok) {
                  bad++;
                  char msg[200];
                  snprintf(msg, sizeof msg, "swiglu in %d out %d f %lld t %lld j %lld: h %.9g want %.9g", in, out,
                           (long long)f, (long long)t, (long long)j, h.get(t * f + j), hw);
                  check::report(__FILE__, __LINE__, msg);
                }
              }
        }
}

TEST_CASE(deterministic_across_runs_and_thread_counts) {
  auto sizes = zipf_sizes(8, 2500, 1.2, 77);
  const int64_t T = sum(sizes), E = 8, n = 97, k = 300;
  auto off = offsets_of(sizes);
  Buf x(kBF16, T * k), w(kBF16, E * n * k), dy(kBF16, T * n);
  x.fill(1); w.fill(2); dy.fill(3);
  int saved = omp_get_max_threads();
  std::vector<Buf> outs;
  /* 3 and 7 threads: a single dense tile is split until every thread has one (other tiles) */
  for (int threads : {2, 2, 1, 3, 7}) {
    omp_set_num_threads(threads);
    Buf y(kF32, T * n), dx(kF32, T * k), dw(kF32, E * n * k), h(kBF16, T * (n / 2)), yd(kF32, 300 * n);
    CHECK_STATUS(moe4j_cpu_grouped_gemm_forward(kBF16, x.ptr(), w.ptr(), kF32, y.ptr(), off.data(), E, T, n, k, nullptr, 0), MOE4J_OK);
    CHECK_STATUS(moe4j_cpu_grouped_gemm_forward(kBF16, x.ptr(), w.ptr(), kF32, yd.ptr(), nullptr, 1, 300, n, k, nullptr, 0), MOE4J_OK);
    CHECK_STATUS(moe4j_cpu_grouped_gemm_dgrad(kBF16, dy.ptr(), w.ptr(), kF32, dx.ptr(), off.data(), E, T, n, k, 0), MOE4J_OK);
    CHECK_STATUS(moe4j_cpu_grouped_gemm_wgrad(kBF16, dy.ptr(), x.ptr(), kF32, dw.ptr(), off.data(), E, T, n, k, 0), MOE4J_OK);
    CHECK_STATUS(moe4j_cpu_grouped_gemm_swiglu_forward(kBF16, x.ptr(), w.ptr(), kBF16, h.ptr(), nullptr, off.data(), E, T, n / 2, k), MOE4J_OK);
    outs.push_back(y); outs.push_back(dx); outs.push_back(dw); outs.push_back(h); outs.push_back(yd);
  }
  omp_set_num_threads(saved);
  for (size_t i = 5; i < outs.size(); i++) CHECK(outs[i].bitwise_equal(outs[i % 5]));
}

TEST_CASE(bad_arguments_fail_with_messages) {
  const int64_t T = 6, n = 4, k = 3;
  std::vector<float> x(T * k, 1.0f), w(2 * n * k, 1.0f), y(T * n), dw(2 * n * k), h(T * 2), gu(T * 4);
  std::vector<int64_t> off = {0, 2, 6}, dec = {0, 4, 2}, first = {1, 2, 6}, last = {0, 2, 5};
  const int EI = MOE4J_ERR_INVALID_ARGUMENT, EU = MOE4J_ERR_UNSUPPORTED;
  /* forward */
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(MOE4J_DTYPE_F16, x.data(), w.data(), kF32, y.data(), off.data(), 2, T, n, k, nullptr, 0), EU, "in_dtype");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), w.data(), MOE4J_DTYPE_I32, y.data(), off.data(), 2, T, n, k, nullptr, 0), EU, "out_dtype");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, nullptr, w.data(), kF32, y.data(), off.data(), 2, T, n, k, nullptr, 0), EI, "x is NULL");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), nullptr, kF32, y.data(), off.data(), 2, T, n, k, nullptr, 0), EI, "w is NULL");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), w.data(), kF32, nullptr, off.data(), 2, T, n, k, nullptr, 0), EI, "y is NULL");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), w.data(), kF32, y.data(), off.data(), 2, -1, n, k, nullptr, 0), EI, "total_rows");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), w.data(), kF32, y.data(), off.data(), 2, T, -4, k, nullptr, 0), EI, "n must be");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), w.data(), kF32, y.data(), off.data(), 2, T, n, -3, nullptr, 0), EI, "k must be");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), w.data(), kF32, y.data(), off.data(), 0, T, n, k, nullptr, 0), EI, "num_groups");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), w.data(), kF32, y.data(), off.data(), (1 << 20) + 1, T, n, k, nullptr, 0), EI, "num_groups");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), w.data(), kF32, y.data(), nullptr, 2, T, n, k, nullptr, 0), EI, "offsets is NULL");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), w.data(), kF32, y.data(), dec.data(), 2, T, n, k, nullptr, 0), EI, "offsets[2] = 2 < offsets[1] = 4");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), w.data(), kF32, y.data(), first.data(), 2, T, n, k, nullptr, 0), EI, "offsets[0] must be 0, got 1");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), w.data(), kF32, y.data(), last.data(), 2, T, n, k, nullptr, 0), EI, "offsets[2] = 5 must equal total_rows = 6");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), w.data(), kF32, y.data(), off.data(), 2, INT64_MAX / 2, n, k, nullptr, 0), EI, "overflows");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), w.data(), kF32, y.data(), off.data(), 2, T, INT64_MAX / 4, INT64_MAX / 4, nullptr, 0), EI, "overflows");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), w.data(), kF32, x.data(), off.data(), 2, T, n, k, nullptr, 0), EI, "y and x overlap");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), w.data(), kF32, (char *)y.data() + 2, off.data(), 2, T, n, k, nullptr, 0), EI, "aligned");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), w.data(), kF32, y.data(), off.data(), 2, T, n, k, y.data(), 0), EI, "y and row_scale overlap");
  /* dgrad */
  CHECK_FAILS(moe4j_cpu_grouped_gemm_dgrad(MOE4J_DTYPE_I64, y.data(), w.data(), kF32, x.data(), off.data(), 2, T, n, k, 0), EU, "in_dtype");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_dgrad(kF32, nullptr, w.data(), kF32, x.data(), off.data(), 2, T, n, k, 0), EI, "dy is NULL");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_dgrad(kF32, y.data(), w.data(), kF32, nullptr, off.data(), 2, T, n, k, 0), EI, "dx is NULL");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_dgrad(kF32, y.data(), w.data(), kF32, x.data(), last.data(), 2, T, n, k, 0), EI, "must equal total_rows");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_dgrad(kF32, y.data(), w.data(), kF32, x.data(), nullptr, 3, T, n, k, 0), EI, "offsets is NULL");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_dgrad(kF32, y.data(), w.data(), kF32, y.data(), off.data(), 2, T, n, k, 0), EI, "dx and dy overlap");
  /* wgrad */
  CHECK_FAILS(moe4j_cpu_grouped_gemm_wgrad(kF32, y.data(), x.data(), MOE4J_DTYPE_F16, dw.data(), off.data(), 2, T, n, k, 0), EU, "out_dtype");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_wgrad(kF32, y.data(), x.data(), kF32, nullptr, off.data(), 2, T, n, k, 0), EI, "dw is NULL");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_wgrad(kF32, y.data(), nullptr, kF32, dw.data(), off.data(), 2, T, n, k, 0), EI, "x is NULL");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_wgrad(kF32, y.data(), x.data(), kF32, dw.data(), dec.data(), 2, T, n, k, 0), EI, "non-decreasing");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_wgrad(kF32, y.data(), x.data(), kF32, x.data(), off.data(), 2, T, n, k, 0), EI, "dw and x overlap");
  /* swiglu: w13 is [2, 2f = 4, k] with f = 2 */
  CHECK_FAILS(moe4j_cpu_grouped_gemm_swiglu_forward(kF32, x.data(), w.data(), MOE4J_DTYPE_U8, h.data(), gu.data(), off.data(), 2, T, 2, k), EU, "out_dtype");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_swiglu_forward(kF32, x.data(), nullptr, kF32, h.data(), gu.data(), off.data(), 2, T, 2, k), EI, "w13 is NULL");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_swiglu_forward(kF32, x.data(), w.data(), kF32, nullptr, gu.data(), off.data(), 2, T, 2, k), EI, "h is NULL");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_swiglu_forward(kF32, x.data(), w.data(), kF32, h.data(), gu.data(), off.data(), 2, T, -2, k), EI, "f must be");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_swiglu_forward(kF32, x.data(), w.data(), kF32, h.data(), gu.data(), off.data(), 2, T, INT64_MAX, k), EI, "overflows");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_swiglu_forward(kF32, x.data(), w.data(), kF32, h.data(), gu.data(), first.data(), 2, T, 2, k), EI, "offsets[0]");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_swiglu_forward(kF32, x.data(), w.data(), kF32, h.data(), h.data(), off.data(), 2, T, 2, k), EI, "gate_up and h overlap");
  CHECK_FAILS(moe4j_cpu_grouped_gemm_swiglu_forward(kF32, x.data(), w.data(), kF32, x.data(), gu.data(), off.data(), 2, T, 2, k), EI, "h and x overlap");
  /* the valid call still works after all this */
  CHECK_STATUS(moe4j_cpu_grouped_gemm_forward(kF32, x.data(), w.data(), kF32, y.data(), off.data(), 2, T, n, k, nullptr, 0), MOE4J_OK);
}

TEST_MAIN("grouped_gemm")

/* ---- small-M (GEMV) forward path: groups of 1..16 rows (decode: 1..8) ----------------------- */

TEST_CASE(small_m_forward_matches_fp64) {
  uint64_t seed = 2000;
  /* n, k not multiples of the vector widths (8, 16), k below one vector, exactly one, and long */
  const int64_t dims[][2] = {{37, 53}, {5, 3}, {16, 16}, {129, 1000}, {64, 17}, {1, 1}};
  for (int in : {kF32, kBF16})
    for (int out : {kF32, kBF16}) {
      int idx = 0;
      for (int64_t m = 1; m <= 8; m++) { /* dense, M = 1..8 */
        auto &d = dims[idx++ % 6];
        run_case(Case{Op::kForward, in, out, {}, m, d[0], d[1], false, false}, seed++);
        run_case(Case{Op::kForward, in, out, {}, m, d[0], d[1], true, true}, seed++);
        run_case(Case{Op::kForward, in, out, {}, m, d[0], d[1], false, true}, seed++);
        run_case(Case{Op::kForward, in, out, {}, m, d[0], d[1], true, false}, seed++);
      }
      /* groups of 0..8 rows (a decode step's experts), plus the threshold edges mixed with
       * packed groups in one call */
      std::mt19937_64 g(seed);
      for (int rep = 0; rep < 4; rep++) {
        std::vector<int64_t> sizes(8 + 8 * rep);
        for (auto &v : sizes) v = (int64_t)(g() % 9);
        auto &d = dims[idx++ % 6];
        run_case(Case{Op::kForward, in, out, sizes, sum(sizes), d[0], d[1], rep % 2 == 1, rep >= 2}, seed++);
      }
      std::vector<int64_t> mixed = {8, 9, 0, 1, 16, 17, 0, 3};
      run_case(Case{Op::kForward, in, out, mixed, sum(mixed), 45, 77, true, true}, seed++);
      run_case(Case{Op::kForward, in, out, mixed, sum(mixed), 45, 77, false, false}, seed++);
    }
}

TEST_CASE(small_m_path_differs_from_packed_only_by_rounding) {
  /* the same call with the path off (packed) and on: both within the fp64 bound (run_case), and
   * not bitwise equal, which shows the switch really selects another summation order */
  const Case c{Op::kForward, kBF16, kF32, {3, 0, 8, 1, 5}, 17, 70, 1000, true, false};
  Buf on = run_case(c, 77);
  Buf off = [&] {
    GemvRows none("0");
    return run_case(c, 77);
  }();
  CHECK(!on.bitwise_equal(off));
  int64_t differ = 0;
  for (int64_t i = 0; i < on.count; i++) differ += on.get(i) != off.get(i);
  CHECK(differ > 0);
  /* groups of 9..16 rows: GEMV by default, packed with a threshold of 8; both within the bound */
  const Case mid{Op::kForward, kBF16, kF32, {9, 16, 12, 0, 17}, 54, 33, 300, true, false};
  run_case(Case{Op::kForward, kBF16, kBF16, {9, 16, 12, 0, 17}, 54, 33, 130, true, true}, 80);
  Buf mid_gemv = run_case(mid, 78);
  GemvRows eight("8");
  Buf mid_packed = run_case(mid, 78);
  CHECK(!mid_gemv.bitwise_equal(mid_packed));
  run_case(Case{Op::kForward, kF32, kF32, {}, 13, 70, 45, false, false}, 79);
}

TEST_CASE(small_m_deterministic_across_thread_counts) {
  const int64_t n = 301, k = 517;
  std::vector<int64_t> sizes = {2, 0, 1, 8, 3, 0, 0, 2};
  const int64_t T = sum(sizes), E = (int64_t)sizes.size();
  auto off = offsets_of(sizes);
  Buf x(kBF16, T * k), w(kBF16, E * n * k);
  x.fill(5);
  w.fill(6);
  auto scale = check::randn(T, 7);
  int saved = omp_get_max_threads();
  std::vector<Buf> outs;
  for (int threads : {2, 2, 1, 3}) {
    omp_set_num_threads(threads);
    Buf y(kBF16, T * n), d(kF32, n);
    y.fill(8);
    CHECK_STATUS(moe4j_cpu_grouped_gemm_forward(kBF16, x.ptr(), w.ptr(), kBF16, y.ptr(), off.data(), E, T, n, k,
                                                scale.data(), 1), MOE4J_OK);
    CHECK_STATUS(moe4j_cpu_grouped_gemm_forward(kBF16, x.ptr(), w.ptr(), kF32, d.ptr(), nullptr, 1, 1, n, k,
                                                nullptr, 0), MOE4J_OK);
    outs.push_back(y);
    outs.push_back(d);
  }
  omp_set_num_threads(saved);
  for (size_t i = 2; i < outs.size(); i++) CHECK(outs[i].bitwise_equal(outs[i % 2]));
}

TEST_CASE(small_m_kernels_bitwise_equal_across_simd_variants) {
  /* the scalar kernel is the definition; AVX2 and AVX-512 must give the same bits */
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl");
  if (!avx2) printf("note: no AVX2 on this CPU, only the scalar kernel checked\n");
  for (int64_t k : {1, 15, 16, 33, 250}) {
    const int64_t ldx = (k + 15) / 16 * 16, rows = 11;
    std::vector<float> x(gemm::kGemvMaxRows * ldx, 0.0f);
    auto xr = check::randn(gemm::kGemvMaxRows * k, 40 + k);
    for (int64_t i = 0; i < gemm::kGemvMaxRows; i++)
      for (int64_t p = 0; p < k; p++) x[i * ldx + p] = xr[i * k + p];
    Buf wf(kF32, rows * k), wb(kBF16, rows * k);
    wf.fill(50 + k);
    wb.fill(60 + k);
    for (int m = 1; m <= gemm::kGemvMaxRows; m++) {
      for (int dt = 0; dt < 2; dt++) {
        std::vector<float> ref(rows * m), got(rows * m);
        auto call = [&](int variant, float *dots) {
          if (dt == 0) gemm::gemv_kernel<float>(variant, m)((const float *)wf.ptr(), k, (int)rows, x.data(), ldx, dots);
          else gemm::gemv_kernel<bf16_t>(variant, m)((const bf16_t *)wb.ptr(), k, (int)rows, x.data(), ldx, dots);
        };
        call(0, ref.data());
        /* the scalar kernel against fp64 (each dot within the lane-tree bound) */
        const Buf &w = dt == 0 ? wf : wb;
        for (int64_t r = 0; r < rows; r++)
          for (int i = 0; i < m; i++) {
            double s = 0, mag = 0;
            for (int64_t p = 0; p < k; p++) {
              double prod = (double)w.get(r * k + p) * x[i * ldx + p];
              s += prod;
              mag += fabs(prod);
            }
            CHECK(fabs(ref[r * m + i] - s) <= (k / 16 + 6) * ldexp(1.0, -24) * mag + 1e-30);
          }
        for (int variant : {1, 2}) {
          if ((variant == 1 && !avx2) || (variant == 2 && !avx512)) continue;
          std::fill(got.begin(), got.end(), kSentinel);
          call(variant, got.data());
          if (memcmp(ref.data(), got.data(), ref.size() * 4) != 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "variant %d m %d k %lld dtype %d differs from the scalar kernel", variant, m,
                     (long long)k, dt);
            check::report(__FILE__, __LINE__, msg);
          }
        }
      }
    }
  }
}
