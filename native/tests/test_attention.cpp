/*
 * Flash attention (CPU twin) against a naive fp64 reference with a materialized softmax (plain
 * loops, written here): sequence lengths that are not multiples of the tiles (1, 7, 65, 130),
 * MHA / GQA (Hq = 4 Hkv) / MQA, causal or not, sliding windows (1, 2, 5, 66, > S), head_dim 2, 6, 64,
 * 128; lse checked; bf16 by the FlashAttention rule (error vs fp64 at most 2x that of a naive bf16
 * implementation that materializes P in bf16, 3x for gradients); gradients vs fp64 central
 * differences; bitwise determinism across thread counts; guard elements; bad arguments.
 *
 * Packed variable-length batches (cu_seqlens): the fp64 reference runs each sequence alone (its
 * own positions, mask and window; it cannot see another sequence), the kernel the packed batch —
 * lengths {1, 0, 17, 64, 130} (a single token, an empty sequence, a tile edge, a tile remainder),
 * causal and not, windows 0 and 5, Hq = Hkv and Hq = 4 Hkv, D = 64 and 40; forward, lse and
 * gradients; equal lengths reproduce the uniform layout bit for bit; bad cu_seqlens and
 * workspaces are rejected with a message before any write.
 *
 * Forward tile kernels (cpu_attention_kernels.h): the vectorized exp against double exp, and the
 * AVX-512 and portable variants (MOE4J_CPU_ATTN_VARIANT=portable) bitwise equal (forward and
 * backward) on uniform and varlen batches, f32 and bf16, head_dim 40 (column tail), 64 and 128.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <utility>

#include "attention_tiles.h"
#include "check.h"
#include "cpu_attention_kernels.h"
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

/* A packed batch: offsets c[0..B] of sequences of the given lengths. */
std::vector<int32_t> offsets(const std::vector<int64_t> &lengths) {
  std::vector<int32_t> c(lengths.size() + 1, 0);
  for (size_t b = 0; b < lengths.size(); b++) c[b + 1] = c[b] + (int32_t)lengths[b];
  return c;
}

/* Rows [start, start + len) of a [T, heads * d] tensor. */
std::vector<double> rows(const std::vector<double> &x, int64_t start, int64_t len, int64_t width) {
  return std::vector<double>(x.begin() + start * width, x.begin() + (start + len) * width);
}

void put_rows(std::vector<double> &dst, const std::vector<double> &src, int64_t start,
              int64_t width) {
  std::copy(src.begin(), src.end(), dst.begin() + start * width);
}

/* Runs a varlen batch (forward, backward) and checks it against the per-sequence fp64 reference
 * (and, for bf16, the naive bf16 rule of check_case). */
template <typename T>
void check_varlen_case(const std::vector<int64_t> &lengths, int64_t hq, int64_t hkv, int64_t d,
                       int32_t causal, int64_t window, uint64_t seed) {
  const int32_t dt = dtype_code<T>();
  const std::vector<int32_t> cu = offsets(lengths);
  const int64_t B = (int64_t)lengths.size(), tokens = cu[B];
  const float scale = 1.0f / sqrtf((float)d);
  /* for the messages: b = sequences, s = T */
  const Shape sh{B, tokens, hq, hkv, d, causal, window, scale};
  const int64_t nq = tokens * hq * d, nkv = tokens * hkv * d, nl = hq * tokens;
  auto q = convert<T>(check::randn(nq + 1, seed, 1.5f));
  auto k = convert<T>(check::randn(nkv + 1, seed + 1));
  auto v = convert<T>(check::randn(nkv + 1, seed + 2));
  auto dout = convert<T>(check::randn(nq + 1, seed + 3));
  const auto qd = widen(q, nq), kd = widen(k, nkv), vd = widen(v, nkv), gd = widen(dout, nq);
  std::vector<T> out(nq + 1, from_f32<T>(kSentinel));
  std::vector<float> lse(nl + 1, kSentinel);
  CHECK_STATUS(moe4j_cpu_attention_forward(dt, q.data(), k.data(), v.data(), out.data(),
                                           lse.data(), cu.data(), B, tokens, hq, hkv, d, causal,
                                           window, scale),
               MOE4J_OK);
  std::vector<T> dq(nq + 1, from_f32<T>(kSentinel)), dk(nkv + 1, from_f32<T>(kSentinel)),
      dv(nkv + 1, from_f32<T>(kSentinel));
  Workspace ws(1, tokens, hq, d); /* the exact need of a varlen batch */
  CHECK_STATUS(moe4j_cpu_attention_backward(dt, q.data(), k.data(), v.data(), out.data(),
                                            dout.data(), lse.data(), dq.data(), dk.data(),
                                            dv.data(), cu.data(), B, tokens, hq, hkv, d, causal,
                                            window, scale, ws.ptr(), ws.bytes),
               MOE4J_OK);
  CHECK(to_f32(out[nq]) == kSentinel && lse[nl] == kSentinel && to_f32(dq[nq]) == kSentinel &&
        to_f32(dk[nkv]) == kSentinel && to_f32(dv[nkv]) == kSentinel);

  /* the references, assembled sequence by sequence */
  std::vector<double> r_out(nq), r_lse(nl), r_dq(nq), r_dk(nkv), r_dv(nkv);
  std::vector<double> n_out(nq), n_dq(nq), n_dk(nkv), n_dv(nkv);
  for (int64_t b = 0; b < B; b++) {
    const int64_t start = cu[b], len = lengths[b];
    if (len == 0) continue;
    const Shape one{1, len, hq, hkv, d, causal, window, scale};
    const auto qb = rows(qd, start, len, hq * d), kb = rows(kd, start, len, hkv * d),
               vb = rows(vd, start, len, hkv * d), gb = rows(gd, start, len, hq * d);
    const Fwd f = ref_forward(one, qb, kb, vb);
    const Grads g = ref_backward(one, qb, kb, vb, f.p, f.out, gb, false);
    put_rows(r_out, f.out, start, hq * d);
    put_rows(r_dq, g.dq, start, hq * d);
    put_rows(r_dk, g.dk, start, hkv * d);
    put_rows(r_dv, g.dv, start, hkv * d);
    for (int64_t h = 0; h < hq; h++)
      for (int64_t i = 0; i < len; i++) r_lse[h * tokens + start + i] = f.lse[h * len + i];
    if (dt == MOE4J_DTYPE_BF16) {
      const Fwd nf = naive_bf16_forward(one, qb, kb, vb);
      const Grads ng = ref_backward(one, qb, kb, vb, nf.p, nf.out, gb, true);
      put_rows(n_out, nf.out, start, hq * d);
      put_rows(n_dq, ng.dq, start, hq * d);
      put_rows(n_dk, ng.dk, start, hkv * d);
      put_rows(n_dv, ng.dv, start, hkv * d);
    }
  }
  double lse_err = 0;
  for (int64_t i = 0; i < nl; i++)
    lse_err = fmax(lse_err, fabs(lse[i] - r_lse[i]) / (1.0 + fabs(r_lse[i])));
  EXPECT_ERR("varlen lse (relative)", lse_err, 1e-5);
  const double out_max = fmax(max_abs(r_out), 1e-3), dq_max = fmax(max_abs(r_dq), 1e-3),
               dk_max = fmax(max_abs(r_dk), 1e-3), dv_max = fmax(max_abs(r_dv), 1e-3);
  const double out_err = max_err(out, r_out), dq_err = max_err(dq, r_dq),
               dk_err = max_err(dk, r_dk), dv_err = max_err(dv, r_dv);
  if (dt == MOE4J_DTYPE_F32) {
    EXPECT_ERR("varlen out", out_err, 1e-5 * out_max);
    EXPECT_ERR("varlen dq", dq_err, 5e-5 * dq_max);
    EXPECT_ERR("varlen dk", dk_err, 5e-5 * dk_max);
    EXPECT_ERR("varlen dv", dv_err, 5e-5 * dv_max);
  } else {
    EXPECT_ERR("varlen out vs 2x naive bf16", out_err, 2 * max_err(n_out, r_out) + 1e-6 * out_max);
    EXPECT_ERR("varlen dq vs 3x naive bf16", dq_err, 3 * max_err(n_dq, r_dq) + 1e-5 * dq_max);
    EXPECT_ERR("varlen dk vs 3x naive bf16", dk_err, 3 * max_err(n_dk, r_dk) + 1e-5 * dk_max);
    EXPECT_ERR("varlen dv vs 3x naive bf16", dv_err, 3 * max_err(n_dv, r_dv) + 1e-5 * dv_max);
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

TEST_CASE(varlen_batches_match_fp64_per_sequence) {
  const std::vector<int64_t> lengths = {1, 0, 17, 64, 130};
  const int64_t heads[][2] = {{2, 2}, {8, 2}}; /* Hq = Hkv, Hq = 4 Hkv */
  uint64_t seed = 5000;
  for (int32_t causal : {0, 1})
    for (int64_t window : {0, 5})
      for (auto &hh : heads)
        for (int64_t d : {64, 40}) {
          check_varlen_case<float>(lengths, hh[0], hh[1], d, causal, window, seed);
          seed += 10;
        }
  /* bf16 on a few: the same layout code, the dtype only changes loads and stores */
  check_varlen_case<bf16_t>(lengths, 8, 2, 64, 1, 0, 6000);
  check_varlen_case<bf16_t>(lengths, 2, 2, 40, 0, 5, 6010);
  /* empty sequences at both ends and in a row; a sequence that fills exactly one tile */
  check_varlen_case<float>({0, 0, 64, 0, 3, 0}, 4, 1, 64, 1, 0, 6020);
}

TEST_CASE(varlen_with_equal_lengths_reproduces_the_uniform_layout_bitwise) {
  const int64_t B = 3, S = 70, Hq = 4, Hkv = 2, D = 40, T = B * S;
  const std::vector<int32_t> cu = {0, 70, 140, 210};
  const int64_t nq = T * Hq * D, nkv = T * Hkv * D, nl = Hq * T;
  const auto q = check::randn(nq, 31), k = check::randn(nkv, 32), v = check::randn(nkv, 33),
             g = check::randn(nq, 34);
  for (int32_t causal : {0, 1}) {
    const int64_t window = causal ? 9 : 0;
    std::vector<float> out_u(nq), lse_u(nl), out_v(nq), lse_v(nl);
    std::vector<float> dq_u(nq), dk_u(nkv), dv_u(nkv), dq_v(nq), dk_v(nkv), dv_v(nkv);
    const float F = 0.15f;
    CHECK_STATUS(moe4j_cpu_attention_forward(MOE4J_DTYPE_F32, q.data(), k.data(), v.data(),
                                             out_u.data(), lse_u.data(), nullptr, B, S, Hq, Hkv,
                                             D, causal, window, F), MOE4J_OK);
    CHECK_STATUS(moe4j_cpu_attention_forward(MOE4J_DTYPE_F32, q.data(), k.data(), v.data(),
                                             out_v.data(), lse_v.data(), cu.data(), B, T, Hq, Hkv,
                                             D, causal, window, F), MOE4J_OK);
    Workspace wu(B, S, Hq, D), wv(B, T, Hq, D); /* (B, T): larger than needed, also accepted */
    CHECK_STATUS(moe4j_cpu_attention_backward(MOE4J_DTYPE_F32, q.data(), k.data(), v.data(),
                                              out_u.data(), g.data(), lse_u.data(), dq_u.data(),
                                              dk_u.data(), dv_u.data(), nullptr, B, S, Hq, Hkv, D,
                                              causal, window, F, wu.ptr(), wu.bytes), MOE4J_OK);
    CHECK_STATUS(moe4j_cpu_attention_backward(MOE4J_DTYPE_F32, q.data(), k.data(), v.data(),
                                              out_v.data(), g.data(), lse_v.data(), dq_v.data(),
                                              dk_v.data(), dv_v.data(), cu.data(), B, T, Hq, Hkv,
                                              D, causal, window, F, wv.ptr(), wv.bytes), MOE4J_OK);
    CHECK(memcmp(out_u.data(), out_v.data(), nq * 4) == 0);
    CHECK(memcmp(dq_u.data(), dq_v.data(), nq * 4) == 0);
    CHECK(memcmp(dk_u.data(), dk_v.data(), nkv * 4) == 0);
    CHECK(memcmp(dv_u.data(), dv_v.data(), nkv * 4) == 0);
    /* lse [B, Hq, S] vs [Hq, T] */
    int64_t lse_diff = 0;
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < Hq; h++)
        for (int64_t i = 0; i < S; i++)
          lse_diff += lse_u[(b * Hq + h) * S + i] != lse_v[h * T + b * S + i];
    CHECK(lse_diff == 0);
  }
}

TEST_CASE(varlen_is_bitwise_identical_for_any_thread_count) {
  const std::vector<int64_t> lengths = {130, 0, 1, 66, 9};
  const std::vector<int32_t> cu = offsets(lengths);
  const int64_t B = 5, T = cu[B], Hq = 4, Hkv = 2, D = 64;
  const int64_t nq = T * Hq * D, nkv = T * Hkv * D;
  const auto q = check::randn(nq, 41), k = check::randn(nkv, 42), v = check::randn(nkv, 43),
             g = check::randn(nq, 44);
  auto run = [&](int threads) {
    std::vector<float> r(2 * nq + 2 * nkv + nq + Hq * T);
    float *out = r.data(), *dq = out + nq, *dk = dq + nq, *dv = dk + nkv, *lse = dv + nkv + nq;
    const int keep = omp_get_max_threads();
    omp_set_num_threads(threads);
    Workspace ws(1, T, Hq, D);
    CHECK_STATUS(moe4j_cpu_attention_forward(MOE4J_DTYPE_F32, q.data(), k.data(), v.data(), out,
                                             lse, cu.data(), B, T, Hq, Hkv, D, 1, 50, 0.125f),
                 MOE4J_OK);
    CHECK_STATUS(moe4j_cpu_attention_backward(MOE4J_DTYPE_F32, q.data(), k.data(), v.data(), out,
                                              g.data(), lse, dq, dk, dv, cu.data(), B, T, Hq, Hkv,
                                              D, 1, 50, 0.125f, ws.ptr(), ws.bytes), MOE4J_OK);
    omp_set_num_threads(keep);
    return r;
  };
  const std::vector<float> a = run(1), b = run(2), c = run(3);
  CHECK(memcmp(a.data(), b.data(), a.size() * 4) == 0);
  CHECK(memcmp(a.data(), c.data(), a.size() * 4) == 0);
}

TEST_CASE(varlen_bad_arguments_are_reported_before_any_write) {
  const int64_t T = 5, Hq = 4, Hkv = 2, D = 4;
  const int64_t nq = T * Hq * D, nkv = T * Hkv * D;
  /* lse has room for a whole 256-byte workspace, so using it as one overlaps lse only */
  std::vector<float> q(nq, 0.5f), k(nkv, 0.5f), v(nkv, 0.5f), out(nq, 9.0f), lse(64, 9.0f);
  std::vector<float> dout(nq, 1.0f), dq(nq, 9.0f), dk(nkv, 9.0f), dv(nkv, 9.0f);
  const int32_t F32 = MOE4J_DTYPE_F32, INV = MOE4J_ERR_INVALID_ARGUMENT;
  float *O = out.data(), *L = lse.data();
  auto fwd = [&](const int32_t *cu, int64_t b, int64_t t) {
    return moe4j_cpu_attention_forward(F32, q.data(), k.data(), v.data(), O, L, cu, b, t, Hq, Hkv,
                                       D, 1, 0, 0.5f);
  };
  const int32_t first_not_zero[] = {1, 3, 5}, reversed[] = {0, 4, 2, 5}, short_end[] = {0, 2, 4};
  const int32_t good[] = {0, 2, 5, 5};
  CHECK_FAILS(fwd(first_not_zero, 2, T), INV, "moe4j_cpu_attention_forward: cu_seqlens[0] must be 0, got 1");
  CHECK_FAILS(fwd(reversed, 3, T), INV, "cu_seqlens must be non-decreasing, got cu_seqlens[1] = 4 > cu_seqlens[2] = 2");
  CHECK_FAILS(fwd(short_end, 2, T), INV, "cu_seqlens[batch] (cu_seqlens[2] = 4) must equal seq (5, the packed token count)");
  CHECK_FAILS(fwd(good, 0, T), INV, "cu_seqlens[batch] (cu_seqlens[0] = 0) must equal seq (5");
  CHECK_FAILS(fwd(good, 3, 6), INV, "cu_seqlens[batch] (cu_seqlens[3] = 5) must equal seq (6");
  CHECK_FAILS(fwd((const int32_t *)((const char *)good + 2), 3, T), INV, "cu_seqlens (address");
  CHECK_FAILS(fwd(good, -1, T), INV, "batch must be >= 0, got -1");
  CHECK_FAILS(fwd(good, 3, int64_t(INT32_MAX) + 1), INV, "seq (2147483648, the packed token count) must be <= 2147483647 with cu_seqlens");
  CHECK_FAILS(fwd(good, INT32_MAX, T), INV, "batch (2147483647) must be < 2147483647 with cu_seqlens");
  /* the tensors are [T, H, D]: an lse of [B, Hq, S] size would be B times too large, so a
   * cu_seqlens inside out (or lse) is caught as an overlap */
  CHECK_FAILS(fwd((const int32_t *)O, 3, T), INV, "out and cu_seqlens overlap");
  CHECK_FAILS(fwd((const int32_t *)(L + 4), 3, T), INV, "lse and cu_seqlens overlap");
  for (float x : out) CHECK(x == 9.0f);
  for (float x : lse) CHECK(x == 9.0f);
  /* empty batches: all sequences empty (T = 0) or no sequence at all; NULL tensors are fine */
  const int32_t zeros[] = {0, 0, 0, 0};
  CHECK_STATUS(moe4j_cpu_attention_forward(F32, nullptr, nullptr, nullptr, nullptr, nullptr, zeros, 3, 0, Hq, Hkv, D, 1, 0, 0.5f), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_attention_forward(F32, nullptr, nullptr, nullptr, nullptr, nullptr, zeros, 0, 0, Hq, Hkv, D, 1, 0, 0.5f), MOE4J_OK);
  CHECK_FAILS(moe4j_cpu_attention_forward(F32, nullptr, nullptr, nullptr, nullptr, nullptr, first_not_zero, 0, 0, Hq, Hkv, D, 1, 0, 0.5f), INV, "cu_seqlens[0] must be 0, got 1");

  Workspace ws(1, T, Hq, D);
  CHECK(ws.bytes == 256); /* 4 * 20 rounded up to 256 */
  float *GQ = dq.data(), *GK = dk.data(), *GV = dv.data(), *W = ws.ptr();
  auto bwd = [&](const int32_t *cu, int64_t b, int64_t t, void *w, int64_t wb) {
    return moe4j_cpu_attention_backward(F32, q.data(), k.data(), v.data(), O, dout.data(), L, GQ,
                                        GK, GV, cu, b, t, Hq, Hkv, D, 0, 0, 0.5f, w, wb);
  };
  CHECK_FAILS(bwd(first_not_zero, 2, T, W, 256), INV, "moe4j_cpu_attention_backward: cu_seqlens[0] must be 0, got 1");
  CHECK_FAILS(bwd(reversed, 3, T, W, 256), INV, "cu_seqlens must be non-decreasing");
  CHECK_FAILS(bwd(short_end, 2, T, W, 256), INV, "must equal seq (5");
  CHECK_FAILS(bwd(good, 3, T, W, 255), INV, "workspace_bytes (255) is smaller than the required 256 bytes");
  CHECK_FAILS(bwd(good, 3, T, nullptr, 256), INV, "workspace is NULL");
  CHECK_FAILS(bwd(good, 3, T, (char *)W + 2, 256), INV, "workspace (address");
  CHECK_FAILS(bwd(good, 3, T, GQ + 8, 256), INV, "dq and workspace overlap");
  CHECK_FAILS(bwd(good, 3, T, (void *)q.data(), 256), INV, "workspace and q overlap");
  CHECK_FAILS(bwd(good, 3, T, (void *)L, 256), INV, "workspace and lse overlap");
  CHECK_FAILS(bwd((const int32_t *)GV, 3, T, W, 256), INV, "dv and cu_seqlens overlap");
  /* a uniform batch needs its own size: 2 sequences of 5 tokens, 4 heads: 160 -> 256 bytes */
  CHECK_FAILS(moe4j_cpu_attention_backward(F32, q.data(), k.data(), v.data(), O, dout.data(), L, GQ, GK, GV, nullptr, 1, T, Hq, Hkv, D, 0, 0, 0.5f, W, 0), INV, "workspace_bytes (0) is smaller than the required 256 bytes");
  for (float x : dq) CHECK(x == 9.0f);
  for (float x : dk) CHECK(x == 9.0f);
  for (float x : dv) CHECK(x == 9.0f);
  CHECK_STATUS(moe4j_cpu_attention_backward(F32, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, zeros, 3, 0, Hq, Hkv, D, 1, 0, 0.5f, nullptr, 0), MOE4J_OK);
}

TEST_CASE(backward_workspace_bytes) {
  int64_t bytes = -1;
  CHECK_STATUS(moe4j_cpu_attention_backward_workspace_bytes(2, 3, 4, 64, &bytes), MOE4J_OK);
  CHECK(bytes == 256); /* 96 */
  CHECK_STATUS(moe4j_cpu_attention_backward_workspace_bytes(1, 100, 8, 64, &bytes), MOE4J_OK);
  CHECK(bytes == 3328); /* 3200 */
  CHECK_STATUS(moe4j_cpu_attention_backward_workspace_bytes(4, 64, 16, 128, &bytes), MOE4J_OK);
  CHECK(bytes == 16384); /* a multiple of 256 stays */
  CHECK_STATUS(moe4j_cpu_attention_backward_workspace_bytes(0, 5, 4, 64, &bytes), MOE4J_OK);
  CHECK(bytes == 0);
  CHECK_STATUS(moe4j_cpu_attention_backward_workspace_bytes(3, 0, 4, 64, &bytes), MOE4J_OK);
  CHECK(bytes == 0);
  const int32_t INV = MOE4J_ERR_INVALID_ARGUMENT;
  CHECK_FAILS(moe4j_cpu_attention_backward_workspace_bytes(1, 1, 1, 64, nullptr), INV, "moe4j_cpu_attention_backward_workspace_bytes: out_bytes is NULL");
  CHECK_FAILS(moe4j_cpu_attention_backward_workspace_bytes(-1, 1, 1, 64, &bytes), INV, "batch must be >= 0, got -1");
  CHECK_FAILS(moe4j_cpu_attention_backward_workspace_bytes(1, -2, 1, 64, &bytes), INV, "seq must be >= 0, got -2");
  CHECK_FAILS(moe4j_cpu_attention_backward_workspace_bytes(1, 1, 0, 64, &bytes), INV, "q_heads must be >= 1, got 0");
  CHECK_FAILS(moe4j_cpu_attention_backward_workspace_bytes(1, 1, 1, 7, &bytes), INV, "head_dim must be even and in [2, 256], got 7");
  CHECK_FAILS(moe4j_cpu_attention_backward_workspace_bytes(int64_t(1) << 40, int64_t(1) << 20, 1, 64, &bytes), INV, "overflows int64");
}

/* attn_find_sequence (the CUDA kernels' token -> sequence lookup, host-callable) against a linear
 * scan: for valid offsets (random lengths, many empty) it finds the one sequence holding t; for
 * arbitrary invalid offsets it returns -1 or a sequence whose clamped range holds t, reading only
 * cu[0..batch]. */
TEST_CASE(find_sequence_matches_a_linear_scan) {
  std::mt19937_64 rng(99);
  for (int trial = 0; trial < 300; trial++) {
    const int64_t B = 1 + (int64_t)(rng() % 9);
    std::vector<int32_t> cu(B + 1, 0);
    for (int64_t b = 0; b < B; b++) cu[b + 1] = cu[b] + (int32_t)(rng() % 3 == 0 ? 0 : rng() % 70);
    const int64_t T = cu[B];
    for (int64_t t = 0; t < T; t++) {
      int64_t want = -1;
      for (int64_t b = 0; b < B; b++)
        if (cu[b] <= t && t < cu[b + 1]) want = b;
      CHECK(attn_find_sequence(cu.data(), B, T, t) == want);
    }
    /* garbage: values anywhere in [-20, T + 20) */
    std::vector<int32_t> bad(B + 1);
    for (auto &x : bad) x = (int32_t)(rng() % (T + 40)) - 20;
    for (int64_t t = 0; t < T; t++) {
      const int64_t b = attn_find_sequence(bad.data(), B, T, t);
      CHECK(b >= -1 && b < B);
      if (b >= 0) {
        const AttnSeq sq = attn_sequence(bad.data(), b, T, 1);
        CHECK(sq.start <= t && t < sq.start + sq.len && sq.start + sq.len <= T);
      }
    }
  }
}

TEST_CASE(vector_exp_is_accurate_and_handles_the_edges) {
  /* every float in [-87, 0] at a stride of 97 ulps (~0.8 M values) plus the reduction edges */
  double worst = 0.0;
  float worst_x = 0.0f;
  auto check_x = [&](float x) {
    const double want = exp((double)x), got = (double)attn::exp_shifted(x, 0.0f);
    const double rel = fabs(got - want) / want;
    if (rel > worst) {
      worst = rel;
      worst_x = x;
    }
  };
  for (uint32_t u = attn::f32_to_bits(-0.0f); u <= attn::f32_to_bits(-87.0f); u += 97)
    check_x(attn::bits_to_f32(u));
  for (float x : {0.0f, -0.0f, -1e-30f, -0.34657359f, -0.34657360f, -0.6931472f, -1.0f, -10.5f,
                  -86.9f, -87.0f})
    check_x(x);
  printf("  vector exp: max relative error %.3g at x = %.9g over [-87, 0]\n", worst,
         (double)worst_x);
  CHECK(worst <= 1.5e-7); /* ~1.25 ulp of 1 */
  CHECK(attn::exp_shifted(0.0f, 0.0f) == 1.0f);
  CHECK(attn::exp_shifted(3.0f, 3.0f) == 1.0f);
  CHECK(attn::exp_shifted(-INFINITY, 0.0f) == 0.0f);
  CHECK(attn::exp_shifted(-INFINITY, -INFINITY) == 0.0f);
  CHECK(attn::exp_shifted(-100.0f, 0.0f) == 0.0f); /* below 2^-126: flushed, documented */
  CHECK(attn::exp_shifted(-88.0f, 0.0f) == 0.0f);
  CHECK(isnan(attn::exp_shifted(NAN, 0.0f)));
  CHECK(isnan(attn::exp_shifted(1.0f, NAN)));
  const float e = attn::exp_shifted(-87.0f, 0.0f);
  CHECK(e > 0.0f && fabs((double)e - exp(-87.0)) <= 1.5e-7 * exp(-87.0));
}

/* Runs the forward and the backward with MOE4J_CPU_ATTN_VARIANT unset (AVX-512 where the CPU
 * has it) and with =portable; out, lse, dq, dk and dv must be bitwise equal. */
template <typename T>
static void variants_case(const Shape &sh, const std::vector<int32_t> *cu, int64_t tokens) {
  const int32_t dt = dtype_code<T>();
  const int64_t nq = tokens * sh.hq * sh.d, nkv = tokens * sh.hkv * sh.d, nl = tokens * sh.hq;
  const auto q = convert<T>(check::randn(nq, 51, 1.5f)), k = convert<T>(check::randn(nkv, 52)),
             v = convert<T>(check::randn(nkv, 53)), g = convert<T>(check::randn(nq, 54));
  struct Result {
    std::vector<T> out, dq, dk, dv;
    std::vector<float> lse;
  };
  auto run = [&](bool portable) {
    Result r{std::vector<T>(nq), std::vector<T>(nq), std::vector<T>(nkv), std::vector<T>(nkv),
             std::vector<float>(nl)};
    if (portable)
      setenv("MOE4J_CPU_ATTN_VARIANT", "portable", 1);
    else
      unsetenv("MOE4J_CPU_ATTN_VARIANT");
    CHECK(attn::attn_wide() == (!portable && __builtin_cpu_supports("avx512f") &&
                                __builtin_cpu_supports("avx512dq")));
    const int32_t *c = cu ? cu->data() : nullptr;
    CHECK_STATUS(moe4j_cpu_attention_forward(dt, q.data(), k.data(), v.data(), r.out.data(),
                                             r.lse.data(), c, sh.b, sh.s, sh.hq, sh.hkv, sh.d,
                                             sh.causal, sh.window, sh.scale),
                 MOE4J_OK);
    Workspace ws(cu ? 1 : sh.b, sh.s, sh.hq, sh.d);
    CHECK_STATUS(moe4j_cpu_attention_backward(dt, q.data(), k.data(), v.data(), r.out.data(),
                                              g.data(), r.lse.data(), r.dq.data(), r.dk.data(),
                                              r.dv.data(), c, sh.b, sh.s, sh.hq, sh.hkv, sh.d,
                                              sh.causal, sh.window, sh.scale, ws.ptr(), ws.bytes),
                 MOE4J_OK);
    unsetenv("MOE4J_CPU_ATTN_VARIANT");
    return r;
  };
  const Result a = run(false), b = run(true);
  CHECK(memcmp(a.out.data(), b.out.data(), nq * sizeof(T)) == 0);
  CHECK(memcmp(a.lse.data(), b.lse.data(), nl * 4) == 0);
  CHECK(memcmp(a.dq.data(), b.dq.data(), nq * sizeof(T)) == 0);
  CHECK(memcmp(a.dk.data(), b.dk.data(), nkv * sizeof(T)) == 0);
  CHECK(memcmp(a.dv.data(), b.dv.data(), nkv * sizeof(T)) == 0);
}

TEST_CASE(tile_kernel_variants_are_bitwise_identical) {
  const char *saved = getenv("MOE4J_CPU_ATTN_VARIANT");
  const std::string keep = saved ? saved : "";
  if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")))
    printf("  no AVX-512 on this CPU: both runs use the portable variant\n");
  for (int64_t d : {40, 64, 128})
    for (int32_t causal : {0, 1})
      for (int64_t window : {0, 70}) {
        const Shape sh{2, 200, 4, 2, d, causal, window, 1.0f / sqrtf((float)d)};
        variants_case<float>(sh, nullptr, sh.b * sh.s);
        variants_case<bf16_t>(sh, nullptr, sh.b * sh.s);
      }
  const std::vector<int32_t> cu = offsets({130, 0, 1, 66, 9});
  const Shape vsh{5, cu[5], 4, 2, 64, 1, 50, 0.125f};
  variants_case<float>(vsh, &cu, cu[5]);
  variants_case<bf16_t>(vsh, &cu, cu[5]);
  if (saved) setenv("MOE4J_CPU_ATTN_VARIANT", keep.c_str(), 1);
}

TEST_MAIN("attention")
