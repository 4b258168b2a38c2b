/* CUDA element-wise kernels against the CPU twin: bitwise equal (same numerics header). */
#include "gpu_test.h"

TEST_CASE(add_scale_cast_match_cpu_twin_bitwise) {
  for (int64_t n : {1, 255, 256, 257, 1000003}) {
    auto a = check::randn(n, 11), b = check::randn(n, 12);
    std::vector<float> cpu(n);
    gpu::DeviceBuffer<float> da(a), db(b), dout(n);
    CHECK_STATUS(moe4j_cuda_add(MOE4J_DTYPE_F32, da.ptr, db.ptr, dout.ptr, n, nullptr), MOE4J_OK);
    CHECK(moe4j_cpu_add(MOE4J_DTYPE_F32, a.data(), b.data(), cpu.data(), n) == MOE4J_OK);
    gpu::sync();
    CHECK(dout.download() == cpu);
    CHECK_STATUS(moe4j_cuda_scale(MOE4J_DTYPE_F32, da.ptr, dout.ptr, n, 0.37f, nullptr), MOE4J_OK);
    CHECK(moe4j_cpu_scale(MOE4J_DTYPE_F32, a.data(), cpu.data(), n, 0.37f) == MOE4J_OK);
    gpu::sync();
    CHECK(dout.download() == cpu);
    gpu::DeviceBuffer<uint16_t> dh(n);
    std::vector<uint16_t> h(n);
    for (int32_t dt : {MOE4J_DTYPE_BF16, MOE4J_DTYPE_F16}) {
      CHECK_STATUS(moe4j_cuda_cast(MOE4J_DTYPE_F32, da.ptr, dt, dh.ptr, n, nullptr), MOE4J_OK);
      CHECK(moe4j_cpu_cast(MOE4J_DTYPE_F32, a.data(), dt, h.data(), n) == MOE4J_OK);
      gpu::sync();
      CHECK(dh.download() == h);
    }
  }
}

TEST_CASE(bad_arguments_fail_without_launch) {
  gpu::DeviceBuffer<float> d(4);
  CHECK_FAILS(moe4j_cuda_add(MOE4J_DTYPE_I64, d.ptr, d.ptr, d.ptr, 4, nullptr), MOE4J_ERR_UNSUPPORTED, "dtype");
  CHECK_FAILS(moe4j_cuda_add(MOE4J_DTYPE_F32, d.ptr, nullptr, d.ptr, 4, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "b is NULL");
  CHECK_FAILS(moe4j_cuda_copy(d.ptr, d.ptr + 1, 8, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "overlap");
}

GPU_TEST_MAIN("gpu_elementwise")
