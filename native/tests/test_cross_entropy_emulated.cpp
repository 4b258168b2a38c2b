/* The softmax cross-entropy (block softmax, packed and in-place backward, reference kernels) CUDA kernels (kernels/cross_entropy_kernels.cuh, the very code kernels/cross_entropy.cu compiles for
 * the GPU) run on the CPU under the warp emulator (warp_emulator.h), launched as the .cu entry
 * points launch them, against the CPU twin with the GPU test's rules
 * (kernels/tests/test_cross_entropy.cpp): losses and lse within 1e-5 (reordered sums), the backward (given the CPU lse) within 1e-6 relative. Grids of grid-stride kernels are kept small so
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
#include "../../kernels/cross_entropy_kernels.cuh"

using namespace moe4j;
using namespace emulated_compare;

namespace {

/* ---- cross-entropy: cross_entropy.cu's launchers ---- */

int ce_threads(int64_t vocab, int64_t per_pack) {
  int64_t t = (vocab / per_pack + 31) / 32 * 32;
  if (t < 32) t = 32;
  return (int)(t < kCrossEntropyMaxThreads ? t : kCrossEntropyMaxThreads);
}

template <typename S>
void cross_entropy_case(int64_t rows, int64_t vocab, bool ref) {
  using T = std::conditional_t<sizeof(S) == 2, bf16_t, float>;
  const int32_t dt = sizeof(S) == 2 ? BF16 : F32, ignore = -100;
  const auto logits = encode<S>(check::randn(rows * vocab, 21 + vocab, 3.0f));
  std::vector<int32_t> targets(rows);
  for (int64_t r = 0; r < rows; r++) targets[r] = r % 5 == 3 ? ignore : (int32_t)((r * 7919) % vocab);
  std::vector<float> loss(rows), lse(rows), gloss(rows, NAN), glse(rows, NAN);
  std::vector<S> dl(rows * vocab), gdl(rows * vocab);
  const float scale = 0.125f;
  CHECK_STATUS(moe4j_cpu_cross_entropy_forward(dt, logits.data(), targets.data(), loss.data(), lse.data(), rows, vocab, ignore), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_cross_entropy_backward(dt, logits.data(), targets.data(), lse.data(), dl.data(), rows, vocab, ignore, scale), MOE4J_OK);
  const T *lp = (const T *)logits.data();
  if (ref) {
    const unsigned g = (unsigned)((rows + kCrossEntropyRefThreads - 1) / kCrossEntropyRefThreads);
    emu::run_grid(dim3{g, 1, 1}, kCrossEntropyRefThreads, [&] { cross_entropy_forward_ref<T>(lp, targets.data(), gloss.data(), glse.data(), rows, vocab, ignore); });
    emu::run_grid(dim3{g, 1, 1}, kCrossEntropyRefThreads, [&] { cross_entropy_backward_ref<T>(lp, targets.data(), lse.data(), (T *)gdl.data(), rows, vocab, ignore, scale); });
  } else {
    const int threads = ce_threads(vocab, Pack<T>::kCount);
    const unsigned g = 2; /* the launcher gives a block per row; 2 here, so blocks loop over rows */
    emu::run_grid(dim3{g, 1, 1}, threads, [&] { cross_entropy_forward_kernel<T>(lp, targets.data(), gloss.data(), glse.data(), rows, vocab, ignore); });
    emu::run_grid(dim3{g, 1, 1}, threads, [&] { cross_entropy_backward_kernel<T>(lp, targets.data(), lse.data(), (T *)gdl.data(), rows, vocab, ignore, scale, true); });
    /* in place: dlogits over logits */
    std::vector<S> inplace = logits;
    emu::run_grid(dim3{g, 1, 1}, threads, [&] { cross_entropy_backward_kernel<T>((const T *)inplace.data(), targets.data(), lse.data(), (T *)inplace.data(), rows, vocab, ignore, scale, true); });
    EXPECT(same_bytes(inplace, gdl), "cross-entropy backward in place", rows, vocab);
  }
  EXPECT(close(gloss, loss, 1e-5, 1e-5) && close(glse, lse, 1e-5, 1e-5), "cross-entropy forward", rows, vocab);
  EXPECT(close(gdl, dl, 1e-6, 1e-9), "cross-entropy backward", rows, vocab);
}

}  // namespace

TEST_CASE(cross_entropy) {
  for (bool ref : {false, true}) {
    cross_entropy_case<float>(40, 259, ref);
    cross_entropy_case<uint16_t>(5, 3000, ref); /* 512 threads, several packs each */
  }
}

TEST_MAIN("cross_entropy_emulated")
