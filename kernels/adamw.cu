/*
 * Fused AdamW step (PyTorch torch.optim.AdamW: decoupled weight decay, bias correction).
 *
 * Layout: param, m, v are F32 [n] master state updated in place; grad is F32 or BF16 [n];
 * param_copy (optional) receives the updated param in BF16, F16 or F32, so the low-precision
 * weights of the next forward come out of the same pass. grad_scale is a DEVICE address (or
 * NULL = 1): the clip coefficient written by moe4j_cuda_clip_coefficient feeds the step without a
 * host round trip. bias1 = 1 - beta1^step and bias2 = 1 - beta2^step are computed by the launcher
 * in double and passed as float.
 *
 * Why this shape: the step is purely memory bound (14-16 bytes read and 12-16 written per
 * element), so the only thing that matters is full-width memory transactions. adamw_step_kernel is
 * a grid-stride loop over groups of 4 elements with 16-byte loads/stores (8-byte for 4 bf16/f16)
 * when every pointer is aligned for that, then a bounds-checked scalar tail; misaligned pointers
 * take the scalar loop for all elements. adamw_step_ref is the obviously correct one element per
 * thread version, selected by moe4j_cuda_use_reference_kernels.
 *
 * Numerics: the element update is moe4j::adamw_update (numerics.h), shared with the CPU twin
 * (native/src/cpu_adamw.cpp). sqrtf and '/' are IEEE correctly rounded (no fast-math), but nvcc
 * contracts a*b + c into FMAs and the CPU library is built without contraction, so CPU and GPU
 * agree to a few ulp, not bitwise; the fast and reference kernels here are bitwise equal.
 * Device code: kernels/adamw_kernels.cuh (also run on the CPU under the warp emulator by
 * native/tests/test_adamw_emulated.cpp); this file holds the launchers and the C ABI.
 */
#include <math.h>

#include "adamw_kernels.cuh"
#include "cuda_check.cuh"
#include "op_args.h"

namespace moe4j {

static bool aligned_to(const void *p, uintptr_t bytes) { return ((uintptr_t)p % bytes) == 0; }

template <typename G, typename C>
static void launch_adamw(float *param, const G *grad, float *m, float *v, C *copy, int64_t n,
                         const AdamwHyper &h, const float *grad_scale, cudaStream_t stream) {
  if (reference_kernels_enabled()) {
    adamw_step_ref<<<blocks_for(n, kAdamwThreads), kAdamwThreads, 0, stream>>>(
        param, grad, m, v, copy, n, h, grad_scale);
    return;
  }
  const bool vec = aligned_to(param, 16) && aligned_to(m, 16) && aligned_to(v, 16) &&
                   aligned_to(grad, 4 * sizeof(G)) &&
                   (copy == nullptr || aligned_to(copy, 4 * sizeof(C)));
  const int64_t n_vec = vec ? n / 4 : 0;
  const unsigned int blocks = blocks_for(vec ? (n + 3) / 4 : n, kAdamwThreads);
  adamw_step_kernel<<<blocks, kAdamwThreads, 0, stream>>>(param, grad, m, v, copy, n, n_vec, h,
                                                          grad_scale);
}

template <typename G>
static void launch_adamw_copy(float *param, const G *grad, float *m, float *v, int32_t copy_dtype,
                              void *param_copy, int64_t n, const AdamwHyper &h,
                              const float *grad_scale, cudaStream_t stream) {
  if (param_copy == nullptr) {
    launch_adamw(param, grad, m, v, (NoCopy *)nullptr, n, h, grad_scale, stream);
    return;
  }
  switch (copy_dtype) {
    case MOE4J_DTYPE_F32:
      launch_adamw(param, grad, m, v, (float *)param_copy, n, h, grad_scale, stream);
      break;
    case MOE4J_DTYPE_BF16:
      launch_adamw(param, grad, m, v, (bf16_t *)param_copy, n, h, grad_scale, stream);
      break;
    default:
      launch_adamw(param, grad, m, v, (f16_t *)param_copy, n, h, grad_scale, stream);
      break;
  }
}

}  // namespace moe4j

using namespace moe4j;

extern "C" {

int32_t moe4j_cuda_adamw_step(float *param, int32_t grad_dtype, const void *grad, float *m,
                              float *v, int32_t copy_dtype, void *param_copy, int64_t n, float lr,
                              float beta1, float beta2, float eps, float weight_decay,
                              int64_t step, const float *grad_scale, void *stream) {
  const char *fn = "moe4j_cuda_adamw_step";
  ArgCheck chk(fn);
  check_adamw_step(chk, param, grad_dtype, grad, m, v, copy_dtype, param_copy, n, lr, beta1, beta2,
                   eps, weight_decay, step, grad_scale);
  if (chk.failed()) return chk.status();
  if (n == 0) return MOE4J_OK;

  const AdamwHyper h = adamw_hyper(lr, beta1, beta2, eps, weight_decay, step);
  if (grad_dtype == MOE4J_DTYPE_BF16)
    launch_adamw_copy(param, (const bf16_t *)grad, m, v, copy_dtype, param_copy, n, h, grad_scale,
                      as_stream(stream));
  else
    launch_adamw_copy(param, (const float *)grad, m, v, copy_dtype, param_copy, n, h, grad_scale,
                      as_stream(stream));
  return check_launch(fn, reference_kernels_enabled() ? "adamw_step_ref" : "adamw_step_kernel");
}

}  // extern "C"
