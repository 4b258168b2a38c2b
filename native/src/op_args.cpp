/*
 * The argument rules of every op (see op_args.h). Compiled into both libmoe4j_cpu and
 * libmoe4j_cuda. A chain that needs a byte count (n * element size) stops first if the sizes
 * already failed, so the product is only formed once product_fits has passed.
 */
#include "op_args.h"

#include <math.h>

namespace moe4j {

namespace {

/* rows * cols, or 0 when it would overflow (product_fits reports that case). */
int64_t count_of(int64_t rows, int64_t cols) {
  int64_t n = 0;
  if (rows < 0 || cols < 0 || __builtin_mul_overflow(rows, cols, &n)) return 0;
  return n;
}

/* Elements a strided gate/up buffer spans: (rows - 1) * in_stride + cols, 0 when empty or when
 * it would overflow (at_least / product_fits report those cases). */
int64_t strided_span(int64_t rows, int64_t cols, int64_t in_stride) {
  if (rows <= 0 || cols <= 0 || in_stride < cols) return 0;
  int64_t n = 0;
  if (__builtin_mul_overflow(rows - 1, in_stride, &n) || __builtin_add_overflow(n, cols, &n))
    return 0;
  return n;
}

}  // namespace

/* ---- elementwise ---- */

void check_add(ArgCheck &chk, int32_t dtype, const void *a, const void *b, void *out, int64_t n) {
  chk.float_dtype("dtype", dtype).non_negative("n", n).product_fits("n", n, 1)
      .buffer("a", a, n, dtype).buffer("b", b, n, dtype).buffer("out", out, n, dtype);
}

void check_scale(ArgCheck &chk, int32_t dtype, const void *x, void *out, int64_t n, float alpha) {
  chk.float_dtype("dtype", dtype).non_negative("n", n).product_fits("n", n, 1)
      .buffer("x", x, n, dtype).buffer("out", out, n, dtype).finite("alpha", alpha);
}

void check_copy(ArgCheck &chk, const void *src, void *dst, int64_t bytes) {
  chk.non_negative("bytes", bytes).buffer("src", src, bytes, MOE4J_DTYPE_U8)
      .buffer("dst", dst, bytes, MOE4J_DTYPE_U8).no_overlap("src", src, "dst", dst, bytes, false);
}

void check_cast(ArgCheck &chk, int32_t src_dtype, const void *src, int32_t dst_dtype, void *dst,
                int64_t n) {
  chk.castable_dtype("src_dtype", src_dtype).castable_dtype("dst_dtype", dst_dtype)
      .non_negative("n", n).product_fits("n", n, 1).buffer("src", src, n, src_dtype)
      .buffer("dst", dst, n, dst_dtype);
  if (chk.failed()) return;
  chk.require(!ranges_overlap(src, n * dtype_size(src_dtype), dst, n * dtype_size(dst_dtype)),
              "src and dst overlap");
}

/* ---- rmsnorm ---- */

void check_rmsnorm_forward(ArgCheck &chk, int32_t dtype, const void *x, const void *weight,
                           void *y, float *rstd, int64_t rows, int64_t cols, float eps) {
  const int64_t n = count_of(rows, cols);
  chk.float_dtype("dtype", dtype).non_negative("rows", rows).non_negative("cols", cols)
      .require(rows == 0 || cols > 0, "cols must be > 0 when rows > 0, got %lld", (long long)cols)
      .product_fits("rows * cols", rows, cols).positive_finite("eps", eps)
      .buffer("x", x, n, dtype).buffer("weight", weight, cols, dtype).buffer("y", y, n, dtype)
      .buffer("rstd", rstd, rstd == nullptr ? 0 : rows, MOE4J_DTYPE_F32);
  if (chk.failed()) return;
  chk.no_overlap("x", x, "y", y, n * dtype_size(dtype), false);
}

void check_rmsnorm_backward(ArgCheck &chk, int32_t dtype, const void *dy, const void *x,
                            const void *weight, const float *rstd, void *dx, float *dweight,
                            int64_t rows, int64_t cols, int32_t accumulate) {
  const int64_t n = count_of(rows, cols);
  chk.float_dtype("dtype", dtype).non_negative("rows", rows).non_negative("cols", cols)
      .require(rows == 0 || cols > 0, "cols must be > 0 when rows > 0, got %lld", (long long)cols)
      .product_fits("rows * cols", rows, cols)
      .buffer("dy", dy, n, dtype).buffer("x", x, n, dtype).buffer("weight", weight, cols, dtype)
      .buffer("rstd", rstd, rows, MOE4J_DTYPE_F32).buffer("dx", dx, n, dtype)
      .buffer("dweight", dweight, cols, MOE4J_DTYPE_F32);
  if (chk.failed()) return;
  const int64_t bytes = n * dtype_size(dtype);
  chk.no_overlap("dx", dx, "dy", dy, bytes, false).no_overlap("dx", dx, "x", x, bytes, false);
}

/* ---- swiglu ---- */

void check_swiglu_forward(ArgCheck &chk, int32_t dtype, const void *gate, const void *up,
                          void *out, int64_t rows, int64_t cols, int64_t in_stride) {
  const int64_t span = strided_span(rows, cols, in_stride), n = count_of(rows, cols);
  chk.float_dtype("dtype", dtype).non_negative("rows", rows).non_negative("cols", cols)
      .at_least("in_stride", in_stride, cols).product_fits("rows * in_stride", rows, in_stride)
      .buffer("gate", gate, span, dtype).buffer("up", up, span, dtype)
      .buffer("out", out, n, dtype);
}

void check_swiglu_backward(ArgCheck &chk, int32_t dtype, const void *gate, const void *up,
                           const void *dout, void *dgate, void *dup, int64_t rows, int64_t cols,
                           int64_t in_stride) {
  const int64_t span = strided_span(rows, cols, in_stride), n = count_of(rows, cols);
  chk.float_dtype("dtype", dtype).non_negative("rows", rows).non_negative("cols", cols)
      .at_least("in_stride", in_stride, cols).product_fits("rows * in_stride", rows, in_stride)
      .buffer("gate", gate, span, dtype).buffer("up", up, span, dtype)
      .buffer("dout", dout, n, dtype).buffer("dgate", dgate, span, dtype)
      .buffer("dup", dup, span, dtype);
}

/* ---- embedding ---- */

/* The size checks both directions share. */
static void check_embedding_sizes(ArgCheck &chk, int32_t dtype, int64_t num_ids, int64_t vocab,
                                  int64_t dim) {
  chk.float_dtype("dtype", dtype).non_negative("num_ids", num_ids).non_negative("vocab", vocab)
      .non_negative("dim", dim).product_fits("num_ids * dim", num_ids, dim)
      .product_fits("vocab * dim", vocab, dim);
}

void check_embedding_forward(ArgCheck &chk, int32_t dtype, const void *table,
                             const int32_t *ids, void *out, int64_t num_ids, int64_t vocab,
                             int64_t dim) {
  check_embedding_sizes(chk, dtype, num_ids, vocab, dim);
  if (chk.failed()) return;
  const int64_t es = dtype_size(dtype);
  const int64_t out_bytes = num_ids * dim * es, table_bytes = vocab * dim * es;
  chk.buffer("table", table, vocab * dim, dtype).buffer("ids", ids, num_ids, MOE4J_DTYPE_I32)
      .buffer("out", out, num_ids * dim, dtype)
      .require(!ranges_overlap(out, out_bytes, table, table_bytes), "out and table overlap")
      .require(!ranges_overlap(out, out_bytes, ids, num_ids * 4), "out and ids overlap");
}

void check_embedding_backward(ArgCheck &chk, int32_t dtype, const void *dout, const int32_t *ids,
                              float *dtable, int64_t num_ids, int64_t vocab, int64_t dim,
                              int32_t accumulate) {
  check_embedding_sizes(chk, dtype, num_ids, vocab, dim);
  if (chk.failed()) return;
  const int64_t dtable_bytes = vocab * dim * 4;
  chk.buffer("dout", dout, num_ids * dim, dtype).buffer("ids", ids, num_ids, MOE4J_DTYPE_I32)
      .buffer("dtable", dtable, vocab * dim, MOE4J_DTYPE_F32)
      .require(!ranges_overlap(dtable, dtable_bytes, dout, num_ids * dim * dtype_size(dtype)),
               "dtable and dout overlap")
      .require(!ranges_overlap(dtable, dtable_bytes, ids, num_ids * 4), "dtable and ids overlap");
}

/* ---- cross entropy ---- */

void check_cross_entropy_forward(ArgCheck &chk, int32_t dtype, const void *logits,
                                 const int32_t *targets, float *losses, float *lse, int64_t rows,
                                 int64_t vocab, int32_t ignore_index) {
  chk.float_dtype("dtype", dtype).non_negative("rows", rows).positive("vocab", vocab)
      .product_fits("rows * vocab", rows, vocab);
  if (chk.failed()) return;
  const int64_t logits_bytes = rows * vocab * dtype_size(dtype), row_bytes = rows * 4;
  chk.buffer("logits", logits, rows * vocab, dtype)
      .buffer("targets", targets, rows, MOE4J_DTYPE_I32)
      .buffer("losses", losses, rows, MOE4J_DTYPE_F32).buffer("lse", lse, rows, MOE4J_DTYPE_F32)
      .no_overlap("losses", losses, "lse", lse, row_bytes, false)
      .require(!ranges_overlap(losses, row_bytes, logits, logits_bytes) &&
                   !ranges_overlap(lse, row_bytes, logits, logits_bytes),
               "losses/lse overlap logits")
      .require(!ranges_overlap(losses, row_bytes, targets, row_bytes) &&
                   !ranges_overlap(lse, row_bytes, targets, row_bytes),
               "losses/lse overlap targets");
}

void check_cross_entropy_backward(ArgCheck &chk, int32_t dtype, const void *logits,
                                  const int32_t *targets, const float *lse, void *dlogits,
                                  int64_t rows, int64_t vocab, int32_t ignore_index,
                                  float grad_scale) {
  chk.float_dtype("dtype", dtype).non_negative("rows", rows).positive("vocab", vocab)
      .product_fits("rows * vocab", rows, vocab).finite("grad_scale", grad_scale);
  if (chk.failed()) return;
  const int64_t logits_bytes = rows * vocab * dtype_size(dtype), row_bytes = rows * 4;
  chk.buffer("logits", logits, rows * vocab, dtype)
      .buffer("targets", targets, rows, MOE4J_DTYPE_I32).buffer("lse", lse, rows, MOE4J_DTYPE_F32)
      .buffer("dlogits", dlogits, rows * vocab, dtype)
      .no_overlap("logits", logits, "dlogits", dlogits, logits_bytes, true)
      .require(!ranges_overlap(dlogits, logits_bytes, targets, row_bytes) &&
                   !ranges_overlap(dlogits, logits_bytes, lse, row_bytes),
               "dlogits overlaps targets/lse");
}

/* ---- optimizer ---- */

void check_adamw_step(ArgCheck &chk, float *param, int32_t grad_dtype, const void *grad, float *m,
                      float *v, int32_t copy_dtype, void *param_copy, int64_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, int64_t step,
                      const float *grad_scale) {
  chk.float_dtype("grad_dtype", grad_dtype).castable_dtype("copy_dtype", copy_dtype)
      .non_negative("n", n).product_fits("n", n, 1)
      .buffer("param", param, n, MOE4J_DTYPE_F32).buffer("grad", grad, n, grad_dtype)
      .buffer("m", m, n, MOE4J_DTYPE_F32).buffer("v", v, n, MOE4J_DTYPE_F32)
      .buffer("param_copy", param_copy, param_copy != nullptr ? n : 0, copy_dtype)
      .buffer("grad_scale", grad_scale, grad_scale != nullptr ? 1 : 0, MOE4J_DTYPE_F32)
      .at_least("step", step, 1).in_range("lr", lr, 0.0f, INFINITY)
      .in_range("beta1", beta1, 0.0f, 1.0f).in_range("beta2", beta2, 0.0f, 1.0f)
      .positive_finite("eps", eps).in_range("weight_decay", weight_decay, 0.0f, INFINITY);
  if (chk.failed()) return;
  const int64_t state_bytes = n * 4;
  const int64_t grad_bytes = n * dtype_size(grad_dtype);
  const int64_t copy_bytes = param_copy != nullptr ? n * dtype_size(copy_dtype) : 0;
  chk.no_overlap("param", param, "m", m, state_bytes, false)
      .no_overlap("param", param, "v", v, state_bytes, false)
      .no_overlap("m", m, "v", v, state_bytes, false)
      .require(!ranges_overlap(grad, grad_bytes, param, state_bytes) &&
                   !ranges_overlap(grad, grad_bytes, m, state_bytes) &&
                   !ranges_overlap(grad, grad_bytes, v, state_bytes),
               "grad overlaps param, m or v")
      .require(!ranges_overlap(param_copy, copy_bytes, param, state_bytes) &&
                   !ranges_overlap(param_copy, copy_bytes, m, state_bytes) &&
                   !ranges_overlap(param_copy, copy_bytes, v, state_bytes) &&
                   !ranges_overlap(param_copy, copy_bytes, grad, grad_bytes),
               "param_copy overlaps param, m, v or grad");
}

/* ---- grad norm ---- */

void check_sum_squares(ArgCheck &chk, int32_t dtype, const void *x, int64_t n, float *out) {
  chk.float_dtype("dtype", dtype).non_negative("n", n).product_fits("n", n, 1)
      .buffer("x", x, n, dtype).buffer("out", out, 1, MOE4J_DTYPE_F32);
  if (chk.failed()) return;
  chk.require(!ranges_overlap(x, n * dtype_size(dtype), out, 4), "x and out overlap");
}

void check_clip_coefficient(ArgCheck &chk, const float *partials, int64_t count, float max_norm,
                            float *out) {
  chk.non_negative("count", count).product_fits("count", count, 1)
      .buffer("partials", partials, count, MOE4J_DTYPE_F32).buffer("out", out, 2, MOE4J_DTYPE_F32)
      .positive_finite("max_norm", max_norm);
  if (chk.failed()) return;
  chk.require(!ranges_overlap(partials, count * 4, out, 8), "partials and out overlap");
}

}  // namespace moe4j
