/*
 * CPU twin of the fused AdamW step (kernels/adamw.cu).
 *
 * Layout: param, m, v are F32 [n] master state updated in place; grad is F32 or BF16 [n];
 * param_copy (optional) receives the updated param in BF16, F16 or F32 (the low-precision weights
 * the next forward reads). One pass over memory: each element is read once and written once.
 *
 * The per-element math is moe4j::adamw_update from numerics.h, the same function the CUDA kernel
 * calls. bias1 = 1 - beta1^step and bias2 = 1 - beta2^step are computed once here in double and
 * passed as float. Element-wise, so the result does not depend on the thread count; the loop is
 * split into kChunk pieces over OpenMP threads, each piece a SIMD-cloned loop (cpu_common.h).
 * The library is built with -ffp-contract=off, so every SIMD clone rounds alike; the GPU (nvcc
 * contracts a*b + c into FMAs) may differ in the last bits.
 */
#include <math.h>

#include "cpu_common.h"
#include "op_args.h"

using namespace moe4j;

namespace {

/* param_copy == NULL: the copy store compiles away. */
struct NoCopy {};

template <typename C>
inline void store_copy(C *copy, int64_t i, float p) {
  copy[i] = from_f32<C>(p);
}
inline void store_copy(NoCopy *, int64_t, float) {}

template <typename G, typename C>
MOE4J_SIMD_CLONES void adamw_chunk(float *__restrict__ param, const G *__restrict__ grad,
                                   float *__restrict__ m, float *__restrict__ v,
                                   C *__restrict__ copy, int64_t n, AdamwHyper h,
                                   float grad_scale) {
  for (int64_t i = 0; i < n; i++) {
    float mi = m[i], vi = v[i];
    float p = adamw_update(param[i], to_f32(grad[i]) * grad_scale, &mi, &vi, h.lr, h.beta1,
                           h.beta2, h.eps, h.weight_decay, h.bias1, h.bias2);
    m[i] = mi;
    v[i] = vi;
    param[i] = p;
    store_copy(copy, i, p);
  }
}

template <typename G, typename C>
void adamw_parallel(float *param, const G *grad, float *m, float *v, C *copy, int64_t n,
                    const AdamwHyper &h, float grad_scale) {
  int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; c++) {
    int64_t s = c * kChunk;
    int64_t count = n - s < kChunk ? n - s : kChunk;
    adamw_chunk(param + s, grad + s, m + s, v + s, copy == nullptr ? nullptr : copy + s, count, h,
                grad_scale);
  }
}

template <typename G>
void adamw_dispatch_copy(float *param, const G *grad, float *m, float *v, int32_t copy_dtype,
                         void *param_copy, int64_t n, const AdamwHyper &h, float grad_scale) {
  if (param_copy == nullptr) {
    adamw_parallel(param, grad, m, v, (NoCopy *)nullptr, n, h, grad_scale);
    return;
  }
  switch (copy_dtype) {
    case MOE4J_DTYPE_F32: adamw_parallel(param, grad, m, v, (float *)param_copy, n, h, grad_scale); break;
    case MOE4J_DTYPE_BF16: adamw_parallel(param, grad, m, v, (bf16_t *)param_copy, n, h, grad_scale); break;
    default: adamw_parallel(param, grad, m, v, (f16_t *)param_copy, n, h, grad_scale); break;
  }
}

}  // namespace

extern "C" {

int32_t moe4j_cpu_adamw_step(float *param, int32_t grad_dtype, const void *grad, float *m,
                             float *v, int32_t copy_dtype, void *param_copy, int64_t n, float lr,
                             float beta1, float beta2, float eps, float weight_decay,
                             int64_t step, const float *grad_scale) {
  ArgCheck chk("moe4j_cpu_adamw_step");
  check_adamw_step(chk, param, grad_dtype, grad, m, v, copy_dtype, param_copy, n, lr, beta1, beta2,
                   eps, weight_decay, step, grad_scale);
  if (chk.failed()) return chk.status();
  if (n == 0) return MOE4J_OK;

  const AdamwHyper h = adamw_hyper(lr, beta1, beta2, eps, weight_decay, step);
  const float scale = grad_scale != nullptr ? *grad_scale : 1.0f;
  if (grad_dtype == MOE4J_DTYPE_BF16)
    adamw_dispatch_copy(param, (const bf16_t *)grad, m, v, copy_dtype, param_copy, n, h, scale);
  else
    adamw_dispatch_copy(param, (const float *)grad, m, v, copy_dtype, param_copy, n, h, scale);
  return MOE4J_OK;
}

}  // extern "C"
