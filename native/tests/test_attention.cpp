/*
 * Flash attention (CPU twin) against a naive fp64 reference with a materialized softmax (plain
 * loops, written here): sequence lengths that are not multiples of the tiles (1, 7, 65, 130),
 * MHA / GQA (Hq = 4 Hkv) / MQA, causal or not, sliding windows (1, 2, 5, 66, > S), head_dim 2, 6, 64,
 * 128; lse checked; bf16 by the FlashAttention rule (error vs fp64 at most 2x that of a naive bf16
 * implementation that materializes P in bf16, 3x for gradients); gradients vs fp64 central
 * differences; bitwise determinism across thread counts; guard elements; bad arguments.
 */
#include <omp.h>
#include <string.h>

#include "check.h"
#include "cpu_common.h"

using namespace moe4j;

namespace {

struct Shape {
  int64_t b, s, hq, hkv, d;
  int32_t causal;
  int64_t window;
  float scale;
  int64_t nq() const { return b * s * hq * d; }
  int64_t nkv() const { return b * s * hkv * d; }
  int64_t nlse() const { return b * hq * s; }
  int64_t qi(int64_t bb, int64_t i, int64_t h) const { return ((bb * s + i) * hq + h) * d; }
  int64_t kvi(int64_t bb, int64_t j, int64_t h) const { return ((bb * s + j) * hkv + h) * d; }
  int64_t kvh(int64_t h) const { return h / (hq / hkv); }
  bool allowed(int64_t i, int64_t j) const {
    return (!causal || j <= i) && (window <= 0 || j > i - window);
  }
};

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
std::vector<double> widen(const std::vector<T> &v, size_t n) {
  std::vector<double> out(n);
  for (size_t i = 0; i < n; i++) out[i] = (double)to_f32(v[i]);
  return out;
}

double rb(double x) { return (double)bf16_bits_to_f32(f32_to_bf16_bits((float)x)); }

/* The backward's workspace, sized by moe4j_cpu_attention_backward_workspace_bytes. */
struct Workspace {
  std::vector<float> buf;
  int64_t bytes = 0;
  Workspace(int64_t b, int64_t s, int64_t hq, int64_t d) {
    CHECK_STATUS(moe4j_cpu_attention_backward_workspace_bytes(b, s, hq, d, &bytes), MOE4J_OK);
    buf.assign(bytes / 4 + 1, 0.0f);
  }
  float *ptr() { return bytes == 0 ? nullptr : buf.data(); }
};

/* fp64 reference: materialized P [B, Hq, S, S], out, lse. */
struct Fwd {
  std::vector<double> p, out, lse;
};

Fwd ref_forward(const Shape &sh, const std::vector<double> &q, const std::vector<double> &k,
                const std::vector<double> &v) {
  Fwd f;
  f.p.assign(sh.b * sh.hq * sh.s * sh.s, 0.0);
  f.out.assign(sh.nq(), 0.0);
  f.lse.assign(sh.nlse(), 0.0);
  std::vector<double> sc(sh.s);
  for (int64_t b = 0; b < sh.b; b++)
    for (int64_t h = 0; h < sh.hq; h++)
      for (int64_t i = 0; i < sh.s; i++) {
        double mx = -INFINITY;
        for (int64_t j = 0; j < sh.s; j++) {
          sc[j] = -INFINITY;
          if (!sh.allowed(i, j)) continue;
          double dot = 0;
          for (int64_t d = 0; d < sh.d; d++)
            dot += q[sh.qi(b, i, h) + d] * k[sh.kvi(b, j, sh.kvh(h)) + d];
          sc[j] = (double)sh.scale * dot;
          mx = sc[j] > mx ? sc[j] : mx;
        }
        double sum = 0;
        for (int64_t j = 0; j < sh.s; j++) sum += sh.allowed(i, j) ? exp(sc[j] - mx) : 0.0;
        double *p = &f.p[((b * sh.hq + h) * sh.s + i) * sh.s];
        for (int64_t j = 0; j < sh.s; j++) p[j] = sh.allowed(i, j) ? exp(sc[j] - mx) / sum : 0.0;
        f.lse[(b * sh.hq + h) * sh.s + i] = mx + log(sum);
        for (int64_t j = 0; j < sh.s; j++)
          for (int64_t d = 0; d < sh.d; d++)
            f.out[sh.qi(b, i, h) + d] += p[j] * v[sh.kvi(b, j, sh.kvh(h)) + d];
      }
  return f;
}

struct Grads {
  std::vector<double> dq, dk, dv;
};

/* fp64 reference gradients from the materialized P; `round` (bf16 naive version) rounds dP, dS
 * and the gradients to bf16 like an implementation that materializes them in bf16, with Di from
 * its own (bf16) out. */
Grads ref_backward(const Shape &sh, const std::vector<double> &q, const std::vector<double> &k,
                   const std::vector<double> &v, const std::vector<double> &p,
                   const std::vector<double> &out, const std::vector<double> &dout, bool round) {
  auto r = [&](double x) { return round ? rb(x) : x; };
  Grads g;
  g.dq.assign(sh.nq(), 0.0);
  g.dk.assign(sh.nkv(), 0.0);
  g.dv.assign(sh.nkv(), 0.0);
  std::vector<double> ds(sh.s);
  for (int64_t b = 0; b < sh.b; b++)
    for (int64_t h = 0; h < sh.hq; h++)
      for (int64_t i = 0; i < sh.s; i++) {
        const int64_t qo = sh.qi(b, i, h);
        const double *pr = &p[((b * sh.hq + h) * sh.s + i) * sh.s];
        double di = 0;
        for (int64_t d = 0; d < sh.d; d++) di += dout[qo + d] * out[qo + d];
        if (round) di = (double)(float)di;
        for (int64_t j = 0; j < sh.s; j++) {
          const int64_t ko = sh.kvi(b, j, sh.kvh(h));
          double dp = 0;
          for (int64_t d = 0; d < sh.d; d++) dp += dout[qo + d] * v[ko + d];
          ds[j] = r(pr[j] * (r(dp) - di));
          for (int64_t d = 0; d < sh.d; d++) g.dv[ko + d] += pr[j] * dout[qo + d];
          for (int64_t d = 0; d < sh.d; d++) g.dk[ko + d] += sh.scale * ds[j] * q[qo + d];
          for (int64_t d = 0; d < sh.d; d++) g.dq[qo + d] += sh.scale * ds[j] * k[ko + d];
        }
      }
  if (round) {
    for (auto *t : {&g.dq, &g.dk, &g.dv})
      for (double &x : *t) x = rb(x);
  }
  return g;
}

/* Naive bf16 forward: S = scale Q K^T rounded to bf16, softmax in f32, P rounded to bf16,
 * out = P V accumulated in f32, rounded to bf16. */
Fwd naive_bf16_forward(const Shape &sh, const std::vector<double> &q, const std::vector<double> &k,
                       const std::vector<double> &v) {
  Fwd f;
  f.p.assign(sh.b * sh.hq * sh.s * sh.s, 0.0);
  f.out.assign(sh.nq(), 0.0);
  std::vector<float> sc(sh.s);
  for (int64_t b = 0; b < sh.b; b++)
    for (int64_t h = 0; h < sh.hq; h++)
      for (int64_t i = 0; i < sh.s; i++) {
        float mx = -INFINITY;
        for (int64_t j = 0; j < sh.s; j++) {
          sc[j] = -INFINITY;
          if (!sh.allowed(i, j)) continue;
          float dot = 0;
          for (int64_t d = 0; d < sh.d; d++)
            dot += (float)q[sh.qi(b, i, h) + d] * (float)k[sh.kvi(b, j, sh.kvh(h)) + d];
          sc[j] = (float)rb(sh.scale * dot);
          mx = fmaxf(mx, sc[j]);
        }
        float sum = 0;
        for (int64_t j = 0; j < sh.s; j++) sum += sh.allowed(i, j) ? expf(sc[j] - mx) : 0.0f;
        double *p = &f.p[((b * sh.hq + h) * sh.s + i) * sh.s];
        for (int64_t j = 0; j < sh.s; j++) p[j] = sh.allowed(i, j) ? rb(expf(sc[j] - mx) / sum) : 0.0;
        for (int64_t d = 0; d < sh.d; d++) {
          float acc = 0;
          for (int64_t j = 0; j < sh.s; j++)
            acc += (float)p[j] * (float)v[sh.kvi(b, j, sh.kvh(h)) + d];
          f.out[sh.qi(b, i, h) + d] = rb(acc);
        }
      }
  return f;
}

double max_abs(const std::vector<double> &x) {
  double m = 0;
  for (double e : x) m = fabs(e) > m ? fabs(e) : m;
  return m;
}

template <typename T>
double max_err(const std::vector<T> &got, const std::vector<double> &ref) {
  double m = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    const double e = fabs((double)to_f32(got[i]) - ref[i]);
    if (!(e <= m)) m = e;
  }
  return m;
}

double max_err(const std::vector<double> &got, const std::vector<double> &ref) {
  double m = 0;
  for (size_t i = 0; i < ref.size(); i++) m = fmax(m, fabs(got[i] - ref[i]));
  return m;
}

void report(int line, const Shape &sh, int32_t dt, const char *what, double err, double tol) {
  char msg[300];
  snprintf(msg, sizeof msg,
           "%s dtype=%d B=%lld S=%lld Hq=%lld Hkv=%lld D=%lld causal=%d window=%lld: err %.3g > tol %.3g",
           what, dt, (long long)sh.b, (long long)sh.s, (long long)sh.hq, (long long)sh.hkv,
           (long long)sh.d, sh.causal, (long long)sh.window, err, tol);
  check::report(__FILE__, line, msg);
}

#define EXPECT_ERR(what, err, tol)                                  \
  do {                                                              \
    const double e_ = (err), t_ = (tol);                            \
    if (!(e_ <= t_)) report(__LINE__, sh, dt, what, e_, t_);        \
  } while (0)

constexpr float kSentinel = 768.0f; /* exact in bf16 */

/* Runs forward and backward on random data and checks them against the references. */
template <typename T>
void check_case(const Shape &sh, uint64_t seed) {
  const int32_t dt = dtype_code<T>();
  const int64_t nq = sh.nq(), nkv = sh.nkv(), nl = sh.nlse();
  auto q = convert<T>(check::randn(nq + 1, seed, 1.5f));
  auto k = convert<T>(check::randn(nkv + 1, seed + 1));
  auto v = convert<T>(check::randn(nkv + 1, seed + 2));
  auto dout = convert<T>(check::randn(nq + 1, seed + 3));
  const auto qd = widen(q, nq), kd = widen(k, nkv), vd = widen(v, nkv), gd = widen(dout, nq);
  std::vector<T> out(nq + 1, from_f32<T>(kSentinel));
  std::vector<float> lse(nl + 1, kSentinel);
  CHECK_STATUS(moe4j_cpu_attention_forward(dt, q.data(), k.data(), v.data(), out.data(),
                                           lse.data(), nullptr, sh.b, sh.s, sh.hq, sh.hkv, sh.d,
                                           sh.causal, sh.window, sh.scale),
               MOE4J_OK);
  CHECK(to_f32(out[nq]) == kSentinel && lse[nl] == kSentinel);
  const Fwd ref = ref_forward(sh, qd, kd, vd);
  const double out_max = fmax(max_abs(ref.out), 1e-3);
  double lse_err = 0;
  for (int64_t i = 0; i < nl; i++)
    lse_err = fmax(lse_err, fabs(lse[i] - ref.lse[i]) / (1.0 + fabs(ref.lse[i])));
  EXPECT_ERR("lse (relative)", lse_err, 1e-5);
  const double out_err = max_err(out, ref.out);

  std::vector<T> dq(nq + 1, from_f32<T>(kSentinel)), dk(nkv + 1, from_f32<T>(kSentinel)),
      dv(nkv + 1, from_f32<T>(kSentinel));
  Workspace ws(sh.b, sh.s, sh.hq, sh.d);
  CHECK_STATUS(moe4j_cpu_attention_backward(dt, q.data(), k.data(), v.data(), out.data(),
                                            dout.data(), lse.data(), dq.data(), dk.data(),
                                            dv.data(), nullptr, sh.b, sh.s, sh.hq, sh.hkv, sh.d,
                                            sh.causal, sh.window, sh.scale, ws.ptr(), ws.bytes),
               MOE4J_OK);
  CHECK(to_f32(dq[nq]) == kSentinel && to_f32(dk[nkv]) == kSentinel &&
        to_f32(dv[nkv]) == kSentinel);
  const Grads g = ref_backward(sh, qd, kd, vd, ref.p, ref.out, gd, false);
  const double dq_err = max_err(dq, g.dq), dk_err = max_err(dk, g.dk), dv_err = max_err(dv, g.dv);
  const double dq_max = fmax(max_abs(g.dq), 1e-3), dk_max = fmax(max_abs(g.dk), 1e-3),
               dv_max = fmax(max_abs(g.dv), 1e-3);
  if (dt == MOE4J_DTYPE_F32) {
    /* f32 accumulation over <= 130 keys and <= 128 dims: ~1e-6 relative to the largest value */
    EXPECT_ERR("out", out_err, 1e-5 * out_max);
    EXPECT_ERR("dq", dq_err, 5e-5 * dq_max);
    EXPECT_ERR("dk", dk_err, 5e-5 * dk_max);
    EXPECT_ERR("dv", dv_err, 5e-5 * dv_max);
  } else {
    const Fwd naive = naive_bf16_forward(sh, qd, kd, vd);
    const Grads ng = ref_backward(sh, qd, kd, vd, naive.p, naive.out, gd, true);
    /* the floor (f32 noise) only matters where the naive version happens to be exact */
    EXPECT_ERR("out vs 2x naive bf16", out_err, 2 * max_err(naive.out, ref.out) + 1e-6 * out_max);
    EXPECT_ERR("dq vs 3x naive bf16", dq_err, 3 * max_err(ng.dq, g.dq) + 1e-5 * dq_max);
    EXPECT_ERR("dk vs 3x naive bf16", dk_err, 3 * max_err(ng.dk, g.dk) + 1e-5 * dk_max);
    EXPECT_ERR("dv vs 3x naive bf16", dv_err, 3 * max_err(ng.dv, g.dv) + 1e-5 * dv_max);
  }
}

}  // namespace

TEST_CASE(forward_and_backward_match_fp64_all_shapes) {
  const int64_t seqs[] = {1, 7, 65, 130};
  const int64_t windows[] = {0, 1, 2, 5, 66, 1000}; /* 2, 66: window edges on tile edges */
  const int64_t dims[] = {2, 64, 6, 128};
  const int64_t heads[][2] = {{2, 2}, {8, 2}, {4, 1}}; /* MHA, GQA (Hq = 4 Hkv), MQA */
  int idx = 0;
  for (int64_t s : seqs)
    for (int32_t causal : {0, 1})
      for (int64_t window : windows) {
        const int64_t d = dims[idx % 4];
        const int64_t *hh = heads[idx % 3];
        const int64_t b = 1 + idx % 2;
        const Shape sh{b, s, hh[0], hh[1], d, causal, window, 1.0f / sqrtf((float)d)};
        check_case<float>(sh, 1000 + idx);
        check_case<bf16_t>(sh, 2000 + idx);
        idx++;
      }
}

TEST_CASE(large_scores_stay_finite_and_accurate) {
  /* scale 1 with |q|, |k| ~ 1.5, 1 and D = 64: scores of tens, exp would overflow without the max */
  const Shape sh{1, 70, 2, 1, 64, 1, 0, 1.0f};
  check_case<float>(sh, 7);
  check_case<bf16_t>(sh, 8);
}

TEST_CASE(gradients_match_fp64_central_differences) {
  for (int32_t causal : {0, 1})
    for (int64_t window : {0, 2}) {
      const Shape sh{1, 5, 2, 1, 4, causal, window, 0.5f};
      const int64_t nq = sh.nq(), nkv = sh.nkv();
      const auto q = check::randn(nq, 11), k = check::randn(nkv, 12), v = check::randn(nkv, 13),
                 w = check::randn(nq, 14);
      std::vector<float> out(nq), lse(sh.nlse()), dq(nq), dk(nkv), dv(nkv);
      CHECK_STATUS(moe4j_cpu_attention_forward(MOE4J_DTYPE_F32, q.data(), k.data(), v.data(),
                                               out.data(), lse.data(), nullptr, sh.b, sh.s, sh.hq,
                                               sh.hkv, sh.d, sh.causal, sh.window, sh.scale),
                   MOE4J_OK);
      Workspace ws(sh.b, sh.s, sh.hq, sh.d);
      CHECK_STATUS(moe4j_cpu_attention_backward(MOE4J_DTYPE_F32, q.data(), k.data(), v.data(),
                                                out.data(), w.data(), lse.data(), dq.data(),
                                                dk.data(), dv.data(), nullptr, sh.b, sh.s, sh.hq,
                                                sh.hkv, sh.d, sh.causal, sh.window, sh.scale,
                                                ws.ptr(), ws.bytes),
                   MOE4J_OK);
      /* L = Σ out * w in fp64; h = 1e-4: truncation ~1e-8 */
      std::vector<double> x[3] = {std::vector<double>(q.begin(), q.end()),
                                  std::vector<double>(k.begin(), k.end()),
                                  std::vector<double>(v.begin(), v.end())};
      auto loss = [&]() {
        const Fwd f = ref_forward(sh, x[0], x[1], x[2]);
        double l = 0;
        for (int64_t i = 0; i < nq; i++) l += f.out[i] * w[i];
        return l;
      };
      const std::vector<float> *grads[3] = {&dq, &dk, &dv};
      const double h = 1e-4;
      for (int t = 0; t < 3; t++)
        for (size_t i = 0; i < x[t].size(); i++) {
          const double keep = x[t][i];
          x[t][i] = keep + h;
          const double up = loss();
          x[t][i] = keep - h;
          const double down = loss();
          x[t][i] = keep;
          CHECK_CLOSE((*grads[t])[i], (up - down) / (2 * h), 1e-5 + 1e-5 * fabs((up - down) / (2 * h)));
        }
    }
}

template <typename T>
static void determinism_case(int32_t causal, int64_t window) {
  const int32_t dt = dtype_code<T>();
  const Shape sh{2, 200, 4, 2, 64, causal, window, 0.125f};
  const int64_t nq = sh.nq(), nkv = sh.nkv(), nl = sh.nlse();
  const auto q = convert<T>(check::randn(nq, 21)), k = convert<T>(check::randn(nkv, 22)),
             v = convert<T>(check::randn(nkv, 23)), g = convert<T>(check::randn(nq, 24));
  struct Result {
    std::vector<T> out, dq, dk, dv;
    std::vector<float> lse;
  };
  auto run = [&](int threads) {
    Result r{std::vector<T>(nq), std::vector<T>(nq), std::vector<T>(nkv), std::vector<T>(nkv),
             std::vector<float>(nl)};
    const int keep = omp_get_max_threads();
    omp_set_num_threads(threads);
    CHECK_STATUS(moe4j_cpu_attention_forward(dt, q.data(), k.data(), v.data(), r.out.data(),
                                             r.lse.data(), nullptr, sh.b, sh.s, sh.hq, sh.hkv,
                                             sh.d, sh.causal, sh.window, sh.scale),
                 MOE4J_OK);
    Workspace ws(sh.b, sh.s, sh.hq, sh.d);
    CHECK_STATUS(moe4j_cpu_attention_backward(dt, q.data(), k.data(), v.data(), r.out.data(),
                                              g.data(), r.lse.data(), r.dq.data(), r.dk.data(),
                                              r.dv.data(), nullptr, sh.b, sh.s, sh.hq, sh.hkv,
                                              sh.d, sh.causal, sh.window, sh.scale, ws.ptr(),
                                              ws.bytes),
                 MOE4J_OK);
    omp_set_num_threads(keep);
    return r;
  };
  const Result a = run(1), b = run(2), c = run(omp_get_max_threads() > 3 ? 3 : 2);
  for (const Result *o : {&b, &c}) {
    CHECK(memcmp(a.out.data(), o->out.data(), nq * sizeof(T)) == 0);
    CHECK(memcmp(a.lse.data(), o->lse.data(), nl * 4) == 0);
    CHECK(memcmp(a.dq.data(), o->dq.data(), nq * sizeof(T)) == 0);
    CHECK(memcmp(a.dk.data(), o->dk.data(), nkv * sizeof(T)) == 0);
    CHECK(memcmp(a.dv.data(), o->dv.data(), nkv * sizeof(T)) == 0);
  }
}

TEST_CASE(results_are_bitwise_identical_for_any_thread_count) {
  determinism_case<float>(1, 0);
  determinism_case<float>(0, 70);
  determinism_case<bf16_t>(1, 100);
}

TEST_CASE(bad_arguments_are_reported_before_any_write) {
  const int64_t B = 1, S = 3, Hq = 4, Hkv = 2, D = 4;
  const int64_t nq = B * S * Hq * D, nkv = B * S * Hkv * D;
  std::vector<float> q(nq, 0.5f), k(nkv, 0.5f), v(nkv, 0.5f), out(nq, 9.0f), lse(B * Hq * S, 9.0f);
  std::vector<float> dout(nq, 1.0f), dq(nq, 9.0f), dk(nkv, 9.0f), dv(nkv, 9.0f);
  const int32_t F32 = MOE4J_DTYPE_F32, INV = MOE4J_ERR_INVALID_ARGUMENT;
  auto fwd = [&](int32_t dtype, const void *qp, void *op, float *lp, int64_t b, int64_t s,
                 int64_t hq, int64_t hkv, int64_t d, float scale) {
    return moe4j_cpu_attention_forward(dtype, qp, k.data(), v.data(), op, lp, nullptr, b, s, hq,
                                       hkv, d, 1, 0, scale);
  };
  float *O = out.data(), *L = lse.data();
  const float *Q = q.data();
  CHECK_FAILS(fwd(MOE4J_DTYPE_F16, Q, O, L, B, S, Hq, Hkv, D, 0.5f), MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16, got F16");
  CHECK_FAILS(fwd(F32, Q, O, L, -1, S, Hq, Hkv, D, 0.5f), INV, "batch must be >= 0, got -1");
  CHECK_FAILS(fwd(F32, Q, O, L, B, -3, Hq, Hkv, D, 0.5f), INV, "seq must be >= 0, got -3");
  CHECK_FAILS(fwd(F32, Q, O, L, B, S, 0, Hkv, D, 0.5f), INV, "q_heads must be >= 1, got 0");
  CHECK_FAILS(fwd(F32, Q, O, L, B, S, Hq, 0, D, 0.5f), INV, "kv_heads must be >= 1, got 0");
  CHECK_FAILS(fwd(F32, Q, O, L, B, S, 6, 4, D, 0.5f), INV, "q_heads (6) must be a multiple of kv_heads (4)");
  CHECK_FAILS(fwd(F32, Q, O, L, B, S, Hq, Hkv, 3, 0.5f), INV, "head_dim must be even and in [2, 256], got 3");
  CHECK_FAILS(fwd(F32, Q, O, L, B, S, Hq, Hkv, 0, 0.5f), INV, "head_dim must be even");
  CHECK_FAILS(fwd(F32, Q, O, L, B, S, Hq, Hkv, 258, 0.5f), INV, "got 258");
  CHECK_FAILS(fwd(F32, Q, O, L, B, S, Hq, Hkv, D, 0.0f), INV, "scale must be finite and > 0");
  CHECK_FAILS(fwd(F32, Q, O, L, B, S, Hq, Hkv, D, NAN), INV, "scale must be finite and > 0");
  CHECK_FAILS(fwd(F32, Q, O, L, INT64_MAX / 2, 4, Hq, Hkv, D, 0.5f), INV, "batch * seq");
  CHECK_FAILS(fwd(F32, Q, O, L, int64_t(1) << 40, int64_t(1) << 18, Hq, Hkv, D, 0.5f), INV, "overflows int64");
  CHECK_FAILS(fwd(F32, nullptr, O, L, B, S, Hq, Hkv, D, 0.5f), INV, "q is NULL");
  CHECK_FAILS(fwd(F32, Q, nullptr, L, B, S, Hq, Hkv, D, 0.5f), INV, "out is NULL");
  CHECK_FAILS(fwd(F32, Q, O, nullptr, B, S, Hq, Hkv, D, 0.5f), INV, "lse is NULL");
  CHECK_FAILS(moe4j_cpu_attention_forward(F32, Q, nullptr, v.data(), O, L, nullptr, B, S, Hq, Hkv, D, 0, 0, 0.5f), INV, "k is NULL");
  CHECK_FAILS(moe4j_cpu_attention_forward(F32, Q, k.data(), nullptr, O, L, nullptr, B, S, Hq, Hkv, D, 0, 0, 0.5f), INV, "v is NULL");
  CHECK_FAILS(fwd(F32, (const char *)Q + 2, O, L, B, S, Hq, Hkv, D, 0.5f), INV, "q (address");
  CHECK_FAILS(fwd(F32, Q, (float *)q.data() + 1, L, B, S, Hq, Hkv, D, 0.5f), INV, "out and q overlap");
  CHECK_FAILS(moe4j_cpu_attention_forward(F32, Q, k.data(), v.data(), O, k.data(), nullptr, B, S, Hq, Hkv, D, 0, 0, 0.5f), INV, "lse and k overlap");
  CHECK_FAILS(fwd(F32, Q, O, O + 4, B, S, Hq, Hkv, D, 0.5f), INV, "out and lse overlap");
  for (float x : out) CHECK(x == 9.0f);
  for (float x : lse) CHECK(x == 9.0f);

  Workspace ws(B, S, Hq, D);
  auto bwd = [&](int32_t dtype, const void *o, const float *l, void *gq, void *gk, void *gv,
                 int64_t hq, int64_t hkv, int64_t d, float scale) {
    return moe4j_cpu_attention_backward(dtype, Q, k.data(), v.data(), o, dout.data(), l, gq, gk,
                                        gv, nullptr, B, S, hq, hkv, d, 0, 5, scale, ws.ptr(),
                                        ws.bytes);
  };
  float *GQ = dq.data(), *GK = dk.data(), *GV = dv.data();
  CHECK_FAILS(bwd(MOE4J_DTYPE_I32, O, L, GQ, GK, GV, Hq, Hkv, D, 0.5f), MOE4J_ERR_UNSUPPORTED, "dtype");
  CHECK_FAILS(bwd(F32, O, L, GQ, GK, GV, 3, 2, D, 0.5f), INV, "q_heads (3) must be a multiple of kv_heads (2)");
  CHECK_FAILS(bwd(F32, O, L, GQ, GK, GV, Hq, Hkv, 7, 0.5f), INV, "head_dim must be even");
  CHECK_FAILS(bwd(F32, O, L, GQ, GK, GV, Hq, Hkv, D, -1.0f), INV, "scale must be finite and > 0");
  CHECK_FAILS(bwd(F32, nullptr, L, GQ, GK, GV, Hq, Hkv, D, 0.5f), INV, "out is NULL");
  CHECK_FAILS(bwd(F32, O, nullptr, GQ, GK, GV, Hq, Hkv, D, 0.5f), INV, "lse is NULL");
  CHECK_FAILS(bwd(F32, O, L, nullptr, GK, GV, Hq, Hkv, D, 0.5f), INV, "dq is NULL");
  CHECK_FAILS(bwd(F32, O, L, GQ, nullptr, GV, Hq, Hkv, D, 0.5f), INV, "dk is NULL");
  CHECK_FAILS(bwd(F32, O, L, GQ, GK, nullptr, Hq, Hkv, D, 0.5f), INV, "dv is NULL");
  CHECK_FAILS(moe4j_cpu_attention_backward(F32, Q, k.data(), v.data(), O, nullptr, L, GQ, GK, GV, nullptr, B, S, Hq, Hkv, D, 0, 0, 0.5f, ws.ptr(), ws.bytes), INV, "dout is NULL");
  CHECK_FAILS(bwd(MOE4J_DTYPE_BF16, O, L, (char *)GQ + 1, GK, GV, Hq, Hkv, D, 0.5f), INV, "dq (address");
  CHECK_FAILS(bwd(F32, O, L, (float *)Q, GK, GV, Hq, Hkv, D, 0.5f), INV, "dq and q overlap");
  CHECK_FAILS(bwd(F32, O, L, GQ, O + 8, GV, Hq, Hkv, D, 0.5f), INV, "dk and out overlap");
  CHECK_FAILS(bwd(F32, O, L, GQ, GK, (float *)dout.data(), Hq, Hkv, D, 0.5f), INV, "dv and dout overlap");
  CHECK_FAILS(bwd(F32, O, L, GQ, GK, GK + 4, Hq, Hkv, D, 0.5f), INV, "dk and dv overlap");
  CHECK_FAILS(bwd(F32, O, L, GQ, GK, (float *)L, Hq, Hkv, D, 0.5f), INV, "dv and lse overlap");
  for (float x : dq) CHECK(x == 9.0f);
  for (float x : dk) CHECK(x == 9.0f);
  for (float x : dv) CHECK(x == 9.0f);
  /* empty calls with NULL buffers succeed and clear the message */
  CHECK_STATUS(moe4j_cpu_attention_forward(F32, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, S, Hq, Hkv, D, 1, 0, 0.5f), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_attention_backward(F32, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, B, 0, Hq, Hkv, D, 1, 0, 0.5f, nullptr, 0), MOE4J_OK);
  CHECK(moe4j_last_error()[0] == '\0');
  /* any window value is accepted (<= 0: none) */
  CHECK_STATUS(moe4j_cpu_attention_forward(F32, Q, k.data(), v.data(), O, L, nullptr, B, S, Hq, Hkv, D, 0, INT64_MIN, 0.5f), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_attention_forward(F32, Q, k.data(), v.data(), O, L, nullptr, B, S, Hq, Hkv, D, 1, INT64_MAX, 0.5f), MOE4J_OK);
}

TEST_MAIN("attention")
