/* CUDA RMSNorm (optimized and reference kernels) against the CPU twin.
 * Reference kernels run the twin's row code: bitwise equal. Optimized kernels: dweight bitwise
 * equal (same block schedule); y, rstd, dx within f32 rounding of a different reduction order. */
#include <string.h>

#include "gpu_test.h"
#include "numerics.h"

using namespace moe4j;

namespace {

constexpr size_t kGuard = 8;
constexpr float kEps = 1e-5f;

template <typename S> float val(S s);
template <> float val<float>(float s) { return s; }
template <> float val<uint16_t>(uint16_t s) { return bf16_bits_to_f32(s); }
template <typename S> S enc(float f);
template <> float enc<float>(float f) { return f; }
template <> uint16_t enc<uint16_t>(float f) { return f32_to_bf16_bits(f); }
template <typename S> int32_t dtype_of() { return sizeof(S) == 4 ? MOE4J_DTYPE_F32 : MOE4J_DTYPE_BF16; }
template <typename S> S sentinel() { return enc<S>(-7.0f); }

template <typename S>
std::vector<S> encoded(const std::vector<float> &v, size_t offset, size_t guard) {
  std::vector<S> out(offset + v.size() + guard, sentinel<S>());
  for (size_t i = 0; i < v.size(); i++) out[offset + i] = enc<S>(v[i]);
  return out;
}

/* Elements outside [offset, offset + n) still hold the sentinel. */
template <typename S>
bool only_range_written(const std::vector<S> &v, size_t offset, size_t n) {
  for (size_t i = 0; i < v.size(); i++) {
    if (i >= offset && i < offset + n) continue;
    S s = sentinel<S>();
    if (memcmp(&v[i], &s, sizeof(S)) != 0) return false;
  }
  return true;
}

/* Runs the CPU twin and the CUDA kernels on the same data and compares. `offset` elements of
 * shift on x misalign it so the optimized kernels take their scalar path. */
template <typename S>
void compare(int64_t rows, int64_t cols, size_t offset, bool reference, int32_t accumulate) {
  const int32_t dt = dtype_of<S>();
  const size_t n = rows * cols;
  auto xf = check::randn(n, 1000 + rows + cols), wf = check::randn(cols, 2000 + cols, 0.5f),
       dyf = check::randn(n, 3000 + rows + cols), prior = check::randn(cols, 4000 + cols);
  for (auto &v : wf) v += 1.0f;
  auto x = encoded<S>(xf, offset, 0), w = encoded<S>(wf, 0, 0), dy = encoded<S>(dyf, 0, 0);
  /* CPU twin */
  std::vector<S> y_cpu(n), dx_cpu(n);
  std::vector<float> rstd_cpu(rows), dw_cpu = prior;
  CHECK_STATUS(moe4j_cpu_rmsnorm_forward(dt, x.data() + offset, w.data(), y_cpu.data(), rstd_cpu.data(), rows, cols, kEps), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_rmsnorm_backward(dt, dy.data(), x.data() + offset, w.data(), rstd_cpu.data(), dx_cpu.data(), dw_cpu.data(), rows, cols, accumulate), MOE4J_OK);
  /* CUDA */
  CHECK_STATUS(moe4j_cuda_use_reference_kernels(reference ? 1 : 0), MOE4J_OK);
  gpu::DeviceBuffer<S> d_x(x), d_w(w), d_dy(dy);
  gpu::DeviceBuffer<S> d_y(std::vector<S>(n + kGuard, sentinel<S>())),
      d_dx(std::vector<S>(n + kGuard, sentinel<S>()));
  std::vector<float> rstd_init(rows + kGuard, -7.0f), dw_init(cols + kGuard, -7.0f);
  for (int64_t c = 0; c < cols; c++) dw_init[c] = prior[c];
  gpu::DeviceBuffer<float> d_rstd(rstd_init), d_dw(dw_init);
  CHECK_STATUS(moe4j_cuda_rmsnorm_forward(dt, d_x.ptr + offset, d_w.ptr, d_y.ptr, d_rstd.ptr, rows, cols, kEps, nullptr), MOE4J_OK);
  /* backward uses the CPU rstd so dx compares the backward kernels alone */
  gpu::DeviceBuffer<float> d_rstd_cpu(rstd_cpu);
  CHECK_STATUS(moe4j_cuda_rmsnorm_backward(dt, d_dy.ptr, d_x.ptr + offset, d_w.ptr, d_rstd_cpu.ptr, d_dx.ptr, d_dw.ptr, rows, cols, accumulate, nullptr), MOE4J_OK);
  gpu::sync();
  auto y = d_y.download(), dx = d_dx.download();
  auto rstd = d_rstd.download(), dw = d_dw.download();
  CHECK(only_range_written(y, 0, n) && only_range_written(dx, 0, n));
  CHECK(rstd[rows] == -7.0f && dw[cols] == -7.0f);
  /* dweight: the same block schedule everywhere */
  CHECK(memcmp(dw.data(), dw_cpu.data(), cols * sizeof(float)) == 0);
  if (reference) {
    CHECK(memcmp(y.data(), y_cpu.data(), n * sizeof(S)) == 0);
    CHECK(memcmp(rstd.data(), rstd_cpu.data(), rows * sizeof(float)) == 0);
    CHECK(memcmp(dx.data(), dx_cpu.data(), n * sizeof(S)) == 0);
  } else {
    /* Both sums are within (cols/16 + 4) 2^-24 < 1.6e-5 (4099 cols) of exact: 2e-5 apart at most
     * after the sqrt halves it; bf16 outputs may round to neighbours: one bf16 ulp (2^-7). */
    const double f32_rel = 2e-5, out_rel = sizeof(S) == 4 ? f32_rel : 1.0 / 128 + f32_rel;
    int bad = 0;
    for (int64_t r = 0; r < rows; r++) {
      if (!(fabs(rstd[r] - rstd_cpu[r]) <= f32_rel * rstd_cpu[r])) bad++;
      double rs = rstd_cpu[r], sabs = 0;
      for (int64_t c = 0; c < cols; c++)
        sabs += fabs((double)val(w[c]) * val(dy[r * cols + c]) * val(x[offset + r * cols + c]));
      for (int64_t c = 0; c < cols; c++) {
        size_t i = r * cols + c;
        double yc = val(y_cpu[i]), dxc = val(dx_cpu[i]);
        if (!(fabs(val(y[i]) - yc) <= out_rel * fabs(yc) + 1e-30)) bad++;
        /* dx is a difference of two terms: f32 errs relative to the terms */
        double scale = rs * fabs((double)val(w[c]) * val(dy[i])) + fabs(val(x[offset + i])) * rs * rs * rs * sabs / cols;
        if (!(fabs(val(dx[i]) - dxc) <= out_rel * fabs(dxc) + f32_rel * scale + 1e-30)) bad++;
      }
    }
    if (bad) {
      fprintf(stderr, "    %s rows %lld cols %lld offset %zu: %d elements differ\n",
              sizeof(S) == 4 ? "F32" : "BF16", (long long)rows, (long long)cols, offset, bad);
      CHECK(bad == 0);
    }
  }
  CHECK_STATUS(moe4j_cuda_use_reference_kernels(0), MOE4J_OK);
}

}  // namespace

TEST_CASE(reference_kernels_equal_cpu_twin_bitwise) {
  for (int64_t rows : {0, 1, 3, 17, 64, 1000})
    for (int64_t cols : {1, 7, 31, 128, 4099}) {
      compare<float>(rows, cols, 0, true, 0);
      compare<uint16_t>(rows, cols, 0, true, 1);
    }
}

TEST_CASE(optimized_kernels_match_cpu_twin) {
  /* warp-per-row (cols <= 1024) and block-per-row, vector (offset 0) and scalar (offset 1) */
  for (int64_t rows : {0, 1, 3, 17, 64, 1000, 5000})
    for (int64_t cols : {1, 7, 31, 128, 1024, 1025, 4096, 4099})
      for (size_t offset : {0, 1}) {
        compare<float>(rows, cols, offset, false, 0);
        compare<uint16_t>(rows, cols, offset, false, (int32_t)offset);
      }
}

TEST_CASE(optimized_kernels_are_deterministic) {
  int64_t rows = 4097, cols = 2048;
  auto x = check::randn(rows * cols, 5), w = check::randn(cols, 6), dy = check::randn(rows * cols, 7);
  gpu::DeviceBuffer<float> d_x(x), d_w(w), d_dy(dy), d_y(rows * cols), d_dx(rows * cols),
      d_rstd(rows), d_dw(cols);
  std::vector<float> first_y, first_dx, first_dw;
  for (int run = 0; run < 3; run++) {
    CHECK_STATUS(moe4j_cuda_rmsnorm_forward(MOE4J_DTYPE_F32, d_x.ptr, d_w.ptr, d_y.ptr, d_rstd.ptr, rows, cols, kEps, nullptr), MOE4J_OK);
    CHECK_STATUS(moe4j_cuda_rmsnorm_backward(MOE4J_DTYPE_F32, d_dy.ptr, d_x.ptr, d_w.ptr, d_rstd.ptr, d_dx.ptr, d_dw.ptr, rows, cols, 0, nullptr), MOE4J_OK);
    gpu::sync();
    if (run == 0) {
      first_y = d_y.download();
      first_dx = d_dx.download();
      first_dw = d_dw.download();
    } else {
      CHECK(d_y.download() == first_y && d_dx.download() == first_dx && d_dw.download() == first_dw);
    }
  }
}

TEST_CASE(bad_arguments_fail_without_launch) {
  gpu::DeviceBuffer<float> d(64), r(8), dw(8);
  const int32_t F = MOE4J_DTYPE_F32, E = MOE4J_ERR_INVALID_ARGUMENT;
  float *x = d.ptr, *y = d.ptr + 16, *w = d.ptr + 32, *dy = d.ptr + 40, *dx = d.ptr + 48;
  CHECK_FAILS(moe4j_cuda_rmsnorm_forward(MOE4J_DTYPE_F16, x, w, y, r.ptr, 2, 4, kEps, nullptr), MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16");
  CHECK_FAILS(moe4j_cuda_rmsnorm_forward(F, x, w, y, r.ptr, -1, 4, kEps, nullptr), E, "rows must be >= 0");
  CHECK_FAILS(moe4j_cuda_rmsnorm_forward(F, x, w, y, r.ptr, 2, -4, kEps, nullptr), E, "cols must be >= 0");
  CHECK_FAILS(moe4j_cuda_rmsnorm_forward(F, x, w, y, r.ptr, 2, 0, kEps, nullptr), E, "cols must be > 0 when rows > 0");
  CHECK_FAILS(moe4j_cuda_rmsnorm_forward(F, x, w, y, r.ptr, INT64_MAX / 2, 4, kEps, nullptr), E, "overflows");
  CHECK_FAILS(moe4j_cuda_rmsnorm_forward(F, x, w, y, r.ptr, 2, 4, 0.0f, nullptr), E, "eps must be finite and > 0");
  CHECK_FAILS(moe4j_cuda_rmsnorm_forward(F, x, w, y, r.ptr, 2, 4, INFINITY, nullptr), E, "eps");
  CHECK_FAILS(moe4j_cuda_rmsnorm_forward(F, nullptr, w, y, r.ptr, 2, 4, kEps, nullptr), E, "x is NULL");
  CHECK_FAILS(moe4j_cuda_rmsnorm_forward(F, x, nullptr, y, r.ptr, 2, 4, kEps, nullptr), E, "weight is NULL");
  CHECK_FAILS(moe4j_cuda_rmsnorm_forward(F, x, w, nullptr, r.ptr, 2, 4, kEps, nullptr), E, "y is NULL");
  CHECK_FAILS(moe4j_cuda_rmsnorm_forward(F, x, w, y, (float *)((char *)r.ptr + 2), 2, 4, kEps, nullptr), E, "rstd (address");
  CHECK_FAILS(moe4j_cuda_rmsnorm_forward(F, x, w, x + 4, r.ptr, 2, 4, kEps, nullptr), E, "x and y overlap");
  CHECK_FAILS(moe4j_cuda_rmsnorm_backward(MOE4J_DTYPE_U8, dy, x, w, r.ptr, dx, dw.ptr, 2, 4, 0, nullptr), MOE4J_ERR_UNSUPPORTED, "dtype");
  CHECK_FAILS(moe4j_cuda_rmsnorm_backward(F, dy, x, w, r.ptr, dx, dw.ptr, -2, 4, 0, nullptr), E, "rows must be >= 0");
  CHECK_FAILS(moe4j_cuda_rmsnorm_backward(F, dy, x, w, r.ptr, dx, dw.ptr, 2, -4, 0, nullptr), E, "cols must be >= 0");
  CHECK_FAILS(moe4j_cuda_rmsnorm_backward(F, dy, x, w, r.ptr, dx, dw.ptr, 3, INT64_MAX / 3, 0, nullptr), E, "overflows");
  CHECK_FAILS(moe4j_cuda_rmsnorm_backward(F, nullptr, x, w, r.ptr, dx, dw.ptr, 2, 4, 0, nullptr), E, "dy is NULL");
  CHECK_FAILS(moe4j_cuda_rmsnorm_backward(F, dy, nullptr, w, r.ptr, dx, dw.ptr, 2, 4, 0, nullptr), E, "x is NULL");
  CHECK_FAILS(moe4j_cuda_rmsnorm_backward(F, dy, x, nullptr, r.ptr, dx, dw.ptr, 2, 4, 0, nullptr), E, "weight is NULL");
  CHECK_FAILS(moe4j_cuda_rmsnorm_backward(F, dy, x, w, nullptr, dx, dw.ptr, 2, 4, 0, nullptr), E, "rstd is NULL");
  CHECK_FAILS(moe4j_cuda_rmsnorm_backward(F, dy, x, w, r.ptr, nullptr, dw.ptr, 2, 4, 0, nullptr), E, "dx is NULL");
  CHECK_FAILS(moe4j_cuda_rmsnorm_backward(F, dy, x, w, r.ptr, dx, nullptr, 2, 4, 0, nullptr), E, "dweight is NULL");
  CHECK_FAILS(moe4j_cuda_rmsnorm_backward(F, dy, x, w, r.ptr, dy, dw.ptr, 2, 4, 0, nullptr), E, "dx and dy overlap");
  CHECK_FAILS(moe4j_cuda_rmsnorm_backward(F, dy, x, w, r.ptr, x, dw.ptr, 2, 4, 0, nullptr), E, "dx and x overlap");
  CHECK_STATUS(moe4j_cuda_rmsnorm_forward(F, nullptr, nullptr, nullptr, nullptr, 0, 0, kEps, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_rmsnorm_backward(F, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 0, 0, nullptr), MOE4J_OK);
  gpu::sync();
}

GPU_TEST_MAIN("gpu_rmsnorm")
