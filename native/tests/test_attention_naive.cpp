/*
 * The naive materialized attention (cpu_attention_naive.cpp, the benchmark baseline and an
 * fp64-free oracle) against the flash twin on small shapes: sequence lengths off the tile grid
 * (1, 7, 65, 130), MHA / GQA / MQA, causal or not, sliding windows, head_dim 2..128, F32 and BF16;
 * out and lse compared. The naive is itself checked against a direct fp64 evaluation on one shape
 * (so two wrong implementations cannot agree), and for bad arguments (the flash forward's rules and
 * messages) and a score matrix too large to allocate (a status, not an abort).
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cpu_common.h"

using namespace moe4j;

namespace {

struct Shape {
  int64_t b, s, hq, hkv, d;
  int32_t causal;
  int64_t window;
  int64_t nq() const { return b * s * hq * d; }
  int64_t nkv() const { return b * s * hkv * d; }
  int64_t nlse() const { return b * hq * s; }
  float scale() const { return 1.0f / sqrtf((float)d); }
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

int32_t flash_forward(int32_t dtype, const void *q, const void *k, const void *v, void *out,
                      float *lse, const Shape &sh) {
  return moe4j_cpu_attention_forward(dtype, q, k, v, out, lse, /*cu_seqlens=*/nullptr, sh.b, sh.s,
                                     sh.hq, sh.hkv, sh.d, sh.causal, sh.window, sh.scale());
}

int32_t naive_forward(int32_t dtype, const void *q, const void *k, const void *v, void *out,
                      float *lse, const Shape &sh) {
  return moe4j_cpu_attention_naive_forward(dtype, q, k, v, out, lse, sh.b, sh.s, sh.hq, sh.hkv,
                                           sh.d, sh.causal, sh.window, sh.scale());
}

/* Both implementations on the same inputs; out within `out_tol` (relative to max(|x|, 1)), lse
 * within 1e-5 relative. Both round out from f32 once, so BF16 outputs may differ by one bf16 ulp
 * (2^-8 relative) where the f32 values straddle a rounding boundary. */
template <typename T>
void compare(const Shape &sh, uint64_t seed, double out_tol) {
  const auto q = convert<T>(check::randn(sh.nq(), seed));
  const auto k = convert<T>(check::randn(sh.nkv(), seed + 1));
  const auto v = convert<T>(check::randn(sh.nkv(), seed + 2));
  std::vector<T> of(sh.nq()), on(sh.nq());
  std::vector<float> lf(sh.nlse()), ln(sh.nlse());
  const int32_t dt = dtype_code<T>();
  CHECK_STATUS(flash_forward(dt, q.data(), k.data(), v.data(), of.data(), lf.data(), sh), MOE4J_OK);
  CHECK_STATUS(naive_forward(dt, q.data(), k.data(), v.data(), on.data(), ln.data(), sh), MOE4J_OK);
  double worst_out = 0, worst_lse = 0;
  for (int64_t i = 0; i < sh.nq(); i++) {
    const double a = to_f32(on[i]), b = to_f32(of[i]);
    worst_out = fmax(worst_out, fabs(a - b) / fmax(fabs(b), 1.0));
  }
  for (int64_t i = 0; i < sh.nlse(); i++)
    worst_lse = fmax(worst_lse, fabs((double)ln[i] - lf[i]) / fmax(fabs((double)lf[i]), 1.0));
  if (!(worst_out <= out_tol && worst_lse <= 1e-5)) {
    char msg[256];
    snprintf(msg, sizeof msg,
             "B=%lld S=%lld Hq=%lld Hkv=%lld D=%lld causal=%d window=%lld %s: out err %.3g "
             "(tol %.3g), lse err %.3g",
             (long long)sh.b, (long long)sh.s, (long long)sh.hq, (long long)sh.hkv,
             (long long)sh.d, sh.causal, (long long)sh.window, dt == MOE4J_DTYPE_F32 ? "F32" : "BF16",
             worst_out, out_tol, worst_lse);
    check::report(__FILE__, __LINE__, msg);
  }
}

}  // namespace

TEST_CASE(naive_matches_flash_f32_all_shapes) {
  const int64_t seqs[] = {1, 7, 65, 130};
  const int64_t heads[][2] = {{2, 2}, {4, 1}, {8, 2}};
  const int64_t dims[] = {2, 6, 64, 128};
  const int64_t windows[] = {0, 1, 5, 66};
  uint64_t seed = 100;
  for (int64_t s : seqs)
    for (auto &h : heads)
      for (int64_t d : dims)
        for (int causal = 0; causal < 2; causal++)
          for (int64_t w : windows) {
            if (d == 128 && w != 0 && w != 66) continue; /* keep the test fast */
            compare<float>(Shape{2, s, h[0], h[1], d, causal, w}, seed++, 2e-5);
          }
}

TEST_CASE(naive_matches_flash_bf16) {
  uint64_t seed = 500;
  for (int64_t s : {7, 130})
    for (int causal = 0; causal < 2; causal++)
      for (int64_t w : {0, 5})
        compare<bf16_t>(Shape{2, s, 4, 2, 64, causal, w}, seed++, 1.0 / 128);
}

/* The naive on its own against a direct fp64 evaluation of softmax(scale q k^T) v. */
TEST_CASE(naive_matches_fp64_direct_evaluation) {
  const Shape sh{1, 33, 3, 1, 10, 1, 9};
  const auto q = check::randn(sh.nq(), 7), k = check::randn(sh.nkv(), 8), v = check::randn(sh.nkv(), 9);
  std::vector<float> out(sh.nq()), lse(sh.nlse());
  CHECK_STATUS(naive_forward(MOE4J_DTYPE_F32, q.data(), k.data(), v.data(), out.data(), lse.data(), sh),
               MOE4J_OK);
  double worst = 0;
  for (int64_t h = 0; h < sh.hq; h++)
    for (int64_t i = 0; i < sh.s; i++) {
      std::vector<double> p(sh.s, 0.0);
      double mx = -INFINITY;
      for (int64_t j = 0; j < sh.s; j++) {
        if (j > i || j <= i - sh.window) continue;
        double dot = 0;
        for (int64_t d = 0; d < sh.d; d++) dot += (double)q[(i * sh.hq + h) * sh.d + d] * k[j * sh.d + d];
        p[j] = dot * sh.scale();
        mx = fmax(mx, p[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < sh.s; j++)
        if (j <= i && j > i - sh.window) sum += exp(p[j] - mx);
      worst = fmax(worst, fabs(lse[h * sh.s + i] - (mx + log(sum))));
      for (int64_t d = 0; d < sh.d; d++) {
        double o = 0;
        for (int64_t j = 0; j < sh.s; j++)
          if (j <= i && j > i - sh.window) o += exp(p[j] - mx) / sum * v[j * sh.d + d];
        worst = fmax(worst, fabs(out[(i * sh.hq + h) * sh.d + d] - o));
      }
    }
  CHECK(worst < 1e-5);
}

TEST_CASE(bad_arguments_use_the_flash_rules) {
  const Shape sh{1, 4, 2, 2, 8, 0, 0};
  std::vector<float> q(sh.nq()), k(sh.nkv()), v(sh.nkv()), out(sh.nq()), lse(sh.nlse());
  const int32_t F32 = MOE4J_DTYPE_F32, INV = MOE4J_ERR_INVALID_ARGUMENT;
  auto call = [&](int32_t dt, const void *qp, void *op, float *lp, int64_t hq, int64_t hkv, int64_t d,
                  float scale) {
    return moe4j_cpu_attention_naive_forward(dt, qp, k.data(), v.data(), op, lp, sh.b, sh.s, hq, hkv, d,
                                             0, 0, scale);
  };
  CHECK_FAILS(call(MOE4J_DTYPE_F16, q.data(), out.data(), lse.data(), 2, 2, 8, 0.5f),
              MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16, got F16");
  CHECK_FAILS(call(F32, q.data(), out.data(), lse.data(), 3, 2, 8, 0.5f), INV,
              "q_heads (3) must be a multiple of kv_heads (2)");
  CHECK_FAILS(call(F32, q.data(), out.data(), lse.data(), 2, 2, 7, 0.5f), INV,
              "head_dim must be even and in [2, 256], got 7");
  CHECK_FAILS(call(F32, q.data(), out.data(), lse.data(), 2, 2, 8, 0.0f), INV,
              "scale must be finite and > 0");
  CHECK_FAILS(call(F32, nullptr, out.data(), lse.data(), 2, 2, 8, 0.5f), INV, "q is NULL");
  CHECK_FAILS(call(F32, q.data(), q.data(), lse.data(), 2, 2, 8, 0.5f), INV, "out and q overlap");
  CHECK_FAILS(call(F32, q.data(), out.data(), nullptr, 2, 2, 8, 0.5f), INV, "lse is NULL");
  CHECK(strstr(moe4j_last_error(), "moe4j_cpu_attention_naive_forward") != nullptr);
  /* empty batch: nothing to do, NULL buffers allowed */
  CHECK_STATUS(moe4j_cpu_attention_naive_forward(F32, nullptr, nullptr, nullptr, nullptr, nullptr, 0,
                                                 5, 2, 2, 8, 1, 0, 0.5f),
               MOE4J_OK);
}

/* S = 2^23: the per-thread S x S f32 matrix (256 TiB) exceeds any address space, so allocation
 * fails; the buffers are reserved but never touched (the call fails before reading them). */
TEST_CASE(score_matrix_too_large_is_a_status_not_an_abort) {
  const int64_t S = int64_t(1) << 23, D = 2;
  void *q = malloc(S * D * 4), *k = malloc(S * D * 4), *v = malloc(S * D * 4), *o = malloc(S * D * 4);
  float *l = (float *)malloc(S * 4);
  CHECK(q && k && v && o && l);
  if (q && k && v && o && l)
    CHECK_FAILS(moe4j_cpu_attention_naive_forward(MOE4J_DTYPE_F32, q, k, v, o, l, 1, S, 1, 1, D, 1, 0,
                                                  0.5f),
                MOE4J_ERR_OUT_OF_MEMORY, "cannot allocate");
  free(q), free(k), free(v), free(o), free(l);
}

TEST_MAIN("attention_naive")
