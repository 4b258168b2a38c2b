/* The gradient norm (one-block double sum of squares with an unaligned head, clip coefficient) CUDA kernels (kernels/grad_norm_kernels.cuh, the very code kernels/grad_norm.cu compiles for
 * the GPU) run on the CPU under the warp emulator (warp_emulator.h), launched as the .cu entry
 * points launch them, against the CPU twin with the GPU test's rules
 * (kernels/tests/test_grad_norm.cpp): the sum of squares within one f32 ulp (two double sums in different orders), the reference kernel and clip coefficient bitwise. Grids of grid-stride kernels are kept small so
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
#include "../../kernels/grad_norm_kernels.cuh"

using namespace moe4j;
using namespace emulated_compare;

namespace {

/* ---- gradient norm: sum of squares (one 1024-thread block) and the clip coefficient ---- */

template <typename S>
void sum_squares_case(int64_t n, size_t offset) {
  using T = std::conditional_t<sizeof(S) == 2, bf16_t, float>;
  const int32_t dt = sizeof(S) == 2 ? BF16 : F32;
  auto buf = encode<S>(check::randn(n + offset, 31 + n));
  const S *x = buf.data() + offset; /* offset: a head before the first 16-byte boundary */
  float cpu = 0, got = NAN, got_ref = NAN;
  CHECK_STATUS(moe4j_cpu_sum_squares(dt, x, n, &cpu), MOE4J_OK);
  emu::run_grid(dim3{1, 1, 1}, kSumSquaresThreads, [&] { sum_squares_kernel<T>((const T *)x, n, &got); });
  emu::run_grid(dim3{1, 1, 1}, 32, [&] { if (threadIdx.x == 0) sum_squares_ref<T>((const T *)x, n, &got_ref); });
  EXPECT(fabsf(got - cpu) <= 1.2e-7f * cpu && got_ref == cpu, "sum_squares", n, (long long)offset);
}

}  // namespace

TEST_CASE(gradient_norm) {
  sum_squares_case<float>(10000, 1);
  sum_squares_case<uint16_t>(777, 3);
  sum_squares_case<float>(5, 0);
  std::vector<float> partials = {1.5f, 2.25f, 0.0f, 7.0f}, cpu(2), got(2, NAN);
  CHECK_STATUS(moe4j_cpu_clip_coefficient(partials.data(), 4, 1.0f, cpu.data()), MOE4J_OK);
  emu::run_grid(dim3{1, 1, 1}, 32, [&] { if (threadIdx.x == 0) clip_coefficient_kernel(partials.data(), 4, 1.0f, got.data()); });
  CHECK(same_bytes(got, cpu));
}

TEST_MAIN("grad_norm_emulated")
