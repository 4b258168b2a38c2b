/* CUDA sum_squares (fast single-block and reference) and clip_coefficient against the CPU twins.
 *
 * Expectation: both sides accumulate exact f32 squares in double and round once to float, so
 * sum_squares agrees with the CPU to within 1 ulp (the two double sums, in different orders, may
 * straddle a float rounding boundary) and is bitwise identical run to run. clip_coefficient runs
 * the CPU's arithmetic (index-order double sum, IEEE sqrt and division) in one thread: bitwise. */
#include <string.h>

#include "gpu_test.h"
#include "numerics.h"

using namespace moe4j;

namespace {

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

uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* Sum of squares of n elements at byte offset `offset_elems` (exercises the unaligned head). */
float gpu_sum_squares(int32_t dtype, const void *host, int64_t n, int64_t offset_elems,
                      bool reference) {
  const int64_t size = dtype == MOE4J_DTYPE_BF16 ? 2 : 4;
  gpu::DeviceBuffer<uint8_t> dx((n + offset_elems) * size + 1);
  gpu::DeviceBuffer<float> dout(2);
  if (n) CHECK(cudaMemcpy(dx.ptr + offset_elems * size, host, n * size, cudaMemcpyHostToDevice) == cudaSuccess);
  CHECK(cudaMemset(dout.ptr, 0xff, 8) == cudaSuccess);
  CHECK(moe4j_cuda_use_reference_kernels(reference ? 1 : 0) == MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_sum_squares(dtype, dx.ptr + offset_elems * size, n, dout.ptr, nullptr), MOE4J_OK);
  CHECK(moe4j_cuda_use_reference_kernels(0) == MOE4J_OK);
  gpu::sync();
  auto out = dout.download();
  CHECK(bits(out[1]) == 0xffffffffu); /* nothing written past out[0] */
  return out[0];
}

}  // namespace

TEST_CASE(sum_squares_matches_cpu_twin_within_one_ulp) {
  for (int64_t n : {0, 1, 3, 7, 8, 9, 1023, 4096, 16385, 1000003, (1 << 24) + 5}) {
    auto x = check::randn(n, 1100 + n, 3.0f);
    std::vector<uint16_t> xb(n);
    for (int64_t i = 0; i < n; i++) xb[i] = f32_to_bf16_bits(x[i]);
    float cf, cb;
    CHECK(moe4j_cpu_sum_squares(MOE4J_DTYPE_F32, x.data(), n, &cf) == MOE4J_OK);
    CHECK(moe4j_cpu_sum_squares(MOE4J_DTYPE_BF16, xb.data(), n, &cb) == MOE4J_OK);
    for (int64_t offset : {0, 1, 3, 5}) {
      for (bool reference : {false, true}) {
        if (reference && n > 2000000) continue; /* one thread: keep the test short */
        float gf = gpu_sum_squares(MOE4J_DTYPE_F32, x.data(), n, offset, reference);
        float gb = gpu_sum_squares(MOE4J_DTYPE_BF16, xb.data(), n, offset, reference);
        CHECK(ulp_distance(gf, cf) <= 1);
        CHECK(ulp_distance(gb, cb) <= 1);
      }
    }
  }
}

TEST_CASE(sum_squares_is_bitwise_reproducible) {
  int64_t n = 3000017;
  auto x = check::randn(n, 1200);
  for (int64_t i = 0; i < n; i += 101) x[i] *= 1000.0f;
  float first = gpu_sum_squares(MOE4J_DTYPE_F32, x.data(), n, 0, false);
  for (int run = 0; run < 3; run++) CHECK(bits(gpu_sum_squares(MOE4J_DTYPE_F32, x.data(), n, 0, false)) == bits(first));
  std::vector<float> z(1000, 0.0f);
  z[999] = NAN;
  CHECK(isnan(gpu_sum_squares(MOE4J_DTYPE_F32, z.data(), 1000, 0, false)));
  z[999] = INFINITY;
  CHECK(gpu_sum_squares(MOE4J_DTYPE_F32, z.data(), 1000, 0, false) == INFINITY);
  z[999] = 0.0f;
  CHECK(gpu_sum_squares(MOE4J_DTYPE_F32, z.data(), 1000, 0, false) == 0.0f);
}

TEST_CASE(clip_coefficient_matches_cpu_bitwise) {
  auto x = check::randn(1001, 1300);
  std::vector<float> parts(1001);
  for (size_t i = 0; i < parts.size(); i++) parts[i] = x[i] * x[i];
  std::vector<std::vector<float>> cases = {
      parts, {9.0f, 16.0f}, {0.0f, 0.0f}, {}, {1.0f, NAN, 4.0f}, {1.0f, INFINITY}, {3e38f, 3e38f}};
  for (auto &c : cases) {
    for (float max_norm : {1.0f, 5.0f, 10.0f, 1e30f}) {
      float cpu[2];
      CHECK(moe4j_cpu_clip_coefficient(c.data(), (int64_t)c.size(), max_norm, cpu) == MOE4J_OK);
      gpu::DeviceBuffer<float> dp(c), dout(3);
      CHECK(cudaMemset(dout.ptr, 0xff, 12) == cudaSuccess);
      CHECK_STATUS(moe4j_cuda_clip_coefficient(c.empty() ? nullptr : dp.ptr, (int64_t)c.size(),
                                               max_norm, dout.ptr, nullptr),
                   MOE4J_OK);
      gpu::sync();
      auto g = dout.download();
      CHECK(bits(g[0]) == bits(cpu[0]) || (isnan(g[0]) && isnan(cpu[0])));
      CHECK(bits(g[1]) == bits(cpu[1]) || (isnan(g[1]) && isnan(cpu[1])));
      CHECK(bits(g[2]) == 0xffffffffu);
    }
  }
}

TEST_CASE(bad_arguments_fail_without_launch) {
  gpu::DeviceBuffer<float> d(16);
  const int32_t INV = MOE4J_ERR_INVALID_ARGUMENT;
  CHECK_FAILS(moe4j_cuda_sum_squares(MOE4J_DTYPE_F16, d.ptr, 8, d.ptr + 8, nullptr), MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16");
  CHECK_FAILS(moe4j_cuda_sum_squares(MOE4J_DTYPE_F32, d.ptr, -1, d.ptr + 8, nullptr), INV, "n must be >= 0");
  CHECK_FAILS(moe4j_cuda_sum_squares(MOE4J_DTYPE_F32, nullptr, 8, d.ptr + 8, nullptr), INV, "x is NULL");
  CHECK_FAILS(moe4j_cuda_sum_squares(MOE4J_DTYPE_F32, d.ptr, 8, nullptr, nullptr), INV, "out is NULL");
  CHECK_FAILS(moe4j_cuda_sum_squares(MOE4J_DTYPE_F32, d.ptr, 8, d.ptr + 3, nullptr), INV, "x and out overlap");
  CHECK_FAILS(moe4j_cuda_clip_coefficient(d.ptr, -2, 1.0f, d.ptr + 8, nullptr), INV, "count must be >= 0");
  CHECK_FAILS(moe4j_cuda_clip_coefficient(d.ptr, 4, NAN, d.ptr + 8, nullptr), INV, "max_norm");
  CHECK_FAILS(moe4j_cuda_clip_coefficient(nullptr, 4, 1.0f, d.ptr + 8, nullptr), INV, "partials is NULL");
  CHECK_FAILS(moe4j_cuda_clip_coefficient(d.ptr, 4, 1.0f, d.ptr + 3, nullptr), INV, "partials and out overlap");
}

GPU_TEST_MAIN("gpu_grad_norm")
