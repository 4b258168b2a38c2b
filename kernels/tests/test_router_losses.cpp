/*
 * CUDA router balancing kernels (fast and reference) against the CPU twin
 * (native/src/cpu_router_losses.cpp).
 *
 * Bitwise where both sides run the same operation sequence from router_loss_math.h:
 *  - balance loss: column sums in 32 token lanes of double adds (thread (lane, expert) on the GPU,
 *    a lane array on the CPU), lanes added in order, the weighted sum in expert order with
 *    explicitly rounded double mul/add, one IEEE division, one rounding to f32; counts are
 *    integers (exact in any order). Gradient: g_e from the same double formula, one f32 add.
 *  - bias update: an exact integer total, one double division, one f32 add per expert.
 * With a tolerance for the z-loss: lse_t is a sum of E terms exp(x - max) <= 1, reordered by the
 * fast kernel's lanes and butterfly (relative error <= (E / 32 + 5) eps on the GPU, E eps on the
 * CPU), with expf within 2 ulp (CUDA) vs 1 ulp (glibc) and logf within 1 ulp each, so the two lse
 * differ by at most delta_t = (2 E + 16) eps + 2 eps |lse_t| absolute. The loss coef / T sum
 * lse^2 then differs by <= coef / T sum (2 |lse| delta + delta^2) + a few roundings, and each
 * gradient element scale * exp(x - lse) by the scale's coef * 2 delta / T plus the exp's relative
 * delta + eps |x - lse| + 4 eps (argument, subtraction, expf), plus the final add. Checked against
 * twice those bounds.
 */
#include <string.h>

#include <algorithm>

#include "gpu_test.h"

namespace {

constexpr double kEps = 1.0 / (1 << 24);
constexpr float kGuard = 4352.0f;

const char *path_name(int ref) { return ref ? "reference" : "fast"; }

bool same_floats(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && (a.empty() || memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

void fail_at(int line, const char *what, const char *path, long long a, long long b, long long c) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s (%s) differs from CPU at sizes %lld, %lld, %lld", what, path, a, b,
           c);
  check::report(__FILE__, line, msg);
}

std::vector<float> softmax_scores(int64_t T, int64_t E, uint64_t seed) {
  const auto logits = check::randn(T * E, seed, 2.0f);
  std::vector<float> s(T * E);
  CHECK_STATUS(moe4j_cpu_router_scores(logits.data(), s.data(), T, E, 0), MOE4J_OK);
  return s;
}

/* k distinct experts per token, skewed towards the low experts. */
std::vector<int32_t> random_ids(int64_t T, int64_t E, int k, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<int32_t> ids(T * k), perm(E);
  for (int64_t t = 0; t < T; t++) {
    for (int64_t e = 0; e < E; e++) perm[e] = (int32_t)e;
    for (int j = 0; j < k; j++) {
      int64_t pick = (int64_t)(g() % (uint64_t)(E - j));
      if (g() % 2 == 0) pick /= 2;
      std::swap(perm[j], perm[j + pick]);
      ids[t * k + j] = perm[j];
    }
  }
  return ids;
}

void balance_case(int64_t T, int64_t E, int k, float coef, int line) {
  const auto s = softmax_scores(T, E, 10 + T + E);
  const auto ids = random_ids(T, E, k, 11 + k);
  const auto d0 = check::randn(T * E, 12, 0.01f);
  float cpu_loss = kGuard;
  std::vector<float> cpu_d = d0;
  CHECK_STATUS(moe4j_cpu_router_balance_loss(s.data(), ids.data(), T, E, k, coef, &cpu_loss,
                                             cpu_d.data()), MOE4J_OK);
  gpu::DeviceBuffer<float> ds(s), dd(T * E), dout(std::vector<float>{kGuard, kGuard});
  gpu::DeviceBuffer<int32_t> dids(ids);
  for (int ref : {0, 1}) {
    moe4j_cuda_use_reference_kernels(ref);
    for (int with_d : {1, 0}) {
      dd.upload(d0);
      dout.upload({kGuard, kGuard});
      CHECK_STATUS(moe4j_cuda_router_balance_loss(ds.ptr, dids.ptr, T, E, k, coef, dout.ptr,
                                                  with_d ? dd.ptr : nullptr, nullptr), MOE4J_OK);
      gpu::sync();
      const auto out = dout.download();
      if (memcmp(&out[0], &cpu_loss, 4) != 0 || out[1] != kGuard)
        fail_at(line, "balance loss bitwise", path_name(ref), T, E, k);
      if (!same_floats(dd.download(), with_d ? cpu_d : d0))
        fail_at(line, "balance d_scores bitwise", path_name(ref), T, E, k);
    }
  }
  moe4j_cuda_use_reference_kernels(0);
}

double z_delta(double lse, int64_t E) { return (double)(2 * E + 16) * kEps + 2.0 * kEps * fabs(lse); }

void z_case(int64_t T, int64_t E, float coef, float scale, int line) {
  auto x = check::randn(T * E, 20 + T + E, scale);
  if (E > 2 && T > 1) x[E + 1] = -INFINITY;
  const auto d0 = check::randn(T * E, 21, 0.01f);
  float cpu_loss = kGuard;
  std::vector<float> cpu_d = d0;
  CHECK_STATUS(moe4j_cpu_router_z_loss(x.data(), T, E, coef, &cpu_loss, cpu_d.data()), MOE4J_OK);
  /* tolerances from the CPU's lse (within the CPU test's bound of the exact value) */
  std::vector<double> lse(T);
  for (int64_t t = 0; t < T; t++) {
    double m = -INFINITY, sum = 0;
    for (int64_t e = 0; e < E; e++) m = std::max(m, (double)x[t * E + e]);
    for (int64_t e = 0; e < E; e++) sum += exp((double)x[t * E + e] - m);
    lse[t] = m + log(sum);
  }
  double loss_tol = 4.0 * kEps * fabs(cpu_loss);
  for (int64_t t = 0; t < T; t++) {
    const double dl = z_delta(lse[t], E);
    loss_tol += coef / (double)T * (2.0 * fabs(lse[t]) * dl + dl * dl);
  }
  gpu::DeviceBuffer<float> dx(x), dd(T * E), dout(2);
  for (int ref : {0, 1}) {
    moe4j_cuda_use_reference_kernels(ref);
    dd.upload(d0);
    dout.upload({kGuard, kGuard});
    CHECK_STATUS(moe4j_cuda_router_z_loss(dx.ptr, T, E, coef, dout.ptr, dd.ptr, nullptr), MOE4J_OK);
    gpu::sync();
    const auto out = dout.download();
    const auto got = dd.download();
    if (!(fabs((double)out[0] - cpu_loss) <= 2.0 * loss_tol + 1e-30) || out[1] != kGuard)
      fail_at(line, "z loss", path_name(ref), T, E, 0);
    bool ok = true;
    for (int64_t t = 0; t < T && ok; t++) {
      const double dl = z_delta(lse[t], E);
      for (int64_t e = 0; e < E && ok; e++) {
        const int64_t i = t * E + e;
        const double g = (double)cpu_d[i] - d0[i];
        const double sm = x[i] == -INFINITY ? 0.0 : exp((double)x[i] - lse[t]);
        const double tol = coef * 2.0 * dl / (double)T * sm +
                           fabs(g) * (dl + kEps * (sm > 0.0 ? fabs((double)x[i] - lse[t]) : 0.0) + 8.0 * kEps) +
                           2.0 * kEps * (fabs((double)cpu_d[i]) + fabs(g));
        ok = fabs((double)got[i] - cpu_d[i]) <= 2.0 * tol + 1e-30;
      }
    }
    if (!ok) fail_at(line, "z d_logits", path_name(ref), T, E, 0);
    /* without d_logits: same loss bits */
    dout.upload({kGuard, kGuard});
    CHECK_STATUS(moe4j_cuda_router_z_loss(dx.ptr, T, E, coef, dout.ptr, nullptr, nullptr), MOE4J_OK);
    gpu::sync();
    if (memcmp(&dout.download()[0], &out[0], 4) != 0)
      fail_at(line, "z loss without d_logits", path_name(ref), T, E, 0);
  }
  moe4j_cuda_use_reference_kernels(0);
}

void bias_case(int64_t E, uint64_t seed, int line) {
  std::mt19937_64 g(seed);
  std::vector<int64_t> counts(E);
  for (auto &c : counts) c = (int64_t)(g() % 7); /* small values: many ties with the mean */
  const auto b0 = check::randn(E, seed + 1, 0.1f);
  std::vector<float> cpu = b0;
  CHECK_STATUS(moe4j_cpu_router_bias_update(cpu.data(), counts.data(), E, 0.01f), MOE4J_OK);
  gpu::DeviceBuffer<float> db(E);
  gpu::DeviceBuffer<int64_t> dc(counts);
  for (int ref : {0, 1}) {
    moe4j_cuda_use_reference_kernels(ref);
    db.upload(b0);
    CHECK_STATUS(moe4j_cuda_router_bias_update(db.ptr, dc.ptr, E, 0.01f, nullptr), MOE4J_OK);
    gpu::sync();
    if (!same_floats(db.download(), cpu)) fail_at(line, "bias update bitwise", path_name(ref), E, 0, 0);
  }
  moe4j_cuda_use_reference_kernels(0);
}

}  // namespace

TEST_CASE(balance_loss_matches_cpu) {
  balance_case(1, 1, 1, 0.5f, __LINE__);
  balance_case(7, 4, 4, 0.01f, __LINE__); /* k = E */
  balance_case(33, 8, 2, 0.01f, __LINE__);
  balance_case(1000, 64, 6, 0.01f, __LINE__);
  balance_case(777, 257, 8, 1.0f, __LINE__);
  balance_case(40, 3000, 4, 0.3f, __LINE__); /* two expert chunks */
  balance_case(5000, 16, 2, 0.0f, __LINE__); /* coef 0 */
}

TEST_CASE(z_loss_matches_cpu) {
  z_case(1, 1, 0.5f, 2.0f, __LINE__);
  z_case(17, 7, 0.001f, 2.0f, __LINE__);
  z_case(1000, 64, 0.001f, 2.0f, __LINE__);
  z_case(300, 257, 1.0f, 0.1f, __LINE__);
  z_case(50, 16, 0.5f, 30.0f, __LINE__);
}

TEST_CASE(bias_update_matches_cpu) {
  for (int64_t E : {1, 2, 8, 257, 3000, 65536}) bias_case(E, 30 + E, __LINE__);
}

TEST_CASE(zero_tokens_write_zero_loss) {
  gpu::DeviceBuffer<float> dout(std::vector<float>{kGuard, kGuard});
  for (int ref : {0, 1}) {
    moe4j_cuda_use_reference_kernels(ref);
    dout.upload({kGuard, kGuard});
    CHECK_STATUS(moe4j_cuda_router_balance_loss(nullptr, nullptr, 0, 8, 2, 0.01f, dout.ptr, nullptr,
                                                nullptr), MOE4J_OK);
    gpu::sync();
    auto out = dout.download();
    CHECK(out[0] == 0.0f && out[1] == kGuard);
    dout.upload({kGuard, kGuard});
    CHECK_STATUS(moe4j_cuda_router_z_loss(nullptr, 0, 8, 0.01f, dout.ptr, nullptr, nullptr), MOE4J_OK);
    gpu::sync();
    out = dout.download();
    CHECK(out[0] == 0.0f && out[1] == kGuard);
  }
  moe4j_cuda_use_reference_kernels(0);
}

TEST_CASE(fast_kernels_are_deterministic) {
  const int64_t T = 4096, E = 128;
  const int k = 8;
  const auto s = softmax_scores(T, E, 40);
  const auto ids = random_ids(T, E, k, 41);
  gpu::DeviceBuffer<float> ds(s), dd(T * E), dout(2);
  gpu::DeviceBuffer<int32_t> dids(ids);
  std::vector<float> first_out, first_d;
  for (int run = 0; run < 3; run++) {
    dd.upload(std::vector<float>(T * E, 0.0f));
    CHECK_STATUS(moe4j_cuda_router_balance_loss(ds.ptr, dids.ptr, T, E, k, 0.01f, dout.ptr, dd.ptr,
                                                nullptr), MOE4J_OK);
    CHECK_STATUS(moe4j_cuda_router_z_loss(ds.ptr, T, E, 0.001f, dout.ptr + 1, dd.ptr, nullptr),
                 MOE4J_OK);
    gpu::sync();
    if (run == 0) {
      first_out = dout.download();
      first_d = dd.download();
    } else {
      CHECK(same_floats(dout.download(), first_out));
      CHECK(same_floats(dd.download(), first_d));
    }
  }
}

GPU_TEST_MAIN("gpu_test_router_losses")
