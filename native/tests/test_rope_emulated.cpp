/* The RoPE (the per-token shared cos/sin table) CUDA kernels (kernels/rope_kernels.cuh, the very code kernels/rope.cu compiles for
 * the GPU) run on the CPU under the warp emulator (warp_emulator.h), launched as the .cu entry
 * points launch them, against the CPU twin with the GPU test's rules
 * (kernels/tests/test_rope.cpp): bitwise (both sides use glibc sin/cos here and the same table). Grids of grid-stride kernels are kept small so
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
#include "../../kernels/rope_kernels.cuh"

using namespace moe4j;
using namespace emulated_compare;

namespace {

/* ---- RoPE: rope.cu's rope_launch (grid capped; 2 blocks here) ---- */

template <typename S>
void rope_case(int64_t tokens, int64_t heads, int64_t D) {
  using T = std::conditional_t<sizeof(S) == 2, bf16_t, float>;
  const int32_t dt = sizeof(S) == 2 ? BF16 : F32;
  const float theta = 10000.0f;
  const auto x = encode<S>(check::randn(tokens * heads * D, 61 + D));
  std::vector<int32_t> pos(tokens);
  for (int64_t t = 0; t < tokens; t++) pos[t] = (int32_t)(t * 997 % 5000);
  std::vector<S> y(x.size()), dx(x.size()), gy(x.size()), gdx(x.size());
  CHECK_STATUS(moe4j_cpu_rope_forward(dt, x.data(), y.data(), pos.data(), tokens, heads, D, theta), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_rope_backward(dt, y.data(), dx.data(), pos.data(), tokens, heads, D, theta), MOE4J_OK);
  const RopeFreqs freqs = rope_fill_freqs(D, theta);
  const int half = (int)(D / 2);
  emu::run_grid(dim3{2, 1, 1}, kRopeThreads, [&] { rope_kernel<T>((const T *)x.data(), (T *)gy.data(), pos.data(), tokens, heads, half, freqs, 1.0f); });
  emu::run_grid(dim3{2, 1, 1}, kRopeThreads, [&] { rope_kernel<T>((const T *)y.data(), (T *)gdx.data(), pos.data(), tokens, heads, half, freqs, -1.0f); });
  EXPECT(same_bytes(gy, y) && same_bytes(gdx, dx), "rope (bitwise with glibc sin/cos)", tokens, D);
}

}  // namespace

TEST_CASE(rope) {
  rope_case<float>(9, 3, 64);
  rope_case<uint16_t>(5, 2, 128);
  rope_case<float>(4, 1, 6);
}

TEST_MAIN("rope_emulated")
