/*
 * CPU twins of the global gradient norm pieces (kernels/grad_norm.cu): sum of squares of one
 * tensor, and the global L2 norm plus clip coefficient from the per-tensor sums.
 *
 * sum_squares: n is split into fixed kSumSquaresBlock-element blocks (a constant, never derived
 * from the thread count). Each block is summed into kLanes lanes, element i of the block going to
 * lane i % kLanes, lanes combined in lane order; block totals are combined in block order. The
 * lanes and totals are double: the square of an f32 is exact in double (24+24 bits < 53), so
 * acc + x*x rounds the same whether or not the compiler contracts it into an FMA, and the result
 * is bitwise identical across SIMD clones and thread counts, and accurate to well under an f32 ulp
 * before the single final rounding to float.
 *
 * clip_coefficient: partials summed in index order in double; norm = sqrt(sum);
 * coef = min(1, max_norm / (norm + 1e-6)) with NaN kept: a NaN norm (a NaN gradient, or a
 * negative partial) gives a NaN coefficient, so a broken gradient shows up as NaN weights after
 * the step instead of a min() silently returning 1; an infinite norm gives coefficient 0, as
 * torch.nn.utils.clip_grad_norm_ does (its infinite gradients then become NaN in the step).
 */
#include <math.h>
#include <stdlib.h>

#include "cpu_common.h"
#include "op_args.h"

using namespace moe4j;

namespace {

/* Elements per block of the fixed summation tree (64 KiB of f32). */
constexpr int64_t kSumSquaresBlock = 16384;

template <typename T>
MOE4J_SIMD_CLONES double block_sum_squares(const T *__restrict__ x, int64_t n) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; l++) {
      double e = (double)to_f32(x[i + l]);
      acc[l] += e * e;
    }
  }
  for (int l = 0; i + l < n; l++) {
    double e = (double)to_f32(x[i + l]);
    acc[l] += e * e;
  }
  double total = 0.0;
  for (int l = 0; l < kLanes; l++) total += acc[l];
  return total;
}

template <typename T>
double sum_squares_blocks(const T *x, int64_t n, double *block_totals) {
  int64_t blocks = (n + kSumSquaresBlock - 1) / kSumSquaresBlock;
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; b++) {
    int64_t s = b * kSumSquaresBlock;
    int64_t count = n - s < kSumSquaresBlock ? n - s : kSumSquaresBlock;
    block_totals[b] = block_sum_squares(x + s, count);
  }
  double total = 0.0;
  for (int64_t b = 0; b < blocks; b++) total += block_totals[b];
  return total;
}

}  // namespace

extern "C" {

int32_t moe4j_cpu_sum_squares(int32_t dtype, const void *x, int64_t n, float *out) {
  ArgCheck chk("moe4j_cpu_sum_squares");
  check_sum_squares(chk, dtype, x, n, out);
  if (chk.failed()) return chk.status();
  if (n == 0) {
    out[0] = 0.0f;
    return MOE4J_OK;
  }
  int64_t blocks = (n + kSumSquaresBlock - 1) / kSumSquaresBlock;
  double one_block;
  double *block_totals = blocks == 1 ? &one_block : (double *)malloc((size_t)blocks * sizeof(double));
  if (block_totals == nullptr)
    return fail(MOE4J_ERR_OUT_OF_MEMORY,
                "moe4j_cpu_sum_squares: out of host memory for %lld block totals",
                (long long)blocks);
  double total = 0.0;
  if (dtype == MOE4J_DTYPE_BF16)
    total = sum_squares_blocks((const bf16_t *)x, n, block_totals);
  else
    total = sum_squares_blocks((const float *)x, n, block_totals);
  if (block_totals != &one_block) free(block_totals);
  out[0] = (float)total;
  return MOE4J_OK;
}

int32_t moe4j_cpu_clip_coefficient(const float *partials, int64_t count, float max_norm,
                                   float *out) {
  ArgCheck chk("moe4j_cpu_clip_coefficient");
  check_clip_coefficient(chk, partials, count, max_norm, out);
  if (chk.failed()) return chk.status();
  double total = 0.0;
  for (int64_t i = 0; i < count; i++) total += (double)partials[i];
  double norm = sqrt(total);
  double coef = (double)max_norm / (norm + 1e-6);
  coef = coef > 1.0 ? 1.0 : coef; /* a NaN coefficient stays NaN */
  out[0] = (float)norm;
  out[1] = (float)coef;
  return MOE4J_OK;
}

}  // extern "C"
