/*
 * CPU twin of the fused softmax cross-entropy kernels (kernels/cross_entropy.cu).
 *
 * Forward, per row: one pass over the logits keeps kLanes online-softmax pairs (max, sum) —
 * lane l takes elements l, l + kLanes, ... — a tile of kPerLane elements per lane at a time
 * (raise the lane max to the tile max, rescale once, add one exp per element). The lanes are
 * combined in order 0..kLanes-1 with the shared softmax_math.h combine, so the result does not
 * depend on the SIMD variant or thread count. The GPU kernel does the same with a thread per
 * "lane" and a block butterfly. lse = max + log(sum), loss = (max - x_target) + log(sum).
 *
 * Backward: dlogits = (exp(x - lse) - onehot) * grad_scale, element-wise in f32, one rounding on
 * store. Each element is read before it is written by the same iteration, so dlogits may be the
 * logits buffer itself (in place, no second vocab-sized buffer).
 *
 * Targets other than ignore_index are checked against [0, vocab) before anything is written.
 */
#include <string.h>

#include "cpu_common.h"
#include "op_args.h"
#include "softmax_math.h"

using namespace moe4j;

namespace {

/* Elements each lane takes per tile in the forward pass (one rescale per tile). */
constexpr int kPerLane = 8;

/* Fails `chk` naming the first target that is neither ignore_index nor in [0, vocab). */
void check_targets(ArgCheck &chk, const int32_t *targets, int64_t rows, int64_t vocab,
                   int32_t ignore_index) {
  if (chk.failed()) return;
  for (int64_t r = 0; r < rows; r++) {
    const int32_t t = targets[r];
    if (t != ignore_index && (t < 0 || t >= vocab)) {
      chk.require(false, "targets[%lld] = %d is out of range [0, %lld) and is not ignore_index (%d)",
                  (long long)r, t, (long long)vocab, ignore_index);
      return;
    }
  }
}

template <typename T>
MOE4J_SIMD_CLONES SoftmaxStats row_softmax_stats(const T *x, int64_t n) {
  SoftmaxStats lane[kLanes];
  for (int l = 0; l < kLanes; l++) lane[l] = softmax_stats_empty();
  constexpr int64_t kTile = (int64_t)kLanes * kPerLane;
  const int64_t full = n / kTile * kTile;
  for (int64_t b = 0; b < full; b += kTile) {
    float tile_max[kLanes];
    for (int l = 0; l < kLanes; l++) tile_max[l] = to_f32(x[b + l]);
    for (int k = 1; k < kPerLane; k++)
      for (int l = 0; l < kLanes; l++)
        tile_max[l] = fmaxf(tile_max[l], to_f32(x[b + k * kLanes + l]));
    for (int l = 0; l < kLanes; l++) softmax_raise_max(&lane[l], tile_max[l]);
    for (int k = 0; k < kPerLane; k++)
      for (int l = 0; l < kLanes; l++)
        lane[l].sum += softmax_exp(to_f32(x[b + k * kLanes + l]), lane[l].max);
  }
  for (int64_t p = full; p < n; p++) softmax_add(&lane[(p - full) % kLanes], to_f32(x[p]));
  SoftmaxStats total = lane[0];
  for (int l = 1; l < kLanes; l++) total = softmax_combine(total, lane[l]);
  return total;
}

template <typename T>
void cross_entropy_forward(const T *logits, const int32_t *targets, float *losses, float *lse,
                           int64_t rows, int64_t vocab, int32_t ignore_index) {
#pragma omp parallel for schedule(static) if (rows > 1 && rows * vocab >= kChunk)
  for (int64_t r = 0; r < rows; r++) {
    const T *x = logits + r * vocab;
    const SoftmaxStats s = row_softmax_stats(x, vocab);
    const int32_t t = targets[r];
    lse[r] = softmax_lse(s);
    losses[r] = t == ignore_index ? 0.0f : softmax_nll(s, to_f32(x[t]));
  }
}

/* One span of a row: x and dx may be the same address (in place), so no __restrict__. */
template <typename T>
MOE4J_SIMD_CLONES void cross_entropy_grad_span(const T *x, T *dx, int64_t n, int64_t target,
                                               float lse, float grad_scale) {
  for (int64_t c = 0; c < n; c++)
    dx[c] = from_f32<T>(softmax_xent_grad(to_f32(x[c]), lse, c == target, grad_scale));
}

template <typename T>
void cross_entropy_backward(const T *logits, const int32_t *targets, const float *lse, T *dlogits,
                            int64_t rows, int64_t vocab, int32_t ignore_index, float grad_scale) {
  const int64_t chunks = (vocab + kChunk - 1) / kChunk;
  const int64_t items = rows * chunks;
#pragma omp parallel for schedule(static) if (items > 1 && rows * vocab >= kChunk)
  for (int64_t item = 0; item < items; item++) {
    const int64_t r = item / chunks, c0 = (item % chunks) * kChunk;
    const int64_t n = vocab - c0 < kChunk ? vocab - c0 : kChunk;
    T *dx = dlogits + r * vocab + c0;
    const int32_t t = targets[r];
    if (t == ignore_index) {
      memset((void *)dx, 0, (size_t)n * sizeof(T));
    } else {
      cross_entropy_grad_span(logits + r * vocab + c0, dx, n, (int64_t)t - c0, lse[r], grad_scale);
    }
  }
}

}  // namespace

extern "C" {

int32_t moe4j_cpu_cross_entropy_forward(int32_t dtype, const void *logits, const int32_t *targets,
                                        float *losses, float *lse, int64_t rows, int64_t vocab,
                                        int32_t ignore_index) {
  ArgCheck chk("moe4j_cpu_cross_entropy_forward");
  check_cross_entropy_forward(chk, dtype, logits, targets, losses, lse, rows, vocab, ignore_index);
  check_targets(chk, targets, rows, vocab, ignore_index); /* CPU only: reads the targets */
  if (chk.failed()) return chk.status();
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    cross_entropy_forward((const T *)logits, targets, losses, lse, rows, vocab, ignore_index);
  });
  return MOE4J_OK;
}

int32_t moe4j_cpu_cross_entropy_backward(int32_t dtype, const void *logits, const int32_t *targets,
                                         const float *lse, void *dlogits, int64_t rows,
                                         int64_t vocab, int32_t ignore_index, float grad_scale) {
  ArgCheck chk("moe4j_cpu_cross_entropy_backward");
  check_cross_entropy_backward(chk, dtype, logits, targets, lse, dlogits, rows, vocab, ignore_index,
                               grad_scale);
  check_targets(chk, targets, rows, vocab, ignore_index); /* CPU only: reads the targets */
  if (chk.failed()) return chk.status();
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    cross_entropy_backward((const T *)logits, targets, lse, (T *)dlogits, rows, vocab,
                           ignore_index, grad_scale);
  });
  return MOE4J_OK;
}

}  // extern "C"
