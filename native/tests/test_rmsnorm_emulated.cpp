/* The RMSNorm (forward, dx, 2-D dweight blocks, reference kernels) CUDA kernels (kernels/rmsnorm_kernels.cuh, the very code kernels/rmsnorm.cu compiles for
 * the GPU) run on the CPU under the warp emulator (warp_emulator.h), launched as the .cu entry
 * points launch them, against the CPU twin with the GPU test's rules
 * (kernels/tests/test_rmsnorm.cpp): y, rstd and dx within f32 rounding of a reordered sum, dweight and the reference kernels bitwise. Grids of grid-stride kernels are kept small so
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
#include "../../kernels/rmsnorm_kernels.cuh"

using namespace moe4j;
using namespace emulated_compare;

namespace {

/* ---- RMSNorm: rmsnorm.cu's launch_forward / launch_backward ---- */

template <typename T, int V, int TPR>
void rms_forward(const T *x, const T *w, T *y, float *rstd, int64_t rows, int64_t cols, float eps) {
  emu::run_grid(dim3{2, 1, 1}, kRmsThreads, [&] { rmsnorm_forward_kernel<T, V, TPR>(x, w, y, rstd, rows, cols, eps); });
}

template <typename T, int V, int TPR>
void rms_dx(const T *dy, const T *x, const T *w, const float *rstd, T *dx, int64_t rows, int64_t cols) {
  emu::run_grid(dim3{2, 1, 1}, kRmsThreads, [&] { rmsnorm_backward_dx_kernel<T, V, TPR>(dy, x, w, rstd, dx, rows, cols); });
}

template <typename S>
void rmsnorm_case(int64_t rows, int64_t cols, bool ref) {
  using T = std::conditional_t<sizeof(S) == 2, bf16_t, float>;
  constexpr int V = 16 / sizeof(T);
  const int32_t dt = sizeof(S) == 2 ? BF16 : F32;
  const auto x = encode<S>(check::randn(rows * cols, 11 + cols)), w = encode<S>(check::randn(cols, 12, 0.5f)),
             dy = encode<S>(check::randn(rows * cols, 13));
  const float eps = 1e-6f;
  std::vector<S> y(rows * cols), dx(rows * cols), gy(rows * cols), gdx(rows * cols);
  std::vector<float> rstd(rows), dw(cols, 0.25f), grstd(rows), gdw(cols, 0.25f);
  CHECK_STATUS(moe4j_cpu_rmsnorm_forward(dt, x.data(), w.data(), y.data(), rstd.data(), rows, cols, eps), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_rmsnorm_backward(dt, dy.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(), rows, cols, 1), MOE4J_OK);
  const T *xp = (const T *)x.data(), *wp = (const T *)w.data(), *dyp = (const T *)dy.data();
  const int64_t block_rows = rmsnorm_dweight_block_rows(rows), blocks = (rows + block_rows - 1) / block_rows;
  if (ref) {
    emu::run_grid(dim3{2, 1, 1}, kRefThreads, [&] { rmsnorm_forward_ref<T>(xp, wp, (T *)gy.data(), grstd.data(), rows, cols, eps); });
    emu::run_grid(dim3{2, 1, 1}, kRefThreads, [&] { rmsnorm_backward_ref<T>(dyp, xp, wp, rstd.data(), (T *)gdx.data(), rows, cols); });
    emu::run_grid(dim3{2, 1, 1}, kRefThreads, [&] { rmsnorm_dweight_ref<T>(dyp, xp, rstd.data(), gdw.data(), rows, cols, block_rows, 1); });
  } else {
    const bool vec = cols % V == 0, warp_rows = cols <= kRmsWarpRowMaxCols; /* vectors are 16-byte aligned */
    if (vec && warp_rows) rms_forward<T, V, 32>(xp, wp, (T *)gy.data(), grstd.data(), rows, cols, eps);
    else if (vec) rms_forward<T, V, kRmsThreads>(xp, wp, (T *)gy.data(), grstd.data(), rows, cols, eps);
    else if (warp_rows) rms_forward<T, 1, 32>(xp, wp, (T *)gy.data(), grstd.data(), rows, cols, eps);
    else rms_forward<T, 1, kRmsThreads>(xp, wp, (T *)gy.data(), grstd.data(), rows, cols, eps);
    if (vec && warp_rows) rms_dx<T, V, 32>(dyp, xp, wp, rstd.data(), (T *)gdx.data(), rows, cols);
    else if (vec) rms_dx<T, V, kRmsThreads>(dyp, xp, wp, rstd.data(), (T *)gdx.data(), rows, cols);
    else if (warp_rows) rms_dx<T, 1, 32>(dyp, xp, wp, rstd.data(), (T *)gdx.data(), rows, cols);
    else rms_dx<T, 1, kRmsThreads>(dyp, xp, wp, rstd.data(), (T *)gdx.data(), rows, cols);
    emu::run_grid(dim3{2, 1, 1}, dim3{kDweightCols, kDweightRowGroups, 1},
                  [&] { rmsnorm_dweight_kernel<T>(dyp, xp, rstd.data(), gdw.data(), rows, cols, block_rows, blocks, 1); });
  }
  const double rel = ref ? 0.0 : 1e-5;
  EXPECT(close(gy, y, rel, 0.0) && close(grstd, rstd, rel, 0.0), "rmsnorm forward", rows, cols);
  EXPECT(close(gdx, dx, rel, 1e-6), "rmsnorm dx", rows, cols);
  EXPECT(same_bytes(gdw, dw), "rmsnorm dweight (bitwise)", rows, cols);
}

}  // namespace

TEST_CASE(rmsnorm) {
  for (bool ref : {false, true}) {
    rmsnorm_case<float>(37, 64, ref);     /* a warp per row, vector loads */
    rmsnorm_case<uint16_t>(9, 1040, ref); /* a block per row (cols > 1024), vector loads */
    rmsnorm_case<float>(20, 30, ref);     /* scalar loads */
  }
  rmsnorm_case<float>(600, 200, false);   /* dweight: several row blocks, 7 column tiles over 2 blocks */
}

TEST_MAIN("rmsnorm_emulated")
