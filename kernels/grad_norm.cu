/*
 * Global gradient L2 norm and clip coefficient, deterministic (no float atomics).
 *
 *   sum_squares:      out[0] = sum(x^2) over one tensor x (F32|BF16) [n].
 *   clip_coefficient: out[0] = sqrt(sum of partials[0..count)), out[1] = min(1, max_norm /
 *                     (norm + 1e-6)); partials are the per-tensor sums (one sum_squares each).
 *
 * Why one block: the ABI hands sum_squares a single output float and no scratch buffer, and the
 * launcher must not cudaMalloc, so a multi-block reduction (partials per block, then a second pass)
 * has nowhere to put its partials, and an atomic combine would not be deterministic. So
 * sum_squares_kernel is ONE block of 1024 threads that strides over the whole tensor: thread t
 * takes 16-byte vectors t, t+1024, ... (4 f32 or 8 bf16; an unaligned head of fewer than one
 * vector and the tail are done element-wise), loads 4 vectors before accumulating them so each
 * warp keeps 2 KiB in flight, and accumulates in double; then a fixed-shape double block
 * reduction. The square of an f32 is exact in double, so FMA contraction cannot change a bit, and
 * the per-thread order depends only on n and the address alignment: bitwise reproducible run to
 * run, and within an ulp of the CPU twin (both round one accurate double sum to float). One SM
 * bounds the bandwidth (roughly 100-200 GB/s); the multi-block version needs a scratch argument in
 * the ABI. sum_squares_ref is one thread with a plain double loop.
 *
 * clip_coefficient_kernel is a single thread that sums the partials in index order in double,
 * exactly like the CPU twin (native/src/cpu_grad_norm.cpp), so both give bitwise the same two
 * floats (IEEE double sqrt and division on both sides). count is the number of parameter tensors
 * (hundreds), so one thread costs microseconds. A NaN norm gives a NaN coefficient (not 1); an
 * infinite norm gives 0, as torch.nn.utils.clip_grad_norm_ does.
 * Device code: kernels/grad_norm_kernels.cuh (also run on the CPU under the warp emulator by
 * native/tests/test_grad_norm_emulated.cpp); this file holds the launchers and the C ABI.
 */
#include "cuda_check.cuh"
#include "grad_norm_kernels.cuh"
#include "op_args.h"

namespace moe4j {

template <typename T>
static void launch_sum_squares(const T *x, int64_t n, float *out, cudaStream_t stream) {
  if (reference_kernels_enabled())
    sum_squares_ref<<<1, 1, 0, stream>>>(x, n, out);
  else
    sum_squares_kernel<<<1, kSumSquaresThreads, 0, stream>>>(x, n, out);
}

}  // namespace moe4j

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_sum_squares(int32_t dtype, const void *x, int64_t n, float *out, void *stream) {
  const char *fn = "moe4j_cuda_sum_squares";
  ArgCheck chk(fn);
  check_sum_squares(chk, dtype, x, n, out);
  if (chk.failed()) return chk.status();
  /* n == 0 still launches: out[0] must become 0. */
  if (dtype == MOE4J_DTYPE_BF16)
    launch_sum_squares((const bf16_t *)x, n, out, as_stream(stream));
  else
    launch_sum_squares((const float *)x, n, out, as_stream(stream));
  return check_launch(fn, reference_kernels_enabled() ? "sum_squares_ref" : "sum_squares_kernel");
}

int32_t moe4j_cuda_clip_coefficient(const float *partials, int64_t count, float max_norm,
                                    float *out, void *stream) {
  const char *fn = "moe4j_cuda_clip_coefficient";
  ArgCheck chk(fn);
  check_clip_coefficient(chk, partials, count, max_norm, out);
  if (chk.failed()) return chk.status();
  clip_coefficient_kernel<<<1, 1, 0, as_stream(stream)>>>(partials, count, max_norm, out);
  return check_launch(fn, "clip_coefficient_kernel");
}

}  // extern "C"
