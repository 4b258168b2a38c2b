/* The SwiGLU forward / backward CUDA kernels (kernels/swiglu_kernels.cuh, the very code kernels/swiglu.cu compiles for
 * the GPU) run on the CPU under the warp emulator (warp_emulator.h), launched as the .cu entry
 * points launch them, against the CPU twin with the GPU test's rules
 * (kernels/tests/test_swiglu.cpp): bitwise (the same swiglu_math.h sequence; glibc expf on both sides here). Grids of grid-stride kernels are kept small so
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
#include "../../kernels/swiglu_kernels.cuh"

using namespace moe4j;
using namespace emulated_compare;

namespace {

/* swiglu.cu's grid: (column blocks, rows capped); a combined gate|up buffer (in_stride = 2 cols). */
template <typename S>
void swiglu_case(int64_t rows, int64_t cols) {
  using T = std::conditional_t<sizeof(S) == 2, bf16_t, float>;
  const int32_t dt = sizeof(S) == 2 ? BF16 : F32;
  const int64_t stride = 2 * cols;
  const auto gu = encode<S>(check::randn(rows * stride, 91 + cols, 2.0f)), dout = encode<S>(check::randn(rows * cols, 92));
  const S *gate = gu.data(), *up = gu.data() + cols;
  std::vector<S> out(rows * cols), d(rows * stride), gout(rows * cols), gd(rows * stride);
  CHECK_STATUS(moe4j_cpu_swiglu_forward(dt, gate, up, out.data(), rows, cols, stride), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_swiglu_backward(dt, gate, up, dout.data(), d.data(), d.data() + cols, rows, cols, stride), MOE4J_OK);
  const dim3 grid{1, 3, 1}; /* one column block, 3 row blocks: both loops stride */
  emu::run_grid(grid, kSwigluThreads, [&] { swiglu_forward_kernel<T>((const T *)gate, (const T *)up, (T *)gout.data(), rows, cols, stride); });
  emu::run_grid(grid, kSwigluThreads, [&] {
    swiglu_backward_kernel<T>((const T *)gate, (const T *)up, (const T *)dout.data(), (T *)gd.data(), (T *)(gd.data() + cols), rows, cols, stride);
  });
  EXPECT(same_bytes(gout, out) && same_bytes(gd, d), "swiglu", rows, cols);
}

}  // namespace

TEST_CASE(swiglu) {
  swiglu_case<float>(7, 300);
  swiglu_case<uint16_t>(5, 64);
}

TEST_MAIN("swiglu_emulated")
