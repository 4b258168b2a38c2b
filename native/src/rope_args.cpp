/*
 * The argument rules of RoPE (see rope_args.h). Compiled into libmoe4j_cpu and libmoe4j_cuda.
 * Sizes are checked first; byte counts are only formed once product_fits has passed.
 */
#include "rope_args.h"

#include <math.h>

namespace moe4j {

namespace {

constexpr int64_t kMaxHeadDim = 1024; /* == kRopeMaxHeadDim in kernels/common/rope_math.h */

/* The chain both directions share; `in`/`out` name the input and the output buffer. */
void check_rope(ArgCheck &chk, int32_t dtype, const char *in_name, const void *in,
                const char *out_name, void *out, const int32_t *positions, int64_t tokens,
                int64_t heads, int64_t head_dim, float theta) {
  chk.float_dtype("dtype", dtype).non_negative("tokens", tokens)
      .require(heads >= 1 || (heads == 0 && tokens == 0),
               "heads must be >= 1 (0 only when tokens is 0), got %lld", (long long)heads)
      .require(head_dim >= 2 && head_dim <= kMaxHeadDim && head_dim % 2 == 0,
               "head_dim must be even and in [2, %lld], got %lld", (long long)kMaxHeadDim,
               (long long)head_dim)
      .require(isfinite(theta) && theta > 1.0f, "theta must be finite and > 1, got %g",
               (double)theta)
      .product_fits("tokens * heads", tokens, heads);
  if (chk.failed()) return;
  chk.product_fits("tokens * heads * head_dim", tokens * heads, head_dim);
  if (chk.failed()) return;
  const int64_t n = tokens * heads * head_dim;
  const int64_t bytes = n * dtype_size(dtype);
  chk.buffer(in_name, in, n, dtype).buffer(out_name, out, n, dtype)
      .buffer("positions", positions, tokens, MOE4J_DTYPE_I32)
      .no_overlap(in_name, in, out_name, out, bytes, true)
      .require(!ranges_overlap(out, bytes, positions, tokens * 4), "%s and positions overlap",
               out_name);
}

}  // namespace

void check_rope_forward(ArgCheck &chk, int32_t dtype, const void *x, void *out,
                        const int32_t *positions, int64_t tokens, int64_t heads, int64_t head_dim,
                        float theta) {
  check_rope(chk, dtype, "x", x, "out", out, positions, tokens, heads, head_dim, theta);
}

void check_rope_backward(ArgCheck &chk, int32_t dtype, const void *dout, void *dx,
                         const int32_t *positions, int64_t tokens, int64_t heads,
                         int64_t head_dim, float theta) {
  check_rope(chk, dtype, "dout", dout, "dx", dx, positions, tokens, heads, head_dim, theta);
}

}  // namespace moe4j
