/*
 * Argument rules of every op, shared by its CPU twin (native/src/cpu_<op>.cpp) and its CUDA
 * launcher (kernels/<op>.cu).
 *
 * Why this file exists: the two twins of an op must reject exactly the same calls with the same
 * messages, so the rules live here once instead of being copied into both. Each check_<op> takes
 * the parameters of the C ABI function (minus the stream) and runs the op's whole chain of checks
 * on `chk`; the caller is
 *
 *   ArgCheck chk(fn);
 *   check_<op>(chk, ...);
 *   if (chk.failed()) return chk.status();
 *
 * and the message differs between the twins only in the function name `chk` was built with.
 * Checks that read buffer contents (the CPU twins' scans of ids and targets) are not here: the
 * launchers cannot read device memory, so those stay in the CPU files, after the shared checks.
 */
#pragma once
#include <stdint.h>

#include "status.h"

namespace moe4j {

/* elementwise */
void check_add(ArgCheck &chk, int32_t dtype, const void *a, const void *b, void *out, int64_t n);
void check_scale(ArgCheck &chk, int32_t dtype, const void *x, void *out, int64_t n, float alpha);
void check_copy(ArgCheck &chk, const void *src, void *dst, int64_t bytes);
void check_cast(ArgCheck &chk, int32_t src_dtype, const void *src, int32_t dst_dtype, void *dst,
                int64_t n);

/* rmsnorm */
void check_rmsnorm_forward(ArgCheck &chk, int32_t dtype, const void *x, const void *weight,
                           void *y, float *rstd, int64_t rows, int64_t cols, float eps);
void check_rmsnorm_backward(ArgCheck &chk, int32_t dtype, const void *dy, const void *x,
                            const void *weight, const float *rstd, void *dx, float *dweight,
                            int64_t rows, int64_t cols, int32_t accumulate);

/* swiglu */
void check_swiglu_forward(ArgCheck &chk, int32_t dtype, const void *gate, const void *up,
                          void *out, int64_t rows, int64_t cols, int64_t in_stride);
void check_swiglu_backward(ArgCheck &chk, int32_t dtype, const void *gate, const void *up,
                           const void *dout, void *dgate, void *dup, int64_t rows, int64_t cols,
                           int64_t in_stride);

/* embedding (ids are not range-checked here: see the header comment) */
void check_embedding_forward(ArgCheck &chk, int32_t dtype, const void *table,
                             const int32_t *ids, void *out, int64_t num_ids, int64_t vocab,
                             int64_t dim);
void check_embedding_backward(ArgCheck &chk, int32_t dtype, const void *dout, const int32_t *ids,
                              float *dtable, int64_t num_ids, int64_t vocab, int64_t dim,
                              int32_t accumulate);

/* cross entropy (targets are not range-checked here: see the header comment) */
void check_cross_entropy_forward(ArgCheck &chk, int32_t dtype, const void *logits,
                                 const int32_t *targets, float *losses, float *lse, int64_t rows,
                                 int64_t vocab, int32_t ignore_index);
void check_cross_entropy_backward(ArgCheck &chk, int32_t dtype, const void *logits,
                                  const int32_t *targets, const float *lse, void *dlogits,
                                  int64_t rows, int64_t vocab, int32_t ignore_index,
                                  float grad_scale);

/* optimizer */
void check_adamw_step(ArgCheck &chk, float *param, int32_t grad_dtype, const void *grad, float *m,
                      float *v, int32_t copy_dtype, void *param_copy, int64_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, int64_t step,
                      const float *grad_scale);

/* grad norm */
void check_sum_squares(ArgCheck &chk, int32_t dtype, const void *x, int64_t n, float *out);
void check_clip_coefficient(ArgCheck &chk, const float *partials, int64_t count, float max_norm,
                            float *out);

}  // namespace moe4j
