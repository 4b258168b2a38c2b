/* CUDA SwiGLU against the CPU twin in separate, combined (in_stride = 2 * cols) and padded layouts.
 * Device and host expf differ by a few ulps, so values are compared with a tolerance; the
 * elements outside the layout must stay untouched. The setting of
 * moe4j_cuda_use_reference_kernels must not change anything (SwiGLU has one kernel). */
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

/* Device vs CPU: expf differs by <= 2 ulps on the device, <= 1 in glibc; with the add, divide and
 * multiplies, f32 values differ by < 8 ulps (1e-6 relative) of the terms; bf16 values can round
 * to the neighbouring bf16 (one ulp, 2^-7 relative). */
template <typename S>
bool close(S got, S want, double term_scale) {
  double g = val(got), w = val(want);
  double rel = sizeof(S) == 4 ? 1e-6 : 1.0 / 128 + 1e-6;
  return fabs(g - w) <= rel * fabs(w) + 1e-6 * term_scale + 1e-30;
}

template <typename S>
void compare(int64_t rows, int64_t cols, int layout, bool reference) {
  const int32_t dt = dtype_of<S>();
  const int64_t stride = layout == 0 ? cols : layout == 1 ? 2 * cols : cols + 3;
  const bool combined = layout == 1;
  const size_t in_elems = rows * stride + 4, n = rows * cols;
  const size_t up_off = combined ? cols : 0;
  auto g = check::randn(n, 100 + rows + cols, 3.0f), u = check::randn(n, 200 + cols),
       d = check::randn(n, 300 + rows);
  std::vector<S> gate(in_elems, sentinel<S>()), up(in_elems, sentinel<S>()), dout(n);
  std::vector<S> &ups = combined ? gate : up;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) {
      gate[r * stride + c] = enc<S>(g[r * cols + c]);
      ups[up_off + r * stride + c] = enc<S>(u[r * cols + c]);
      dout[r * cols + c] = enc<S>(d[r * cols + c]);
    }
  std::vector<S> out_cpu(n), dgate_cpu(in_elems, sentinel<S>()), dup_cpu(in_elems, sentinel<S>());
  std::vector<S> &dups_cpu = combined ? dgate_cpu : dup_cpu;
  CHECK_STATUS(moe4j_cpu_swiglu_forward(dt, gate.data(), ups.data() + up_off, out_cpu.data(), rows, cols, stride), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_swiglu_backward(dt, gate.data(), ups.data() + up_off, dout.data(), dgate_cpu.data(), dups_cpu.data() + up_off, rows, cols, stride), MOE4J_OK);

  CHECK_STATUS(moe4j_cuda_use_reference_kernels(reference ? 1 : 0), MOE4J_OK);
  gpu::DeviceBuffer<S> d_gate(gate), d_up(up), d_dout(dout);
  gpu::DeviceBuffer<S> d_out(std::vector<S>(n + 8, sentinel<S>())),
      d_dgate(std::vector<S>(in_elems, sentinel<S>())), d_dup(std::vector<S>(in_elems, sentinel<S>()));
  S *d_ups = combined ? d_gate.ptr : d_up.ptr, *d_dups = combined ? d_dgate.ptr : d_dup.ptr;
  CHECK_STATUS(moe4j_cuda_swiglu_forward(dt, d_gate.ptr, d_ups + up_off, d_out.ptr, rows, cols, stride, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_swiglu_backward(dt, d_gate.ptr, d_ups + up_off, d_dout.ptr, d_dgate.ptr, d_dups + up_off, rows, cols, stride, nullptr), MOE4J_OK);
  gpu::sync();
  CHECK_STATUS(moe4j_cuda_use_reference_kernels(0), MOE4J_OK);
  auto out = d_out.download(), dgate = d_dgate.download();
  auto dup = combined ? dgate : d_dup.download();
  int bad = 0;
  for (size_t i = 0; i < n + 8; i++) {
    if (i >= n) {
      S s = sentinel<S>();
      if (memcmp(&out[i], &s, sizeof(S)) != 0) bad++;
    } else if (!close(out[i], out_cpu[i], 0.0)) {
      bad++;
    }
  }
  /* every element of the input layout: owned ones close to the CPU, the rest untouched (the CPU
   * twin leaves them at the sentinel too, so compare bitwise there) */
  std::vector<char> owned(in_elems, 0);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) {
      owned[r * stride + c] = 1;
      owned[up_off + r * stride + c] = combined ? 2 : 1;
    }
  for (size_t k = 0; k < in_elems; k++) {
    if (!owned[k]) {
      if (memcmp(&dgate[k], &dgate_cpu[k], sizeof(S)) != 0) bad++;
      if (!combined && memcmp(&dup[k], &dup_cpu[k], sizeof(S)) != 0) bad++;
      continue;
    }
    if (combined && owned[k] == 2) {
      if (!close(dgate[k], dgate_cpu[k], 0.0)) bad++; /* dup half of the combined buffer */
      continue;
    }
    /* silu'(g) = s + g s (1 - s): errors relative to |dout * up| times the terms */
    size_t r = k / stride, c = k % stride;
    double gv = val(gate[k]), uv = val(ups[up_off + r * stride + c]), dv = val(dout[r * cols + c]);
    double s = 1.0 / (1.0 + exp(-gv));
    double scale = fabs(dv * uv) * (s + fabs(gv) * s * (1 - s));
    if (!close(dgate[k], dgate_cpu[k], scale)) bad++;
    if (!combined && !close(dup[k], dup_cpu[k], 0.0)) bad++;
  }
  if (bad) {
    fprintf(stderr, "    %s rows %lld cols %lld layout %d: %d elements differ\n",
            sizeof(S) == 4 ? "F32" : "BF16", (long long)rows, (long long)cols, layout, bad);
    CHECK(bad == 0);
  }
}

}  // namespace

TEST_CASE(kernels_match_cpu_twin_in_every_layout) {
  for (int64_t rows : {0, 1, 3, 17, 64, 1000})
    for (int64_t cols : {1, 7, 31, 128, 4099})
      for (int layout = 0; layout < 3; layout++) {
        compare<float>(rows, cols, layout, false);
        compare<uint16_t>(rows, cols, layout, layout == 2);
      }
}

TEST_CASE(many_rows_use_the_grid_stride) {
  compare<uint16_t>(70000, 3, 1, false); /* more rows than gridDim.y (65535) */
}

TEST_CASE(bad_arguments_fail_without_launch) {
  gpu::DeviceBuffer<float> b(64);
  const int32_t F = MOE4J_DTYPE_F32, E = MOE4J_ERR_INVALID_ARGUMENT;
  float *g = b.ptr, *u = b.ptr + 8, *o = b.ptr + 16, *d = b.ptr + 24, *dg = b.ptr + 32, *du = b.ptr + 40;
  CHECK_FAILS(moe4j_cuda_swiglu_forward(MOE4J_DTYPE_I32, g, u, o, 2, 4, 4, nullptr), MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16");
  CHECK_FAILS(moe4j_cuda_swiglu_forward(F, g, u, o, -1, 4, 4, nullptr), E, "rows must be >= 0");
  CHECK_FAILS(moe4j_cuda_swiglu_forward(F, g, u, o, 2, -4, 4, nullptr), E, "cols must be >= 0");
  CHECK_FAILS(moe4j_cuda_swiglu_forward(F, g, u, o, 2, 4, 3, nullptr), E, "in_stride must be >= 4, got 3");
  CHECK_FAILS(moe4j_cuda_swiglu_forward(F, g, u, o, INT64_MAX / 4, 4, 8, nullptr), E, "overflows");
  CHECK_FAILS(moe4j_cuda_swiglu_forward(F, nullptr, u, o, 2, 4, 4, nullptr), E, "gate is NULL");
  CHECK_FAILS(moe4j_cuda_swiglu_forward(F, g, nullptr, o, 2, 4, 4, nullptr), E, "up is NULL");
  CHECK_FAILS(moe4j_cuda_swiglu_forward(F, g, u, nullptr, 2, 4, 4, nullptr), E, "out is NULL");
  CHECK_FAILS(moe4j_cuda_swiglu_forward(F, (char *)g + 2, u, o, 2, 4, 4, nullptr), E, "gate (address");
  CHECK_FAILS(moe4j_cuda_swiglu_backward(MOE4J_DTYPE_F16, g, u, d, dg, du, 2, 4, 4, nullptr), MOE4J_ERR_UNSUPPORTED, "dtype");
  CHECK_FAILS(moe4j_cuda_swiglu_backward(F, g, u, d, dg, du, -1, 4, 4, nullptr), E, "rows must be >= 0");
  CHECK_FAILS(moe4j_cuda_swiglu_backward(F, g, u, d, dg, du, 2, -1, 4, nullptr), E, "cols must be >= 0");
  CHECK_FAILS(moe4j_cuda_swiglu_backward(F, g, u, d, dg, du, 2, 4, 1, nullptr), E, "in_stride must be >= 4");
  CHECK_FAILS(moe4j_cuda_swiglu_backward(F, g, u, d, dg, du, 3, 4, INT64_MAX / 3, nullptr), E, "overflows");
  CHECK_FAILS(moe4j_cuda_swiglu_backward(F, nullptr, u, d, dg, du, 2, 4, 4, nullptr), E, "gate is NULL");
  CHECK_FAILS(moe4j_cuda_swiglu_backward(F, g, nullptr, d, dg, du, 2, 4, 4, nullptr), E, "up is NULL");
  CHECK_FAILS(moe4j_cuda_swiglu_backward(F, g, u, nullptr, dg, du, 2, 4, 4, nullptr), E, "dout is NULL");
  CHECK_FAILS(moe4j_cuda_swiglu_backward(F, g, u, d, nullptr, du, 2, 4, 4, nullptr), E, "dgate is NULL");
  CHECK_FAILS(moe4j_cuda_swiglu_backward(F, g, u, d, dg, nullptr, 2, 4, 4, nullptr), E, "dup is NULL");
  CHECK_STATUS(moe4j_cuda_swiglu_forward(F, nullptr, nullptr, nullptr, 0, 4, 8, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_swiglu_backward(F, nullptr, nullptr, nullptr, nullptr, nullptr, 5, 0, 0, nullptr), MOE4J_OK);
  gpu::sync();
}

GPU_TEST_MAIN("gpu_swiglu")
