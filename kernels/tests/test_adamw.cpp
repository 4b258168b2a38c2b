/* CUDA AdamW (fast and reference kernels) against the CPU twin.
 *
 * Expectation: the fast (vectorized) and reference kernels are bitwise equal (same numerics.h
 * update, same compiler, element-wise). CUDA vs CPU: sqrtf and '/' are IEEE correctly rounded on
 * both (no fast-math), but nvcc and the AVX2/AVX-512 CPU clones may contract different a*b + c
 * into FMAs, so each rounding in the update can differ by 1 ulp: we allow 8 ulp, or an absolute
 * floor where the value comes out of a cancellation (m near 0: 1e-6 ~ 10 ulp of its O(0.1) terms;
 * param near 0: 1e-5 * lr, the update being ~lr with a few-ulp error). The param copy is
 * checked bitwise against rounding the GPU's own f32 param. */
#include <string.h>

#include "gpu_test.h"
#include "numerics.h"

using namespace moe4j;

namespace {

struct Hyper {
  float lr = 1e-2f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.1f;
};

struct State {
  std::vector<float> p, m, v;
  std::vector<uint8_t> copy;
};

int64_t ulp_distance(float a, float b) {
  if (a == b || (isnan(a) && isnan(b))) return 0;
  if (isnan(a) || isnan(b)) return INT64_MAX;
  auto ordered = [](float f) {
    int32_t i;
    memcpy(&i, &f, 4);
    return i < 0 ? (int64_t)INT32_MIN - i : (int64_t)i;
  };
  int64_t d = ordered(a) - ordered(b);
  return d < 0 ? -d : d;
}

/* Worst element outside "8 ulp or |diff| <= floor"; reports the first one. */
void check_close(const std::vector<float> &gpu, const std::vector<float> &cpu, double floor,
                 const char *what, int line) {
  for (size_t i = 0; i < cpu.size(); i++) {
    if (ulp_distance(gpu[i], cpu[i]) <= 8 || fabs((double)gpu[i] - cpu[i]) <= floor) continue;
    char b[256];
    snprintf(b, sizeof b, "%s[%zu]: gpu %.9g cpu %.9g", what, i, gpu[i], cpu[i]);
    check::report(__FILE__, line, b);
    return;
  }
}

/* Runs `steps` CUDA steps from `init` with device buffers offset by `offset` elements (offset 1
 * makes every pointer misaligned for the vector path). */
State run_gpu(const State &init, int32_t grad_dtype, const std::vector<std::vector<uint8_t>> &grads,
              int32_t copy_dtype, bool with_copy, int64_t n, const Hyper &h, const float *scale,
              int64_t offset, bool reference) {
  const int64_t gsize = grad_dtype == MOE4J_DTYPE_BF16 ? 2 : 4;
  const int64_t csize = copy_dtype == MOE4J_DTYPE_F32 ? 4 : 2;
  gpu::DeviceBuffer<float> dp(n + offset), dm(n + offset), dv(n + offset), dscale(1);
  gpu::DeviceBuffer<uint8_t> dg((n + offset) * gsize), dc((n + offset) * csize + 16);
  CHECK(cudaMemcpy(dp.ptr + offset, init.p.data(), n * 4, cudaMemcpyHostToDevice) == cudaSuccess);
  CHECK(cudaMemcpy(dm.ptr + offset, init.m.data(), n * 4, cudaMemcpyHostToDevice) == cudaSuccess);
  CHECK(cudaMemcpy(dv.ptr + offset, init.v.data(), n * 4, cudaMemcpyHostToDevice) == cudaSuccess);
  CHECK(cudaMemset(dc.ptr, 0xA5, dc.count) == cudaSuccess);
  if (scale) CHECK(cudaMemcpy(dscale.ptr, scale, 4, cudaMemcpyHostToDevice) == cudaSuccess);
  CHECK(moe4j_cuda_use_reference_kernels(reference ? 1 : 0) == MOE4J_OK);
  for (size_t s = 0; s < grads.size(); s++) {
    CHECK(cudaMemcpy(dg.ptr + offset * gsize, grads[s].data(), n * gsize, cudaMemcpyHostToDevice) ==
          cudaSuccess);
    CHECK_STATUS(moe4j_cuda_adamw_step(dp.ptr + offset, grad_dtype, dg.ptr + offset * gsize,
                                       dm.ptr + offset, dv.ptr + offset, copy_dtype,
                                       with_copy ? dc.ptr + offset * csize : nullptr, n, h.lr,
                                       h.beta1, h.beta2, h.eps, h.weight_decay, (int64_t)s + 1,
                                       scale ? dscale.ptr : nullptr, nullptr),
                 MOE4J_OK);
  }
  gpu::sync();
  CHECK(moe4j_cuda_use_reference_kernels(0) == MOE4J_OK);
  State out{std::vector<float>(n), std::vector<float>(n), std::vector<float>(n), {}};
  CHECK(cudaMemcpy(out.p.data(), dp.ptr + offset, n * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(cudaMemcpy(out.m.data(), dm.ptr + offset, n * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(cudaMemcpy(out.v.data(), dv.ptr + offset, n * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  out.copy = dc.download();
  return out;
}

State run_cpu(const State &init, int32_t grad_dtype,
              const std::vector<std::vector<uint8_t>> &grads, int64_t n, const Hyper &h,
              const float *scale) {
  State s = init;
  for (size_t k = 0; k < grads.size(); k++)
    CHECK_STATUS(moe4j_cpu_adamw_step(s.p.data(), grad_dtype, grads[k].data(), s.m.data(),
                                      s.v.data(), MOE4J_DTYPE_F32, nullptr, n, h.lr, h.beta1,
                                      h.beta2, h.eps, h.weight_decay, (int64_t)k + 1, scale),
                 MOE4J_OK);
  return s;
}

std::vector<std::vector<uint8_t>> make_grads(int32_t grad_dtype, int64_t n, int steps, uint64_t seed) {
  std::vector<std::vector<uint8_t>> out;
  for (int s = 0; s < steps; s++) {
    auto g = check::randn(n, seed + s);
    std::vector<uint8_t> bytes(n * (grad_dtype == MOE4J_DTYPE_BF16 ? 2 : 4));
    if (grad_dtype == MOE4J_DTYPE_BF16) {
      for (int64_t i = 0; i < n; i++) ((uint16_t *)bytes.data())[i] = f32_to_bf16_bits(g[i]);
    } else {
      memcpy(bytes.data(), g.data(), n * 4);
    }
    out.push_back(std::move(bytes));
  }
  return out;
}

bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

}  // namespace

TEST_CASE(fast_and_reference_match_cpu_twin) {
  Hyper h;
  for (int64_t n : {1, 3, 4, 5, 255, 1023, 16385, 1000003}) {
    /* mid-training state, all nonzero so a misplaced m/v load shows; v >= 1e-3 keeps
     * sqrt(v_hat) >= ~0.5, so the few-ulp m differences near cancellation stay tiny in the update */
    State init{check::randn(n, 500 + n), check::randn(n, 501 + n, 0.1f), check::randn(n, 502 + n, 0.1f), {}};
    for (auto &x : init.v) x = x * x + 1e-3f;
    for (int32_t gdt : {MOE4J_DTYPE_F32, MOE4J_DTYPE_BF16}) {
      auto grads = make_grads(gdt, n, 3, 600 + n);
      State cpu = run_cpu(init, gdt, grads, n, h, nullptr);
      for (int64_t offset : {0, 1}) {
        State fast = run_gpu(init, gdt, grads, MOE4J_DTYPE_BF16, true, n, h, nullptr, offset, false);
        State ref = run_gpu(init, gdt, grads, MOE4J_DTYPE_BF16, true, n, h, nullptr, offset, true);
        CHECK(same_bits(fast.p, ref.p) && same_bits(fast.m, ref.m) && same_bits(fast.v, ref.v));
        CHECK(fast.copy == ref.copy);
        check_close(fast.p, cpu.p, 1e-5 * h.lr, "param", __LINE__); /* update error ~ ulps of lr */
        check_close(fast.m, cpu.m, 1e-6, "m", __LINE__);            /* ~10 ulp of the O(0.1) terms */
        check_close(fast.v, cpu.v, 1e-12, "v", __LINE__);
      }
    }
  }
}

TEST_CASE(param_copy_is_the_rounded_param_in_every_dtype) {
  Hyper h;
  for (int64_t n : {7, 4096, 100003}) {
    State init{check::randn(n, 700 + n), std::vector<float>(n, 0.0f), std::vector<float>(n, 0.0f), {}};
    auto grads = make_grads(MOE4J_DTYPE_F32, n, 1, 800 + n);
    for (int32_t cdt : {MOE4J_DTYPE_BF16, MOE4J_DTYPE_F16, MOE4J_DTYPE_F32}) {
      for (int64_t offset : {0, 1}) {
        State g = run_gpu(init, MOE4J_DTYPE_F32, grads, cdt, true, n, h, nullptr, offset, false);
        const int64_t csize = cdt == MOE4J_DTYPE_F32 ? 4 : 2;
        const uint8_t *c = g.copy.data() + offset * csize;
        bool ok = true;
        for (int64_t i = 0; i < n && ok; i++) {
          if (cdt == MOE4J_DTYPE_BF16) ok = ((const uint16_t *)c)[i] == f32_to_bf16_bits(g.p[i]);
          else if (cdt == MOE4J_DTYPE_F16) ok = ((const uint16_t *)c)[i] == f32_to_f16_bits(g.p[i]);
          else ok = memcmp(c + 4 * i, &g.p[i], 4) == 0;
        }
        CHECK(ok);
        for (size_t i = (offset + n) * csize; i < g.copy.size(); i++) CHECK(g.copy[i] == 0xA5);
        for (int64_t i = 0; i < offset * csize; i++) CHECK(g.copy[i] == 0xA5);
      }
    }
    /* no copy at all: same state */
    State with = run_gpu(init, MOE4J_DTYPE_F32, grads, MOE4J_DTYPE_BF16, true, n, h, nullptr, 0, false);
    State without = run_gpu(init, MOE4J_DTYPE_F32, grads, MOE4J_DTYPE_BF16, false, n, h, nullptr, 0, false);
    CHECK(same_bits(with.p, without.p) && same_bits(with.m, without.m));
    for (uint8_t b : without.copy) CHECK(b == 0xA5);
  }
}

TEST_CASE(grad_scale_is_read_from_device_memory) {
  Hyper h;
  int64_t n = 100003;
  State init{check::randn(n, 900), std::vector<float>(n, 0.0f), std::vector<float>(n, 0.0f), {}};
  auto grads = make_grads(MOE4J_DTYPE_F32, n, 2, 901);
  float one = 1.0f, scale = 0.37f;
  State a = run_gpu(init, MOE4J_DTYPE_F32, grads, MOE4J_DTYPE_BF16, false, n, h, nullptr, 0, false);
  State b = run_gpu(init, MOE4J_DTYPE_F32, grads, MOE4J_DTYPE_BF16, false, n, h, &one, 0, false);
  CHECK(same_bits(a.p, b.p) && same_bits(a.m, b.m) && same_bits(a.v, b.v));
  for (bool reference : {false, true}) {
    State g = run_gpu(init, MOE4J_DTYPE_F32, grads, MOE4J_DTYPE_BF16, false, n, h, &scale, 0, reference);
    State c = run_cpu(init, MOE4J_DTYPE_F32, grads, n, h, &scale);
    check_close(g.p, c.p, 1e-5 * h.lr, "param", __LINE__);
    check_close(g.m, c.m, 1e-6, "m", __LINE__);
    check_close(g.v, c.v, 1e-12, "v", __LINE__);
  }
}

TEST_CASE(clip_coefficient_feeds_the_step_without_host_round_trip) {
  /* sum_squares -> clip_coefficient -> adamw_step(grad_scale = &out[1]), all on the device */
  Hyper h;
  int64_t n = 65537;
  auto p0 = check::randn(n, 950), g = check::randn(n, 951, 10.0f);
  gpu::DeviceBuffer<float> dp(p0), dg(g), dm(std::vector<float>(n, 0.0f)), dv(std::vector<float>(n, 0.0f));
  gpu::DeviceBuffer<float> dsum(1), dclip(2);
  CHECK_STATUS(moe4j_cuda_sum_squares(MOE4J_DTYPE_F32, dg.ptr, n, dsum.ptr, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_clip_coefficient(dsum.ptr, 1, 1.0f, dclip.ptr, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_adamw_step(dp.ptr, MOE4J_DTYPE_F32, dg.ptr, dm.ptr, dv.ptr, MOE4J_DTYPE_F32,
                                     nullptr, n, h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, 1,
                                     dclip.ptr + 1, nullptr),
               MOE4J_OK);
  gpu::sync();
  float sum, clip[2];
  std::vector<float> p = p0, m(n, 0.0f), v(n, 0.0f);
  CHECK(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, g.data(), n, &sum) == MOE4J_OK);
  CHECK(moe4j_cpu_clip_coefficient(&sum, 1, 1.0f, clip) == MOE4J_OK);
  CHECK(clip[1] < 0.01f); /* norm ~ 10 * sqrt(n): really clipped */
  CHECK(moe4j_cpu_adamw_step(p.data(), MOE4J_DTYPE_F32, g.data(), m.data(), v.data(), MOE4J_DTYPE_F32,
                             nullptr, n, h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, 1,
                             &clip[1]) == MOE4J_OK);
  auto dclip_host = dclip.download();
  CHECK(ulp_distance(dclip_host[1], clip[1]) <= 1); /* sums agree to an ulp (see test_grad_norm) */
  check_close(dp.download(), p, 1e-5 * h.lr, "param", __LINE__);
  check_close(dm.download(), m, 1e-6, "m", __LINE__);
}

TEST_CASE(bad_arguments_fail_without_launch) {
  gpu::DeviceBuffer<float> d(64);
  float *p = d.ptr, *m = d.ptr + 16, *v = d.ptr + 32, *g = d.ptr + 48;
  const int32_t F32 = MOE4J_DTYPE_F32, INV = MOE4J_ERR_INVALID_ARGUMENT;
  CHECK_FAILS(moe4j_cuda_adamw_step(p, F32, g, m, v, F32, nullptr, 16, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 0, nullptr, nullptr), INV, "step must be >= 1");
  CHECK_FAILS(moe4j_cuda_adamw_step(p, F32, g, m, v, F32, nullptr, 16, 1e-3f, 1.0f, 0.999f, 1e-8f, 0, 1, nullptr, nullptr), INV, "beta1 must be in [0, 1)");
  CHECK_FAILS(moe4j_cuda_adamw_step(p, F32, g, m, v, F32, nullptr, 16, NAN, 0.9f, 0.999f, 1e-8f, 0, 1, nullptr, nullptr), INV, "lr must be in [0, inf)");
  CHECK_FAILS(moe4j_cuda_adamw_step(p, F32, g, nullptr, v, F32, nullptr, 16, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1, nullptr, nullptr), INV, "m is NULL");
  CHECK_FAILS(moe4j_cuda_adamw_step(p, F32, g, m, m + 4, F32, nullptr, 16, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1, nullptr, nullptr), INV, "m and v overlap");
  CHECK_FAILS(moe4j_cuda_adamw_step(p, MOE4J_DTYPE_F16, g, m, v, F32, nullptr, 16, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1, nullptr, nullptr), MOE4J_ERR_UNSUPPORTED, "grad_dtype");
  CHECK_FAILS(moe4j_cuda_adamw_step(p, F32, g, m, v, F32, nullptr, -1, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1, nullptr, nullptr), INV, "n must be >= 0");
  CHECK_FAILS(moe4j_cuda_adamw_step(p, F32, g, m, v, MOE4J_DTYPE_I64, p + 8, 8, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1, nullptr, nullptr), MOE4J_ERR_UNSUPPORTED, "copy_dtype");
  CHECK_FAILS(moe4j_cuda_adamw_step(p, F32, g, m, v, MOE4J_DTYPE_BF16, g, 16, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1, nullptr, nullptr), INV, "param_copy overlaps");
  CHECK_FAILS(moe4j_cuda_adamw_step(p, F32, g, m, v, F32, nullptr, 16, 1e-3f, 0.9f, 0.999f, 0.0f, 0, 1, nullptr, nullptr), INV, "eps");
  CHECK_FAILS(moe4j_cuda_adamw_step(p, F32, g, m, v, F32, nullptr, 16, 1e-3f, 0.9f, 0.999f, 1e-8f, -1.0f, 1, nullptr, nullptr), INV, "weight_decay");
  CHECK_FAILS(moe4j_cuda_adamw_step(p, F32, g, m, v, F32, nullptr, 16, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1, (const float *)((char *)g + 2), nullptr), INV, "grad_scale (address");
  /* n = 0: validated, nothing launched, message cleared */
  CHECK_STATUS(moe4j_cuda_adamw_step(nullptr, F32, nullptr, nullptr, nullptr, F32, nullptr, 0, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1, nullptr, nullptr), MOE4J_OK);
  CHECK(moe4j_cuda_last_error()[0] == '\0');
}

GPU_TEST_MAIN("gpu_adamw")
