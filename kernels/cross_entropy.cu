/*
 * Fused softmax cross-entropy, forward and backward.
 *
 * Layout: logits [rows, vocab] (F32|BF16), targets I32 [rows], losses and lse F32 [rows];
 * backward writes dlogits [rows, vocab] in the logits dtype and may run in place (dlogits ==
 * logits), so a vocab-sized gradient never needs a second buffer.
 *
 * Forward: one block per row. Each thread streams its share of the row in 16-byte packs (4 f32 or
 * 8 bf16) and keeps an online-softmax pair (max, sum of exp(x - max)): raise max to the pack's max
 * (one rescale), then one expf per element. The pairs are combined with a warp butterfly and then
 * across warps through shared memory (softmax_math.h holds the combine, shared with the CPU twin
 * native/src/cpu_cross_entropy.cpp). One read of the logits; f32 accumulation.
 *   lse = max + log(sum);  loss = (max - x[target]) + log(sum)  (accurate for logits ~1e4)
 * Rows need not be 16-byte aligned (vocab is often odd): the elements before the first aligned
 * address and after the last whole pack are handled one at a time, apart from the packed loop.
 *
 * Backward: dlogits = (exp(x - lse) - onehot(target)) * grad_scale, one rounding on store. A thread
 * reads each pack and writes the same pack back, so in-place is safe (no __restrict__ on the two).
 * Packs are used when logits and dlogits are equally aligned modulo 16.
 *
 * Targets: rows whose target == ignore_index get loss 0 (lse still written) and a zero gradient
 * row. A target outside [0, vocab) cannot be reported from the device: such a row gets a NaN loss
 * and a NaN gradient row, so it cannot pass unnoticed (the CPU twin and the Java layer reject it).
 *
 * Reference kernels (moe4j_cuda_use_reference_kernels): a thread per row, two plain passes
 * (max, then sum of exp) and a plain loop for the gradient.
 * Device code: kernels/cross_entropy_kernels.cuh (also run on the CPU under the warp emulator by
 * native/tests/test_cross_entropy_emulated.cpp); this file holds the launchers and the C ABI.
 */
#include "cross_entropy_kernels.cuh"
#include "cuda_check.cuh"
#include "op_args.h"

namespace moe4j {

/* Threads per row: enough for one pack each, a multiple of 32, at most kCrossEntropyMaxThreads. */
static int cross_entropy_threads(int64_t vocab, int64_t elements_per_pack) {
  int64_t t = (vocab / elements_per_pack + 31) / 32 * 32;
  if (t < 32) t = 32;
  return (int)(t < kCrossEntropyMaxThreads ? t : kCrossEntropyMaxThreads);
}

template <typename T>
static void launch_cross_entropy_forward(const void *logits, const int32_t *targets,
                                         float *losses, float *lse, int64_t rows, int64_t vocab,
                                         int32_t ignore_index, cudaStream_t stream) {
  if (reference_kernels_enabled()) {
    cross_entropy_forward_ref<<<blocks_for(rows, kCrossEntropyRefThreads, INT32_MAX),
                                kCrossEntropyRefThreads, 0, stream>>>(
        (const T *)logits, targets, losses, lse, rows, vocab, ignore_index);
    return;
  }
  const int threads = cross_entropy_threads(vocab, Pack<T>::kCount);
  cross_entropy_forward_kernel<<<blocks_for(rows, 1), threads, 0, stream>>>(
      (const T *)logits, targets, losses, lse, rows, vocab, ignore_index);
}

template <typename T>
static void launch_cross_entropy_backward(const void *logits, const int32_t *targets,
                                          const float *lse, void *dlogits, int64_t rows,
                                          int64_t vocab, int32_t ignore_index, float grad_scale,
                                          cudaStream_t stream) {
  if (reference_kernels_enabled()) {
    cross_entropy_backward_ref<<<blocks_for(rows, kCrossEntropyRefThreads, INT32_MAX),
                                 kCrossEntropyRefThreads, 0, stream>>>(
        (const T *)logits, targets, lse, (T *)dlogits, rows, vocab, ignore_index, grad_scale);
    return;
  }
  const bool packed = ((uintptr_t)logits - (uintptr_t)dlogits) % 16u == 0;
  const int threads = cross_entropy_threads(vocab, Pack<T>::kCount);
  cross_entropy_backward_kernel<<<blocks_for(rows, 1), threads, 0, stream>>>(
      (const T *)logits, targets, lse, (T *)dlogits, rows, vocab, ignore_index, grad_scale,
      packed);
}

}  // namespace moe4j

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_cross_entropy_forward(int32_t dtype, const void *logits, const int32_t *targets,
                                         float *losses, float *lse, int64_t rows, int64_t vocab,
                                         int32_t ignore_index, void *stream) {
  const char *fn = "moe4j_cuda_cross_entropy_forward";
  ArgCheck chk(fn);
  check_cross_entropy_forward(chk, dtype, logits, targets, losses, lse, rows, vocab, ignore_index);
  if (chk.failed()) return chk.status();
  if (rows == 0) return MOE4J_OK;
  if (dtype == MOE4J_DTYPE_BF16)
    launch_cross_entropy_forward<bf16_t>(logits, targets, losses, lse, rows, vocab, ignore_index,
                                         as_stream(stream));
  else
    launch_cross_entropy_forward<float>(logits, targets, losses, lse, rows, vocab, ignore_index,
                                        as_stream(stream));
  return check_launch(fn, reference_kernels_enabled() ? "cross_entropy_forward_ref"
                                                      : "cross_entropy_forward_kernel");
}

int32_t moe4j_cuda_cross_entropy_backward(int32_t dtype, const void *logits,
                                          const int32_t *targets, const float *lse,
                                          void *dlogits, int64_t rows, int64_t vocab,
                                          int32_t ignore_index, float grad_scale, void *stream) {
  const char *fn = "moe4j_cuda_cross_entropy_backward";
  ArgCheck chk(fn);
  check_cross_entropy_backward(chk, dtype, logits, targets, lse, dlogits, rows, vocab, ignore_index,
                               grad_scale);
  if (chk.failed()) return chk.status();
  if (rows == 0) return MOE4J_OK;
  if (dtype == MOE4J_DTYPE_BF16)
    launch_cross_entropy_backward<bf16_t>(logits, targets, lse, dlogits, rows, vocab,
                                          ignore_index, grad_scale, as_stream(stream));
  else
    launch_cross_entropy_backward<float>(logits, targets, lse, dlogits, rows, vocab, ignore_index,
                                         grad_scale, as_stream(stream));
  return check_launch(fn, reference_kernels_enabled() ? "cross_entropy_backward_ref"
                                                      : "cross_entropy_backward_kernel");
}

}  // extern "C"
