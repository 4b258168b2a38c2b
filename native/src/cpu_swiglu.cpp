/*
 * CPU twin of kernels/swiglu.cu: SwiGLU activation out = silu(gate) * up and its backward.
 *
 * Layout: gate/up (and dgate/dup) rows are in_stride elements apart: in_stride == cols for
 * separate [rows, cols] tensors, 2 * cols for one combined [rows, 2 * cols] gate|up buffer (pass
 * up = gate + cols). out/dout are [rows, cols]. dtype F32|BF16; math in f32 (swiglu_math.h), one
 * rounding on store. Work is split into (row, column chunk) pieces over OpenMP threads; each
 * piece runs a SIMD-cloned loop. Element-wise, so trivially deterministic.
 */
/* No FMA contraction: the AVX2/AVX-512 clones would fuse a*b+c while the baseline clone cannot. */

#include "cpu_common.h"
#include "swiglu_math.h"

using namespace moe4j;

namespace {

template <typename T>
MOE4J_SIMD_CLONES void forward_piece(const T *gate, const T *up, T *out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = from_f32<T>(swiglu_out(to_f32(gate[i]), to_f32(up[i])));
}

template <typename T>
MOE4J_SIMD_CLONES void backward_piece(const T *gate, const T *up, const T *dout, T *dgate, T *dup,
                                      int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float g = to_f32(gate[i]), u = to_f32(up[i]), d = to_f32(dout[i]);
    dgate[i] = from_f32<T>(swiglu_dgate(g, u, d));
    dup[i] = from_f32<T>(swiglu_dup(g, d));
  }
}

/* Runs body(row, first column, count) over all rows in pieces of at most kChunk columns. */
template <typename Body>
void parallel_pieces(int64_t rows, int64_t cols, Body body) {
  if (rows == 0 || cols == 0) return;
  int64_t per_row = (cols + kChunk - 1) / kChunk;
  int64_t pieces = rows * per_row;
#pragma omp parallel for schedule(static) if (pieces > 1 && rows * cols >= kChunk)
  for (int64_t p = 0; p < pieces; p++) {
    int64_t r = p / per_row, c0 = (p % per_row) * kChunk;
    body(r, c0, cols - c0 < kChunk ? cols - c0 : kChunk);
  }
}

/* Elements a strided gate/up buffer spans: (rows - 1) * in_stride + cols, 0 when empty. Only
 * used after product_fits(rows, in_stride) and in_stride >= cols passed. */
int64_t strided_span(int64_t rows, int64_t cols, int64_t in_stride) {
  if (rows <= 0 || cols <= 0 || in_stride < cols) return 0;
  int64_t n = 0;
  if (__builtin_mul_overflow(rows - 1, in_stride, &n) || __builtin_add_overflow(n, cols, &n))
    return 0;
  return n;
}

int64_t count_of(int64_t rows, int64_t cols) {
  int64_t n = 0;
  if (rows < 0 || cols < 0 || __builtin_mul_overflow(rows, cols, &n)) return 0;
  return n;
}

}  // namespace

extern "C" {

int32_t moe4j_cpu_swiglu_forward(int32_t dtype, const void *gate, const void *up, void *out,
                                 int64_t rows, int64_t cols, int64_t in_stride) {
  ArgCheck chk("moe4j_cpu_swiglu_forward");
  const int64_t span = strided_span(rows, cols, in_stride), n = count_of(rows, cols);
  chk.float_dtype("dtype", dtype).non_negative("rows", rows).non_negative("cols", cols)
      .at_least("in_stride", in_stride, cols).product_fits("rows * in_stride", rows, in_stride)
      .buffer("gate", gate, span, dtype).buffer("up", up, span, dtype)
      .buffer("out", out, n, dtype);
  if (chk.failed()) return chk.status();
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    parallel_pieces(rows, cols, [&](int64_t r, int64_t c0, int64_t count) {
      forward_piece((const T *)gate + r * in_stride + c0, (const T *)up + r * in_stride + c0,
                    (T *)out + r * cols + c0, count);
    });
  });
  return MOE4J_OK;
}

int32_t moe4j_cpu_swiglu_backward(int32_t dtype, const void *gate, const void *up,
                                  const void *dout, void *dgate, void *dup, int64_t rows,
                                  int64_t cols, int64_t in_stride) {
  ArgCheck chk("moe4j_cpu_swiglu_backward");
  const int64_t span = strided_span(rows, cols, in_stride), n = count_of(rows, cols);
  chk.float_dtype("dtype", dtype).non_negative("rows", rows).non_negative("cols", cols)
      .at_least("in_stride", in_stride, cols).product_fits("rows * in_stride", rows, in_stride)
      .buffer("gate", gate, span, dtype).buffer("up", up, span, dtype)
      .buffer("dout", dout, n, dtype).buffer("dgate", dgate, span, dtype)
      .buffer("dup", dup, span, dtype);
  if (chk.failed()) return chk.status();
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    parallel_pieces(rows, cols, [&](int64_t r, int64_t c0, int64_t count) {
      int64_t in = r * in_stride + c0;
      backward_piece((const T *)gate + in, (const T *)up + in, (const T *)dout + r * cols + c0,
                     (T *)dgate + in, (T *)dup + in, count);
    });
  });
  return MOE4J_OK;
}

}  // extern "C"
