/* Fused AdamW step (CPU twin) against an fp64 PyTorch-AdamW reference over several steps, the
 * bf16 / f16 / f32 param copies, grad_scale, thread-count independence, and bad arguments. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "check.h"
#include "cpu_common.h"

using namespace moe4j;

static const int64_t kSizes[] = {0, 1, 7, 16383, 16384, 16385, 100003};

namespace {

struct Hyper {
  float lr = 1e-2f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
};

/* torch.optim.AdamW, written out in fp64 from the f32 hyper-parameters. */
struct RefState {
  std::vector<double> p, m, v;
  void step(const std::vector<double> &g, const Hyper &h, int64_t step) {
    double b1 = h.beta1, b2 = h.beta2;
    double bias1 = 1.0 - pow(b1, (double)step), bias2 = 1.0 - pow(b2, (double)step);
    for (size_t i = 0; i < p.size(); i++) {
      m[i] = b1 * m[i] + (1.0 - b1) * g[i];
      v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
      double denom = sqrt(v[i] / bias2) + (double)h.eps;
      p[i] -= (double)h.lr * ((double)h.weight_decay * p[i] + (m[i] / bias1) / denom);
    }
  }
};

std::vector<double> to_f64(const std::vector<float> &x) { return std::vector<double>(x.begin(), x.end()); }

/* Compares the f32 state to the fp64 reference.
 * p: rel 1e-5 (DESIGN fp32 rule); each step rounds p once (2^-24 rel) and the update
 *    (size ~lr) carries a few ulp, so 5 steps stay far below; the floor 1e-2 (~lr) covers p near 0,
 *    where the error is the update's few-ulp error, not p's.
 * m: rel 1e-5 with floor 0.1: m is a convex mix of O(1) grads whose terms are O(0.1); where they
 *    cancel near 0 the absolute error is a few ulp of those terms (~3e-8 after 5 steps), < 1e-6.
 * v: rel 1e-5, floor 1e-12: a sum of non-negative terms, so its error is relative (few ulp). */
void check_state(const std::vector<float> &p, const std::vector<float> &m,
                 const std::vector<float> &v, const RefState &ref, int64_t n, const char *what) {
  if (n == 0) return;
  size_t where;
  double ep = check::max_rel_err(p.data(), ref.p.data(), n, 1e-2, &where);
  if (!(ep <= 1e-5)) {
    check::report(__FILE__, __LINE__, std::string(what) + ": param rel err " + std::to_string(ep) +
                                          " at " + std::to_string(where));
  }
  double em = check::max_rel_err(m.data(), ref.m.data(), n, 0.1, &where);
  if (!(em <= 1e-5)) {
    check::report(__FILE__, __LINE__, std::string(what) + ": m rel err " + std::to_string(em) +
                                          " at " + std::to_string(where));
  }
  double ev = check::max_rel_err(v.data(), ref.v.data(), n, 1e-12, &where);
  if (!(ev <= 1e-5)) {
    check::report(__FILE__, __LINE__, std::string(what) + ": v rel err " + std::to_string(ev) +
                                          " at " + std::to_string(where));
  }
}

}  // namespace

TEST_CASE(five_steps_f32_grads_match_fp64_reference) {
  for (float wd : {0.0f, 0.1f}) {
    for (int64_t n : kSizes) {
      Hyper h;
      h.weight_decay = wd;
      /* one extra element past the end of every buffer: must stay untouched */
      auto p = check::randn(n + 1, 100 + n);
      std::vector<float> m(n + 1, 0.0f), v(n + 1, 0.0f);
      p[n] = m[n] = v[n] = -12345.0f;
      RefState ref{to_f64(std::vector<float>(p.begin(), p.begin() + n)), std::vector<double>(n, 0.0),
                   std::vector<double>(n, 0.0)};
      for (int64_t step = 1; step <= 5; step++) {
        auto g = check::randn(n, 1000 * step + n);
        CHECK_STATUS(moe4j_cpu_adamw_step(p.data(), MOE4J_DTYPE_F32, g.data(), m.data(), v.data(),
                                          MOE4J_DTYPE_F32, nullptr, n, h.lr, h.beta1, h.beta2,
                                          h.eps, h.weight_decay, step, nullptr),
                     MOE4J_OK);
        ref.step(to_f64(g), h, step);
        check_state(p, m, v, ref, n, wd == 0.0f ? "f32 wd=0" : "f32 wd=0.1");
      }
      CHECK(p[n] == -12345.0f && m[n] == -12345.0f && v[n] == -12345.0f);
    }
  }
}

TEST_CASE(nonzero_state_large_step_and_beta_zero) {
  /* Mid-training state (m, v != 0, step 1000: bias corrections ~1) and beta1 = 0 (RMSProp-like). */
  int64_t n = 16385;
  for (float beta1 : {0.0f, 0.95f}) {
    Hyper h;
    h.beta1 = beta1;
    h.beta2 = 0.95f;
    h.weight_decay = 0.01f;
    h.lr = 3e-4f;
    auto p = check::randn(n, 7), m = check::randn(n, 8, 0.1f), v = check::randn(n, 9, 0.01f);
    for (auto &x : v) x = x * x;
    RefState ref{to_f64(p), to_f64(m), to_f64(v)};
    auto g = check::randn(n, 10);
    CHECK_STATUS(moe4j_cpu_adamw_step(p.data(), MOE4J_DTYPE_F32, g.data(), m.data(), v.data(),
                                      MOE4J_DTYPE_F32, nullptr, n, h.lr, h.beta1, h.beta2, h.eps,
                                      h.weight_decay, 1000, nullptr),
                 MOE4J_OK);
    ref.step(to_f64(g), h, 1000);
    check_state(p, m, v, ref, n, "step 1000");
  }
}

TEST_CASE(bf16_grads_and_param_copies_round_the_f32_param) {
  for (int64_t n : kSizes) {
    for (int32_t copy_dtype : {MOE4J_DTYPE_BF16, MOE4J_DTYPE_F16, MOE4J_DTYPE_F32}) {
      Hyper h;
      h.weight_decay = 0.05f;
      auto p = check::randn(n, 20 + n);
      std::vector<float> m(n, 0.0f), v(n, 0.0f);
      RefState ref{to_f64(p), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
      /* copy buffer with 4 spare bytes past the end, checked untouched */
      std::vector<uint8_t> copy(n * dtype_size(copy_dtype) + 4, 0xA5);
      for (int64_t step = 1; step <= 3; step++) {
        auto gf = check::randn(n, 30 * step + n);
        std::vector<bf16_t> g(n);
        std::vector<double> gd(n);
        for (int64_t i = 0; i < n; i++) {
          g[i] = from_f32<bf16_t>(gf[i]);
          gd[i] = to_f32(g[i]);
        }
        CHECK_STATUS(moe4j_cpu_adamw_step(p.data(), MOE4J_DTYPE_BF16, g.data(), m.data(), v.data(),
                                          copy_dtype, copy.data(), n, h.lr, h.beta1, h.beta2,
                                          h.eps, h.weight_decay, step, nullptr),
                     MOE4J_OK);
        ref.step(gd, h, step);
        check_state(p, m, v, ref, n, "bf16 grads");
        for (int64_t i = 0; i < n; i++) { /* the copy is exactly the rounded f32 param */
          bool same;
          if (copy_dtype == MOE4J_DTYPE_BF16)
            same = ((const bf16_t *)copy.data())[i].bits == f32_to_bf16_bits(p[i]);
          else if (copy_dtype == MOE4J_DTYPE_F16)
            same = ((const f16_t *)copy.data())[i].bits == f32_to_f16_bits(p[i]);
          else
            same = memcmp((const float *)copy.data() + i, &p[i], 4) == 0;
          if (!same) {
            CHECK(same);
            break;
          }
        }
      }
      for (size_t i = copy.size() - 4; i < copy.size(); i++) CHECK(copy[i] == 0xA5);
    }
  }
}

TEST_CASE(grad_scale_null_is_one_and_pointer_scales) {
  int64_t n = 100003;
  Hyper h;
  h.weight_decay = 0.1f;
  auto p0 = check::randn(n, 40), g = check::randn(n, 41, 3.0f);
  /* NULL and a pointer to 1.0 are bitwise the same step */
  std::vector<float> pa = p0, ma(n, 0.0f), va(n, 0.0f), pb = p0, mb(n, 0.0f), vb(n, 0.0f);
  float one = 1.0f;
  CHECK_STATUS(moe4j_cpu_adamw_step(pa.data(), MOE4J_DTYPE_F32, g.data(), ma.data(), va.data(),
                                    MOE4J_DTYPE_F32, nullptr, n, h.lr, h.beta1, h.beta2, h.eps,
                                    h.weight_decay, 1, nullptr),
               MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_adamw_step(pb.data(), MOE4J_DTYPE_F32, g.data(), mb.data(), vb.data(),
                                    MOE4J_DTYPE_F32, nullptr, n, h.lr, h.beta1, h.beta2, h.eps,
                                    h.weight_decay, 1, &one),
               MOE4J_OK);
  CHECK(memcmp(pa.data(), pb.data(), n * 4) == 0);
  CHECK(memcmp(ma.data(), mb.data(), n * 4) == 0);
  CHECK(memcmp(va.data(), vb.data(), n * 4) == 0);
  /* a clip coefficient of 0.37: the reference sees g * 0.37 (two steps so the scale reaches the
   * bias-corrected ratio m/sqrt(v) non-trivially through different grads) */
  float scale = 0.37f;
  std::vector<float> p = p0, m(n, 0.0f), v(n, 0.0f);
  RefState ref{to_f64(p0), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
  for (int64_t step = 1; step <= 2; step++) {
    auto gs = check::randn(n, 50 + step, 3.0f);
    CHECK_STATUS(moe4j_cpu_adamw_step(p.data(), MOE4J_DTYPE_F32, gs.data(), m.data(), v.data(),
                                      MOE4J_DTYPE_F32, nullptr, n, h.lr, h.beta1, h.beta2, h.eps,
                                      h.weight_decay, step, &scale),
                 MOE4J_OK);
    std::vector<double> gd(n);
    for (int64_t i = 0; i < n; i++) gd[i] = (double)gs[i] * (double)scale;
    ref.step(gd, h, step);
    check_state(p, m, v, ref, n, "grad_scale 0.37");
  }
}

TEST_CASE(result_does_not_depend_on_thread_count) {
  int64_t n = 100003;
  auto p0 = check::randn(n, 60), g = check::randn(n, 61);
  std::vector<float> results[2];
  int saved = omp_get_max_threads();
  for (int t = 0; t < 2; t++) {
    omp_set_num_threads(t + 1);
    std::vector<float> p = p0, m(n, 0.1f), v(n, 0.2f);
    CHECK_STATUS(moe4j_cpu_adamw_step(p.data(), MOE4J_DTYPE_F32, g.data(), m.data(), v.data(),
                                      MOE4J_DTYPE_F32, nullptr, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f,
                                      3, nullptr),
                 MOE4J_OK);
    results[t] = p;
    results[t].insert(results[t].end(), m.begin(), m.end());
    results[t].insert(results[t].end(), v.begin(), v.end());
  }
  omp_set_num_threads(saved);
  CHECK(memcmp(results[0].data(), results[1].data(), results[0].size() * 4) == 0);
}

TEST_CASE(zero_lr_leaves_param_and_nan_grad_propagates) {
  std::vector<float> p = {1.0f, -2.0f, 3.0f}, m(3, 0.0f), v(3, 0.0f), g = {0.5f, NAN, 1.0f};
  CHECK_STATUS(moe4j_cpu_adamw_step(p.data(), MOE4J_DTYPE_F32, g.data(), m.data(), v.data(),
                                    MOE4J_DTYPE_F32, nullptr, 3, 0.0f, 0.9f, 0.999f, 1e-8f, 0.1f,
                                    1, nullptr),
               MOE4J_OK);
  CHECK(p[0] == 1.0f && p[2] == 3.0f); /* lr 0: no move (0 * finite = 0) */
  CHECK(isnan(m[1]) && isnan(v[1]));   /* a NaN grad is not hidden */
  CHECK_CLOSE(m[0], 0.05, 1e-7);   /* (1 - 0.9f) * 0.5 = 0.0500000119 in f32 */
}

TEST_CASE(bad_arguments_are_reported_not_fatal) {
  float p[8] = {0}, m[8] = {0}, v[8] = {0}, g[8] = {0}, st[16] = {0};
  uint16_t c[8];
  auto step = [&](float *pp, int32_t gdt, const void *gg, float *mm, float *vv, int32_t cdt,
                  void *cc, int64_t n, float lr, float b1, float b2, float eps, float wd,
                  int64_t s) {
    return moe4j_cpu_adamw_step(pp, gdt, gg, mm, vv, cdt, cc, n, lr, b1, b2, eps, wd, s, nullptr);
  };
  const int32_t F32 = MOE4J_DTYPE_F32, BF16 = MOE4J_DTYPE_BF16;
  const int32_t INV = MOE4J_ERR_INVALID_ARGUMENT;
  CHECK_FAILS(step(p, F32, g, m, v, F32, nullptr, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 0), INV, "step must be >= 1, got 0");
  CHECK_FAILS(step(p, F32, g, m, v, F32, nullptr, 8, 1e-3f, 1.0f, 0.999f, 1e-8f, 0, 1), INV, "beta1 must be in [0, 1), got 1");
  CHECK_FAILS(step(p, F32, g, m, v, F32, nullptr, 8, 1e-3f, 0.9f, -0.5f, 1e-8f, 0, 1), INV, "beta2 must be in [0, 1)");
  CHECK_FAILS(step(p, F32, g, m, v, F32, nullptr, 8, NAN, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "lr must be in [0, inf)");
  CHECK_FAILS(step(p, F32, g, m, v, F32, nullptr, 8, -1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "lr must be in [0, inf)");
  CHECK_FAILS(step(p, F32, g, m, v, F32, nullptr, 8, INFINITY, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "lr must be in [0, inf)");
  CHECK_FAILS(step(p, F32, g, m, v, F32, nullptr, 8, 1e-3f, 0.9f, 0.999f, 0.0f, 0, 1), INV, "eps must be finite and > 0");
  CHECK_FAILS(step(p, F32, g, m, v, F32, nullptr, 8, 1e-3f, 0.9f, 0.999f, NAN, 0, 1), INV, "eps must be finite and > 0");
  CHECK_FAILS(step(p, F32, g, m, v, F32, nullptr, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, -0.1f, 1), INV, "weight_decay must be in [0, inf)");
  CHECK_FAILS(step(p, F32, g, m, v, F32, nullptr, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, NAN, 1), INV, "weight_decay");
  CHECK_FAILS(step(p, F32, g, nullptr, v, F32, nullptr, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "m is NULL");
  CHECK_FAILS(step(nullptr, F32, g, m, v, F32, nullptr, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "param is NULL");
  CHECK_FAILS(step(p, F32, nullptr, m, v, F32, nullptr, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "grad is NULL");
  CHECK_FAILS(step(p, F32, g, m, nullptr, F32, nullptr, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "v is NULL");
  CHECK_FAILS(step(p, F32, g, st, st + 4, F32, nullptr, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "m and v overlap");
  CHECK_FAILS(step(p, F32, g, p, v, F32, nullptr, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "param and m overlap");
  CHECK_FAILS(step(p, F32, g, m, p + 7, F32, nullptr, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "param and v overlap");
  CHECK_FAILS(step(p, F32, st, st + 4, v, F32, nullptr, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "grad overlaps");
  CHECK_FAILS(step(p, BF16, (uint16_t *)v + 12, m, v, F32, nullptr, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "grad overlaps");
  CHECK_FAILS(step(p, F32, g, m, v, BF16, p, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "param_copy overlaps");
  CHECK_FAILS(step(p, F32, g, m, v, BF16, g, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "param_copy overlaps");
  CHECK_FAILS(step(p, MOE4J_DTYPE_F16, g, m, v, F32, nullptr, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), MOE4J_ERR_UNSUPPORTED, "grad_dtype must be F32 or BF16, got F16");
  CHECK_FAILS(step(p, F32, g, m, v, MOE4J_DTYPE_I32, c, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), MOE4J_ERR_UNSUPPORTED, "copy_dtype must be F32, BF16 or F16, got I32");
  CHECK_FAILS(step(p, F32, g, m, v, F32, nullptr, -1, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "n must be >= 0, got -1");
  CHECK_FAILS(step(p, F32, g, m, v, F32, nullptr, INT64_MAX, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "overflows");
  CHECK_FAILS(step((float *)((char *)p + 2), F32, g, m, v, F32, nullptr, 4, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "param (address");
  CHECK_FAILS(step(p, F32, g, m, v, BF16, (char *)c + 1, 4, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), INV, "param_copy (address");
  CHECK_FAILS(moe4j_cpu_adamw_step(p, F32, g, m, v, F32, nullptr, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1, (const float *)((char *)st + 1)), INV, "grad_scale (address");
  /* a failed call did no work */
  for (int i = 0; i < 8; i++) CHECK(p[i] == 0.0f && m[i] == 0.0f && v[i] == 0.0f);
  /* empty call with NULL buffers is fine (hyper-parameters still checked) and clears the message */
  CHECK_STATUS(step(nullptr, F32, nullptr, nullptr, nullptr, BF16, nullptr, 0, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), MOE4J_OK);
  CHECK(moe4j_last_error()[0] == '\0');
  CHECK_FAILS(step(nullptr, F32, nullptr, nullptr, nullptr, F32, nullptr, 0, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 0), INV, "step must be >= 1");
  /* and the same arguments with a valid bf16 copy go through */
  CHECK_STATUS(step(p, F32, g, m, v, BF16, c, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1), MOE4J_OK);
}

TEST_MAIN("adamw")
