/*
 * CPU twin of kernels/swiglu.cu: SwiGLU activation out = silu(gate) * up and its backward.
 *
 * Layout: gate/up (and dgate/dup) rows are in_stride elements apart: in_stride == cols for
 * separate [rows, cols] tensors, 2 * cols for one combined [rows, 2 * cols] gate|up buffer (pass
 * up = gate + cols). out/dout are [rows, cols]. dtype F32|BF16; math in f32 (swiglu_math.h), one
 * rounding on store. Work is split into (row, column chunk) pieces over OpenMP threads; each
 * piece runs a SIMD-cloned loop. Element-wise, so trivially deterministic.
 */
/* Built with -ffp-contract=off (native/CMakeLists.txt): every SIMD clone rounds alike. */

#include "cpu_common.h"
#include "op_args.h"
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

}  // namespace

extern "C" {

int32_t moe4j_cpu_swiglu_forward(int32_t dtype, const void *gate, const void *up, void *out,
                                 int64_t rows, int64_t cols, int64_t in_stride) {
  ArgCheck chk("moe4j_cpu_swiglu_forward");
  check_swiglu_forward(chk, dtype, gate, up, out, rows, cols, in_stride);
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
  check_swiglu_backward(chk, dtype, gate, up, dout, dgate, dup, rows, cols, in_stride);
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
