/*
 * Rotary position embedding (RoPE, HF rotate-half convention) and its backward.
 * CPU twin: native/src/cpu_rope.cpp; math: common/rope_math.h; argument rules: rope_args.h.
 *
 *   forward:  out[i] = x[i] cos - x[i + D/2] sin,  out[i + D/2] = x[i + D/2] cos + x[i] sin
 *   backward: the transposed rotation = the forward with sin negated (exact)
 * with angle_i = positions[t] * inv_freq_i, inv_freq_i = theta^(-2i / D).
 *
 * x, out [tokens, heads, head_dim] (out may alias x), positions I32 [tokens].
 *
 * One block per token (grid-stride over tokens beyond the grid cap). The launcher builds the
 * inverse-frequency table on the host (rope_fill_freqs, the very table the CPU twin uses) and
 * passes it by value (2 KiB kernel parameter), so angles are bitwise equal to the CPU's. The
 * block first computes cos/sin of the head_dim / 2 angles into shared memory (sincosf, full range
 * reduction), then its threads stride over the (head, i) pairs of the token: consecutive threads
 * read consecutive i of a head half, so both halves are coalesced. Each thread reads its pair
 * before writing it: in place is safe. Memory-bound; element-wise: deterministic.
 *
 * Agreement with the CPU twin: device sincosf (<= 2 ulp) vs glibc sinf/cosf (< 1 ulp) may differ
 * by a couple of ulps; the rotation is rounded identically (no FMA), so f32 outputs agree to a few
 * ulps of |x0| + |x1| and bf16 outputs to one bf16 ulp. No *_ref kernel: the op is one simple
 * kernel, so moe4j_cuda_use_reference_kernels does not affect it.
 * Device code: kernels/rope_kernels.cuh (also run on the CPU under the warp emulator by
 * native/tests/test_rope_emulated.cpp); this file holds the launchers and the C ABI.
 */
#include "cuda_check.cuh"
#include "rope_args.h"
#include "rope_kernels.cuh"

namespace moe4j {

int32_t rope_launch(const char *fn, int32_t dtype, const void *in, void *out,
                    const int32_t *positions, int64_t tokens, int64_t heads, int64_t head_dim,
                    float theta, float sign, void *stream) {
  if (tokens == 0 || heads == 0) return MOE4J_OK;
  const RopeFreqs freqs = rope_fill_freqs(head_dim, theta);
  const int half = (int)(head_dim / 2);
  const unsigned int grid = (unsigned int)(tokens < kRopeMaxGrid ? tokens : kRopeMaxGrid);
  if (dtype == MOE4J_DTYPE_BF16)
    rope_kernel<<<grid, kRopeThreads, 0, as_stream(stream)>>>(
        (const bf16_t *)in, (bf16_t *)out, positions, tokens, heads, half, freqs, sign);
  else
    rope_kernel<<<grid, kRopeThreads, 0, as_stream(stream)>>>(
        (const float *)in, (float *)out, positions, tokens, heads, half, freqs, sign);
  return check_launch(fn, "rope_kernel");
}

}  // namespace moe4j

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_rope_forward(int32_t dtype, const void *x, void *out, const int32_t *positions,
                                int64_t tokens, int64_t heads, int64_t head_dim, float theta,
                                void *stream) {
  const char *fn = "moe4j_cuda_rope_forward";
  ArgCheck chk(fn);
  check_rope_forward(chk, dtype, x, out, positions, tokens, heads, head_dim, theta);
  if (chk.failed()) return chk.status();
  return rope_launch(fn, dtype, x, out, positions, tokens, heads, head_dim, theta, 1.0f, stream);
}

int32_t moe4j_cuda_rope_backward(int32_t dtype, const void *dout, void *dx,
                                 const int32_t *positions, int64_t tokens, int64_t heads,
                                 int64_t head_dim, float theta, void *stream) {
  const char *fn = "moe4j_cuda_rope_backward";
  ArgCheck chk(fn);
  check_rope_backward(chk, dtype, dout, dx, positions, tokens, heads, head_dim, theta);
  if (chk.failed()) return chk.status();
  return rope_launch(fn, dtype, dout, dx, positions, tokens, heads, head_dim, theta, -1.0f,
                     stream);
}

}  // extern "C"
