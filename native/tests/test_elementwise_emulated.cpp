/* The element-wise (add, scale, cast) CUDA kernels (kernels/elementwise_kernels.cuh, the very code kernels/elementwise.cu compiles for
 * the GPU) run on the CPU under the warp emulator (warp_emulator.h), launched as the .cu entry
 * points launch them, against the CPU twin with the GPU test's rules
 * (kernels/tests/test_elementwise.cpp): bitwise. Grids of grid-stride kernels are kept small so
 * every block loops.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <vector>

#include "check.h"
#include "emulated_compare.h"
#include "moe4j.h"
#include "numerics.h"
#include "warp_emulator.h"

/* the kernels under test */
#include "../../kernels/elementwise_kernels.cuh"

using namespace moe4j;
using namespace emulated_compare;

namespace {

template <typename S>
void elementwise_case(int64_t n) {
  using T = std::conditional_t<sizeof(S) == 2, bf16_t, float>;
  const int32_t dt = sizeof(S) == 2 ? BF16 : F32;
  const auto a = encode<S>(check::randn(n, 81)), b = encode<S>(check::randn(n, 82));
  std::vector<S> sum(n), scaled(n), gsum(n), gscaled(n);
  CHECK_STATUS(moe4j_cpu_add(dt, a.data(), b.data(), sum.data(), n), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_scale(dt, a.data(), scaled.data(), n, -0.375f), MOE4J_OK);
  emu::run_grid(dim3{2, 1, 1}, kElementwiseThreads, [&] { add_kernel<T>((const T *)a.data(), (const T *)b.data(), (T *)gsum.data(), n); });
  emu::run_grid(dim3{2, 1, 1}, kElementwiseThreads, [&] { scale_kernel<T>((const T *)a.data(), (T *)gscaled.data(), n, -0.375f); });
  EXPECT(same_bytes(gsum, sum) && same_bytes(gscaled, scaled), "add / scale", n, dt);
  /* casts to every float type */
  std::vector<float> f(n), gf(n);
  std::vector<uint16_t> h(n), gh(n), bb(n), gbb(n);
  CHECK_STATUS(moe4j_cpu_cast(dt, a.data(), F32, f.data(), n), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_cast(dt, a.data(), BF16, bb.data(), n), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_cast(dt, a.data(), MOE4J_DTYPE_F16, h.data(), n), MOE4J_OK);
  emu::run_grid(dim3{2, 1, 1}, kElementwiseThreads, [&] { cast_kernel<T, float>((const T *)a.data(), gf.data(), n); });
  emu::run_grid(dim3{2, 1, 1}, kElementwiseThreads, [&] { cast_kernel<T, bf16_t>((const T *)a.data(), (bf16_t *)gbb.data(), n); });
  emu::run_grid(dim3{2, 1, 1}, kElementwiseThreads, [&] { cast_kernel<T, f16_t>((const T *)a.data(), (f16_t *)gh.data(), n); });
  EXPECT(same_bytes(gf, f) && same_bytes(gbb, bb) && same_bytes(gh, h), "cast", n, dt);
}

}  // namespace

TEST_CASE(add_scale_cast) {
  elementwise_case<float>(1500);
  elementwise_case<uint16_t>(777);
}

TEST_MAIN("elementwise_emulated")
