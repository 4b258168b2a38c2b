/*
 * Element-wise kernels: add, scale, copy, dtype casts (F32/BF16/F16).
 *
 * Memory-bound grid-stride loops; one thread per element per stride. The bf16/f16 conversions are
 * the shared numerics.h functions, so results are bit-identical to the CPU twin
 * (native/src/cpu_elementwise.cpp). Each launcher validates, launches on the caller's stream and
 * checks the launch.
 * Device code: kernels/elementwise_kernels.cuh (also run on the CPU under the warp emulator by
 * native/tests/test_elementwise_emulated.cpp); this file holds the launchers and the C ABI.
 */
#include "cuda_check.cuh"
#include "elementwise_kernels.cuh"
#include "op_args.h"

namespace moe4j {

template <typename S>
static void launch_cast_from(const S *src, int32_t dst_dtype, void *dst, int64_t n,
                             cudaStream_t stream) {
  unsigned int blocks = blocks_for(n, kElementwiseThreads);
  switch (dst_dtype) {
    case MOE4J_DTYPE_F32:
      cast_kernel<<<blocks, kElementwiseThreads, 0, stream>>>(src, (float *)dst, n);
      break;
    case MOE4J_DTYPE_BF16:
      cast_kernel<<<blocks, kElementwiseThreads, 0, stream>>>(src, (bf16_t *)dst, n);
      break;
    default:
      cast_kernel<<<blocks, kElementwiseThreads, 0, stream>>>(src, (f16_t *)dst, n);
      break;
  }
}

}  // namespace moe4j

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_add(int32_t dtype, const void *a, const void *b, void *out, int64_t n,
                       void *stream) {
  const char *fn = "moe4j_cuda_add";
  ArgCheck chk(fn);
  check_add(chk, dtype, a, b, out, n);
  if (chk.failed()) return chk.status();
  if (n == 0) return MOE4J_OK;
  unsigned int blocks = blocks_for(n, kElementwiseThreads);
  if (dtype == MOE4J_DTYPE_BF16)
    add_kernel<<<blocks, kElementwiseThreads, 0, as_stream(stream)>>>(
        (const bf16_t *)a, (const bf16_t *)b, (bf16_t *)out, n);
  else
    add_kernel<<<blocks, kElementwiseThreads, 0, as_stream(stream)>>>(
        (const float *)a, (const float *)b, (float *)out, n);
  return check_launch(fn, "add_kernel");
}

int32_t moe4j_cuda_scale(int32_t dtype, const void *x, void *out, int64_t n, float alpha,
                         void *stream) {
  const char *fn = "moe4j_cuda_scale";
  ArgCheck chk(fn);
  check_scale(chk, dtype, x, out, n, alpha);
  if (chk.failed()) return chk.status();
  if (n == 0) return MOE4J_OK;
  unsigned int blocks = blocks_for(n, kElementwiseThreads);
  if (dtype == MOE4J_DTYPE_BF16)
    scale_kernel<<<blocks, kElementwiseThreads, 0, as_stream(stream)>>>(
        (const bf16_t *)x, (bf16_t *)out, n, alpha);
  else
    scale_kernel<<<blocks, kElementwiseThreads, 0, as_stream(stream)>>>(
        (const float *)x, (float *)out, n, alpha);
  return check_launch(fn, "scale_kernel");
}

int32_t moe4j_cuda_copy(const void *src, void *dst, int64_t bytes, void *stream) {
  const char *fn = "moe4j_cuda_copy";
  ArgCheck chk(fn);
  check_copy(chk, src, dst, bytes);
  if (chk.failed()) return chk.status();
  if (bytes == 0) return MOE4J_OK;
  return cuda_status(cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDeviceToDevice,
                                     as_stream(stream)),
                     fn, "cudaMemcpyAsync");
}

int32_t moe4j_cuda_cast(int32_t src_dtype, const void *src, int32_t dst_dtype, void *dst,
                        int64_t n, void *stream) {
  const char *fn = "moe4j_cuda_cast";
  ArgCheck chk(fn);
  check_cast(chk, src_dtype, src, dst_dtype, dst, n);
  if (chk.failed()) return chk.status();
  if (n == 0) return MOE4J_OK;
  switch (src_dtype) {
    case MOE4J_DTYPE_F32: launch_cast_from((const float *)src, dst_dtype, dst, n, as_stream(stream)); break;
    case MOE4J_DTYPE_BF16: launch_cast_from((const bf16_t *)src, dst_dtype, dst, n, as_stream(stream)); break;
    default: launch_cast_from((const f16_t *)src, dst_dtype, dst, n, as_stream(stream)); break;
  }
  return check_launch(fn, "cast_kernel");
}

}  // extern "C"
