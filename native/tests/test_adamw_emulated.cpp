/* The fused AdamW step CUDA kernels (kernels/adamw_kernels.cuh, the very code kernels/adamw.cu compiles for
 * the GPU) run on the CPU under the warp emulator (warp_emulator.h), launched as the .cu entry
 * points launch them, against the CPU twin with the GPU test's rules
 * (kernels/tests/test_adamw.cpp): bitwise (the same adamw_update sequence). Grids of grid-stride kernels are kept small so
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
#include "../../kernels/adamw_kernels.cuh"

using namespace moe4j;
using namespace emulated_compare;

namespace {

struct NoCopyTag {};

/* adamw.cu's launch_adamw: the vector path when param, m, v, grad and the copy are aligned. */
template <typename S, typename C>
void adamw_case(int64_t n, size_t offset, bool ref, int32_t copy_dtype) {
  using G = std::conditional_t<sizeof(S) == 2, bf16_t, float>;
  const int32_t gd = sizeof(S) == 2 ? BF16 : F32;
  const auto grad = encode<S>(check::randn(n + offset, 71 + n));
  const std::vector<float> p0 = check::randn(n + offset, 72), m0 = check::randn(n + offset, 73, 0.1f);
  std::vector<float> v0 = check::randn(n + offset, 74, 0.1f);
  for (float &x : v0) x = x * x;
  const float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gscale = 0.5f;
  const int64_t step = 7;
  /* CPU twin */
  std::vector<float> p = p0, m = m0, v = v0;
  std::vector<C> copy(n + offset);
  C *cp = copy_dtype < 0 ? nullptr : copy.data() + offset;
  CHECK_STATUS(moe4j_cpu_adamw_step(p.data() + offset, gd, grad.data() + offset, m.data() + offset, v.data() + offset,
                                    copy_dtype < 0 ? F32 : copy_dtype, cp, n, lr, b1, b2, eps, wd, step, &gscale), MOE4J_OK);
  /* emulated */
  std::vector<float> gp = p0, gm = m0, gv = v0;
  std::vector<C> gcopy(n + offset);
  const AdamwHyper h = adamw_hyper(lr, b1, b2, eps, wd, step);
  float *pp = gp.data() + offset, *mp = gm.data() + offset, *vp = gv.data() + offset;
  const G *gr = (const G *)(grad.data() + offset);
  auto launch = [&](auto *c) {
    using CT = std::remove_pointer_t<decltype(c)>;
    if (ref) {
      emu::run_grid(dim3{2, 1, 1}, kAdamwThreads, [&] { adamw_step_ref<G, CT>(pp, gr, mp, vp, c, n, h, &gscale); });
      return;
    }
    auto al = [](const void *q, uintptr_t b) { return q == nullptr || (uintptr_t)q % b == 0; };
    const bool vec = al(pp, 16) && al(mp, 16) && al(vp, 16) && al(gr, 4 * sizeof(G)) && al(c, 4 * sizeof(CT));
    emu::run_grid(dim3{2, 1, 1}, kAdamwThreads, [&] { adamw_step_kernel<G, CT>(pp, gr, mp, vp, c, n, vec ? n / 4 : 0, h, &gscale); });
  };
  if (copy_dtype < 0) launch((NoCopy *)nullptr);
  else launch((std::conditional_t<sizeof(C) == 2, bf16_t, float> *)(gcopy.data() + offset));
  EXPECT(same_bytes(gp, p) && same_bytes(gm, m) && same_bytes(gv, v), "adamw param / m / v (bitwise)", n, (long long)offset);
  if (copy_dtype >= 0) EXPECT(same_bytes(gcopy, copy), "adamw param copy (bitwise)", n, (long long)offset);
}

}  // namespace

TEST_CASE(adamw) {
  for (bool ref : {false, true}) {
    adamw_case<float, float>(1001, 0, ref, -1);       /* vector path, a scalar tail */
    adamw_case<uint16_t, uint16_t>(600, 0, ref, BF16); /* bf16 gradients, bf16 compute copy */
    adamw_case<float, float>(300, 1, ref, F32);        /* misaligned: the element path */
  }
}

TEST_MAIN("adamw_emulated")
