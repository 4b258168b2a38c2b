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
 */
#include "cuda_check.cuh"
#include "numerics.h"
#include "op_args.h"

namespace moe4j {

constexpr int kSumSquaresThreads = 1024;
constexpr int kSumSquaresUnroll = 4;

__device__ __forceinline__ double square(float x) {
  double d = (double)x;
  return d * d;
}

__device__ __forceinline__ double add_squares(double acc, uint4 q, const float *) {
  acc += square(__uint_as_float(q.x));
  acc += square(__uint_as_float(q.y));
  acc += square(__uint_as_float(q.z));
  acc += square(__uint_as_float(q.w));
  return acc;
}

__device__ __forceinline__ double add_squares(double acc, uint4 q, const bf16_t *) {
  const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
  for (int k = 0; k < 4; k++) {
    acc += square(bf16_bits_to_f32((uint16_t)(words[k] & 0xffffu)));
    acc += square(bf16_bits_to_f32((uint16_t)(words[k] >> 16)));
  }
  return acc;
}

__device__ __forceinline__ double warp_sum_double(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

/* Like block_sum in cuda_check.cuh, in double. Every thread gets the result; fixed order. */
__device__ __forceinline__ double block_sum_double(double v, double *scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum_double(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.0;
  return warp_sum_double(v);
}

/* One block of kSumSquaresThreads threads. */
template <typename T>
__global__ void __launch_bounds__(kSumSquaresThreads)
    sum_squares_kernel(const T *__restrict__ x, int64_t n, float *__restrict__ out) {
  constexpr int kVec = 16 / sizeof(T);
  __shared__ double scratch[32];
  const int64_t t = threadIdx.x, threads = blockDim.x;
  /* x is aligned to sizeof(T), so the distance to the next 16-byte boundary is whole elements. */
  int64_t head = (int64_t)(((16u - ((uintptr_t)x & 15u)) & 15u) / sizeof(T));
  if (head > n) head = n;
  const int64_t n_vec = (n - head) / kVec;
  const uint4 *body = reinterpret_cast<const uint4 *>(x + head);

  double acc = 0.0;
  if (t < head) acc = square(to_f32(x[t]));
  int64_t j = t;
  for (; j + (kSumSquaresUnroll - 1) * threads < n_vec; j += kSumSquaresUnroll * threads) {
    uint4 q[kSumSquaresUnroll];
#pragma unroll
    for (int u = 0; u < kSumSquaresUnroll; u++) q[u] = body[j + u * threads];
#pragma unroll
    for (int u = 0; u < kSumSquaresUnroll; u++) acc = add_squares(acc, q[u], x);
  }
  for (; j < n_vec; j += threads) acc = add_squares(acc, body[j], x);
  for (int64_t i = head + n_vec * kVec + t; i < n; i += threads) acc += square(to_f32(x[i]));

  const double total = block_sum_double(acc, scratch);
  if (t == 0) out[0] = (float)total;
}

template <typename T>
__global__ void sum_squares_ref(const T *x, int64_t n, float *out) {
  double acc = 0.0;
  for (int64_t i = 0; i < n; i++) acc += square(to_f32(x[i]));
  out[0] = (float)acc;
}

/* One thread: index order in double, the CPU twin's exact arithmetic. */
__global__ void clip_coefficient_kernel(const float *partials, int64_t count, float max_norm,
                                        float *out) {
  double total = 0.0;
  for (int64_t i = 0; i < count; i++) total += (double)partials[i];
  double norm = sqrt(total);
  double coef = (double)max_norm / (norm + 1e-6);
  coef = coef > 1.0 ? 1.0 : coef; /* a NaN coefficient stays NaN */
  out[0] = (float)norm;
  out[1] = (float)coef;
}

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
