/* CUDA RoPE against the CPU twin: odd head counts, head_dim 2/6/64/128/1024, positions from 0 to
 * 100000 and beyond, F32 and BF16, forward and backward, in place, the grid-stride over tokens,
 * guards (elements past the output untouched), bad arguments.
 *
 * Tolerance: both twins use the same host-built inv_freq table and the same f32 angle multiply,
 * so angles are bitwise equal; the rotation is rounded identically (no FMA). Only sin/cos differ:
 * device sincosf (<= 2 ulp) vs glibc (< 1 ulp), so c and s differ by <= 3 * 2^-24 each; the outputs
 * then differ by <= (|x0| + |x1|) * 3 * 2^-24 plus the products' and sum's roundings landing
 * differently (<= 3 * 2^-24 of |x0| + |x1|): tested at (|x0| + |x1|) * 2^-20 (~2.5x margin). BF16:
 * the f32 values can round to neighbouring bf16 values: one bf16 ulp (<= 2^-7 of |value|). RoPE has
 * one kernel (no *_ref): moe4j_cuda_use_reference_kernels must not change the result. */
#include <string.h>

#include "gpu_test.h"
#include "numerics.h"

using namespace moe4j;

namespace {

template <typename S> float val(S s);
template <> float val<float>(float s) { return s; }
template <> float val<uint16_t>(uint16_t s) { return bf16_bits_to_f32(s); }
template <typename S> S enc(float f);
template <> float enc<float>(float f) { return f; }
template <> uint16_t enc<uint16_t>(float f) { return f32_to_bf16_bits(f); }
template <typename S> int32_t dtype_of() { return sizeof(S) == 4 ? MOE4J_DTYPE_F32 : MOE4J_DTYPE_BF16; }
template <typename S> S sentinel() { return enc<S>(-7.0f); }
const size_t kTail = 8;

std::vector<int32_t> positions_for(int64_t tokens, uint64_t seed) {
  std::vector<int32_t> p(tokens);
  std::mt19937_64 g(seed);
  for (int64_t t = 0; t < tokens; t++)
    p[t] = t == 0 ? 0 : t == 1 ? 100000 : t == 2 ? 1 : t == 3 ? (1 << 20) : (int32_t)(g() % 32768);
  return p;
}

template <typename S>
int32_t cpu_call(bool fwd, const S *in, S *out, const int32_t *pos, int64_t t, int64_t h, int64_t d, float theta) {
  return fwd ? moe4j_cpu_rope_forward(dtype_of<S>(), in, out, pos, t, h, d, theta)
             : moe4j_cpu_rope_backward(dtype_of<S>(), in, out, pos, t, h, d, theta);
}

template <typename S>
int32_t gpu_call(bool fwd, const S *in, S *out, const int32_t *pos, int64_t t, int64_t h, int64_t d, float theta) {
  return fwd ? moe4j_cuda_rope_forward(dtype_of<S>(), in, out, pos, t, h, d, theta, nullptr)
             : moe4j_cuda_rope_backward(dtype_of<S>(), in, out, pos, t, h, d, theta, nullptr);
}

template <typename S>
void compare(int64_t tokens, int64_t heads, int64_t head_dim, float theta, bool fwd, bool reference) {
  const size_t n = tokens * heads * head_dim;
  const int64_t half = head_dim / 2;
  auto v = check::randn(n, 100 + tokens + heads * 7 + head_dim);
  std::vector<S> x(n);
  for (size_t i = 0; i < n; i++) x[i] = enc<S>(v[i]);
  auto pos = positions_for(tokens, 5 + tokens);
  std::vector<S> want(n + kTail, sentinel<S>());
  CHECK_STATUS(cpu_call<S>(fwd, x.data(), want.data(), pos.data(), tokens, heads, head_dim, theta), MOE4J_OK);

  CHECK_STATUS(moe4j_cuda_use_reference_kernels(reference ? 1 : 0), MOE4J_OK);
  gpu::DeviceBuffer<S> d_x(x), d_in_place(x), d_out(std::vector<S>(n + kTail, sentinel<S>()));
  gpu::DeviceBuffer<int32_t> d_pos(pos);
  CHECK_STATUS(gpu_call<S>(fwd, d_x.ptr, d_out.ptr, d_pos.ptr, tokens, heads, head_dim, theta), MOE4J_OK);
  CHECK_STATUS(gpu_call<S>(fwd, d_in_place.ptr, d_in_place.ptr, d_pos.ptr, tokens, heads, head_dim, theta), MOE4J_OK);
  gpu::sync();
  CHECK_STATUS(moe4j_cuda_use_reference_kernels(0), MOE4J_OK);
  auto got = d_out.download(), in_place = d_in_place.download();
  CHECK(memcmp(got.data(), in_place.data(), n * sizeof(S)) == 0); /* in place: bitwise equal */
  int bad = 0;
  for (size_t k = n; k < n + kTail; k++)
    if (memcmp(&got[k], &want[k], sizeof(S)) != 0) bad++; /* past the end: untouched */
  for (size_t r = 0; r < (size_t)(tokens * heads); r++)
    for (int64_t i = 0; i < half; i++) {
      const size_t e0 = r * head_dim + i, e1 = e0 + half;
      const double mag = fabs(val(x[e0])) + fabs(val(x[e1]));
      for (size_t e : {e0, e1}) {
        const double g = val(got[e]), w = val(want[e]);
        const double rel = sizeof(S) == 4 ? 0.0 : 1.0 / 128;
        if (!(fabs(g - w) <= mag * ldexp(1, -20) + rel * fabs(w))) bad++;
      }
    }
  if (bad) {
    fprintf(stderr, "    %s %s T %lld H %lld D %lld: %d elements differ\n",
            sizeof(S) == 4 ? "F32" : "BF16", fwd ? "forward" : "backward", (long long)tokens,
            (long long)heads, (long long)head_dim, bad);
    CHECK(bad == 0);
  }
}

}  // namespace

TEST_CASE(kernels_match_cpu_twin) {
  for (int64_t tokens : {0, 1, 7, 300})
    for (int64_t heads : {1, 3, 5, 32})
      for (int64_t head_dim : {2, 6, 64, 128, 1024})
        for (int fwd = 0; fwd < 2; fwd++) {
          compare<float>(tokens, heads, head_dim, 10000.0f, fwd == 1, false);
          compare<uint16_t>(tokens, heads, head_dim, 500000.0f, fwd == 1, heads == 3);
        }
}

TEST_CASE(many_tokens_use_the_grid_stride) {
  compare<float>((1 << 20) + 3, 1, 2, 10000.0f, true, false); /* more tokens than the grid cap */
}

TEST_CASE(position_zero_is_the_identity_on_the_device) {
  const int64_t tokens = 5, heads = 3, d = 64, n = tokens * heads * d;
  auto x = check::randn(n, 9);
  std::vector<int32_t> pos(tokens, 0);
  gpu::DeviceBuffer<float> d_x(x), d_out(n);
  gpu::DeviceBuffer<int32_t> d_pos(pos);
  CHECK_STATUS(moe4j_cuda_rope_forward(MOE4J_DTYPE_F32, d_x.ptr, d_out.ptr, d_pos.ptr, tokens, heads, d, 1e4f, nullptr), MOE4J_OK);
  gpu::sync();
  CHECK(d_out.download() == x);
  CHECK_STATUS(moe4j_cuda_rope_backward(MOE4J_DTYPE_F32, d_x.ptr, d_out.ptr, d_pos.ptr, tokens, heads, d, 1e4f, nullptr), MOE4J_OK);
  gpu::sync();
  CHECK(d_out.download() == x);
}

TEST_CASE(bad_arguments_fail_without_launch) {
  gpu::DeviceBuffer<float> b(64);
  gpu::DeviceBuffer<int32_t> p(4);
  const int32_t F = MOE4J_DTYPE_F32, E = MOE4J_ERR_INVALID_ARGUMENT;
  CHECK_FAILS(moe4j_cuda_rope_forward(MOE4J_DTYPE_I32, b.ptr, b.ptr + 32, p.ptr, 2, 2, 4, 1e4f, nullptr), MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16");
  CHECK_FAILS(moe4j_cuda_rope_forward(F, b.ptr, b.ptr + 32, p.ptr, 2, 2, 5, 1e4f, nullptr), E, "head_dim must be even");
  CHECK_FAILS(moe4j_cuda_rope_forward(F, b.ptr, b.ptr + 1, p.ptr, 2, 2, 4, 1e4f, nullptr), E, "x and out overlap");
  CHECK_FAILS(moe4j_cuda_rope_backward(F, b.ptr, b.ptr + 32, nullptr, 2, 2, 4, 1e4f, nullptr), E, "positions is NULL");
  CHECK_FAILS(moe4j_cuda_rope_backward(F, b.ptr, b.ptr + 32, p.ptr, 2, 2, 4, 1.0f, nullptr), E, "theta must be finite and > 1");
  CHECK_STATUS(moe4j_cuda_rope_forward(F, nullptr, nullptr, nullptr, 0, 0, 4, 1e4f, nullptr), MOE4J_OK);
  gpu::sync();
}

GPU_TEST_MAIN("gpu_rope")
