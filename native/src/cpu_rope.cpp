/*
 * CPU twin of kernels/rope.cu: rotary position embedding (RoPE, HF rotate-half convention) and
 * its backward (the transposed rotation). Math: kernels/common/rope_math.h.
 *
 * x, out [tokens, heads, head_dim], positions I32 [tokens]; out may alias x (in place). The
 * inverse-frequency table is built once per call on the host (rope_fill_freqs, the same table the
 * CUDA launcher passes to its kernel). Tokens are split over OpenMP threads; per token, cos/sin of
 * the head_dim / 2 angles are computed once (scalar libm calls) and then applied to every head by
 * a SIMD-cloned loop (pure multiplies and adds; a separate variant for in place). The backward
 * is the forward with the sin table negated (exact). dtype F32|BF16: bf16 loaded to f32, rounded
 * once on store. Element-wise given the table: deterministic, independent of the thread count and
 * the SIMD variant. Accuracy vs exact math: see rope_math.h (the f32 angle dominates at large
 * positions: |angle error| <= |angle| * 2^-23, as in HF's f32 RoPE).
 */
/* Built with -ffp-contract=off (native/CMakeLists.txt): every SIMD clone rounds alike. */

#include "cpu_common.h"
#include "rope_args.h"
#include "rope_math.h"

using namespace moe4j;

namespace {

/* Rotates every head of one token: row h is x[h * 2 * half ..], pairs (i, i + half). Distinct
 * buffers only (restrict: the argument rules forbid partial overlap, and out == x goes to
 * rotate_token_in_place), so the loop vectorizes without a run-time alias check. c and s are the
 * caller's stack tables. */
template <typename T>
MOE4J_SIMD_CLONES void rotate_token(const T *__restrict x, T *__restrict out,
                                    const float *__restrict c, const float *__restrict s,
                                    int64_t heads, int64_t half) {
  for (int64_t h = 0; h < heads; h++) {
    const T *xr = x + h * 2 * half;
    T *orow = out + h * 2 * half;
    for (int64_t i = 0; i < half; i++) {
      float o0, o1;
      rope_rotate(to_f32(xr[i]), to_f32(xr[i + half]), c[i], s[i], &o0, &o1);
      orow[i] = from_f32<T>(o0);
      orow[i + half] = from_f32<T>(o1);
    }
  }
}

/* In place (out == x): pair i reads, then writes, only x[i] and x[i + half]. GCC versions the loop
 * on lo/hi overlapping, which never happens (hi = lo + half), so the vector path runs. */
template <typename T>
MOE4J_SIMD_CLONES void rotate_token_in_place(T *x, const float *__restrict c,
                                             const float *__restrict s, int64_t heads,
                                             int64_t half) {
  for (int64_t h = 0; h < heads; h++) {
    T *lo = x + h * 2 * half, *hi = lo + half;
    for (int64_t i = 0; i < half; i++) {
      float o0, o1;
      rope_rotate(to_f32(lo[i]), to_f32(hi[i]), c[i], s[i], &o0, &o1);
      lo[i] = from_f32<T>(o0);
      hi[i] = from_f32<T>(o1);
    }
  }
}

/* sign = +1 forward, -1 backward (transpose: the sin table negated). */
int32_t rope_apply(int32_t dtype, const void *in, void *out, const int32_t *positions,
                   int64_t tokens, int64_t heads, int64_t head_dim, float theta, float sign) {
  if (tokens == 0 || heads == 0) return MOE4J_OK;
  const RopeFreqs freqs = rope_fill_freqs(head_dim, theta);
  const int64_t half = head_dim / 2, row = heads * head_dim;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
#pragma omp parallel for schedule(static) if (tokens > 1 && tokens * row >= kChunk)
    for (int64_t t = 0; t < tokens; t++) {
      float c[kRopeMaxHalf], s[kRopeMaxHalf];
      for (int64_t i = 0; i < half; i++) {
        rope_sin_cos(rope_angle(positions[t], freqs.inv[i]), &c[i], &s[i]);
        s[i] *= sign;
      }
      if (in == out)
        rotate_token_in_place((T *)out + t * row, c, s, heads, half);
      else
        rotate_token((const T *)in + t * row, (T *)out + t * row, c, s, heads, half);
    }
  });
  return MOE4J_OK;
}

}  // namespace

extern "C" {

int32_t moe4j_cpu_rope_forward(int32_t dtype, const void *x, void *out, const int32_t *positions,
                               int64_t tokens, int64_t heads, int64_t head_dim, float theta) {
  ArgCheck chk("moe4j_cpu_rope_forward");
  check_rope_forward(chk, dtype, x, out, positions, tokens, heads, head_dim, theta);
  if (chk.failed()) return chk.status();
  return rope_apply(dtype, x, out, positions, tokens, heads, head_dim, theta, 1.0f);
}

int32_t moe4j_cpu_rope_backward(int32_t dtype, const void *dout, void *dx,
                                const int32_t *positions, int64_t tokens, int64_t heads,
                                int64_t head_dim, float theta) {
  ArgCheck chk("moe4j_cpu_rope_backward");
  check_rope_backward(chk, dtype, dout, dx, positions, tokens, heads, head_dim, theta);
  if (chk.failed()) return chk.status();
  return rope_apply(dtype, dout, dx, positions, tokens, heads, head_dim, theta, -1.0f);
}

}  // extern "C"
