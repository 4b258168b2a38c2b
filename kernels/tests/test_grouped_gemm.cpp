/* CUDA grouped-expert GEMM (tensor-core, SIMT and reference kernels) against an fp64 reference and
 * against the CPU twin, for forward (row scale, accumulate), dgrad, wgrad and the SwiGLU forward.
 * References and tolerances: grouped_gemm_expect.h. */
#include <string.h>

#include <algorithm>

#include "gpu_test.h"
#include "grouped_gemm_expect.h"

using namespace moe4j;
using namespace grouped_gemm_test;

namespace {

/* Runs all four ops of one problem on the GPU (path per `reference`) and on the CPU twin. */
template <typename S, typename O>
void run_problem(const Problem &p, bool reference, int32_t accumulate, bool misalign) {
  const int32_t it = dtype_of<S>(), ot = dtype_of<O>();
  const int64_t E = p.groups(), T = p.rows(), n = p.n, k = p.k;
  const bool acc = accumulate != 0;
  const Inputs<S, O> in(p);
  const Outputs<O> cpu = cpu_twin(p, in, accumulate);
  const auto off = p.offsets();

  /* GPU; `misalign` shifts x by one element so bf16 leaves the tensor-core path */
  CHECK_STATUS(moe4j_cuda_use_reference_kernels(reference ? 1 : 0), MOE4J_OK);
  const size_t shift = misalign ? 1 : 0;
  std::vector<S> x_shifted(shift + in.x.size());
  std::copy(in.x.begin(), in.x.end(), x_shifted.begin() + shift);
  gpu::DeviceBuffer<S> d_x(x_shifted), d_w(in.w), d_w13(in.w13), d_dy(in.dy);
  gpu::DeviceBuffer<float> d_scale(in.scale);
  gpu::DeviceBuffer<int64_t> d_off(off);
  const int64_t *dev_off = p.dense ? nullptr : d_off.ptr;
  gpu::DeviceBuffer<O> d_y(guarded(acc ? in.y_prior : std::vector<O>(T * n, sentinel<O>())));
  gpu::DeviceBuffer<O> d_dx(guarded(acc ? in.dx_prior : std::vector<O>(T * k, sentinel<O>())));
  gpu::DeviceBuffer<O> d_dw(guarded(acc ? in.dw_prior : std::vector<O>(E * n * k, sentinel<O>())));
  gpu::DeviceBuffer<O> d_h(guarded(std::vector<O>(T * n, sentinel<O>())));
  gpu::DeviceBuffer<O> d_gu(guarded(std::vector<O>(T * 2 * n, sentinel<O>())));
  const S *xp = d_x.ptr + shift;
  CHECK_STATUS(moe4j_cuda_grouped_gemm_forward(it, xp, d_w.ptr, ot, d_y.ptr, dev_off, E, T, n, k, d_scale.ptr, accumulate, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_grouped_gemm_dgrad(it, d_dy.ptr, d_w.ptr, ot, d_dx.ptr, dev_off, E, T, n, k, accumulate, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_grouped_gemm_wgrad(it, d_dy.ptr, xp, ot, d_dw.ptr, dev_off, E, T, n, k, accumulate, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_grouped_gemm_swiglu_forward(it, xp, d_w13.ptr, ot, d_h.ptr, d_gu.ptr, dev_off, E, T, n, k, nullptr), MOE4J_OK);
  gpu::sync();
  const Outputs<O> got{d_y.download(), d_dx.download(), d_dw.download(), d_h.download(), d_gu.download()};
  CHECK(guard_intact(got.y, T * n) && guard_intact(got.dx, T * k) && guard_intact(got.dw, E * n * k) &&
        guard_intact(got.h, T * n) && guard_intact(got.gu, T * 2 * n));

  const int bad = count_all_bad(p, in, got, cpu, acc);
  if (bad) {
    fprintf(stderr, "    %s in %s out %s E %lld T %lld n %lld k %lld %s acc %d misalign %d: %d bad\n",
            p.name, sizeof(S) == 4 ? "F32" : "BF16", sizeof(O) == 4 ? "F32" : "BF16", (long long)E,
            (long long)T, (long long)n, (long long)k, reference ? "reference" : "fast", accumulate,
            (int)misalign, bad);
    CHECK(bad == 0);
  }
  /* swiglu without gate_up writes the same h */
  gpu::DeviceBuffer<O> d_h2(guarded(std::vector<O>(T * n, sentinel<O>())));
  CHECK_STATUS(moe4j_cuda_grouped_gemm_swiglu_forward(it, xp, d_w13.ptr, ot, d_h2.ptr, nullptr, dev_off, E, T, n, k, nullptr), MOE4J_OK);
  gpu::sync();
  CHECK(d_h2.download() == got.h);
  CHECK_STATUS(moe4j_cuda_use_reference_kernels(0), MOE4J_OK);
}

template <typename S, typename O>
void run_all_paths(const Problem &p) {
  run_problem<S, O>(p, false, 0, false);
  run_problem<S, O>(p, false, 1, false);
  run_problem<S, O>(p, true, 1, false);
  if (sizeof(S) == 2) run_problem<S, O>(p, false, 0, true); /* bf16 misaligned: SIMT path */
}

void run_dtypes(const Problem &p) {
  run_all_paths<float, float>(p);
  run_all_paths<uint16_t, uint16_t>(p);
  run_all_paths<uint16_t, float>(p);
  run_problem<float, uint16_t>(p, false, 1, false);
}

}  // namespace

/* n, k multiples of 8 (tensor-core path for bf16) with M/N/K tails; and odd dims (SIMT path). */
TEST_CASE(dense_null_offsets) {
  for (auto nk : {std::pair<int64_t, int64_t>{136, 200}, {130, 70}}) {
    run_dtypes({"dense", {300}, true, nk.first, nk.second});
    run_dtypes({"dense one row", {1}, true, nk.first, nk.second});
  }
}

TEST_CASE(one_group_holds_all_rows) {
  run_dtypes({"all rows in group 2", {0, 0, 300, 0, 0, 0}, false, 136, 200});
  run_dtypes({"all rows in last group", {0, 0, 0, 257}, false, 72, 40});
}

TEST_CASE(empty_tiny_and_tile_boundary_groups) {
  run_dtypes({"empty and tiny", {0, 3, 1, 0, 130, 7, 0}, false, 136, 200});
  run_dtypes({"tile boundaries", {127, 128, 129, 255, 256, 1}, false, 264, 96});
  run_dtypes({"odd dims", {5, 0, 140, 33}, false, 130, 70});
  run_dtypes({"k below one k tile", {40, 90}, false, 24, 8});
}

TEST_CASE(many_groups_balanced_and_skewed) {
  std::vector<int64_t> balanced(64, 3);
  run_dtypes({"E=64 balanced", balanced, false, 136, 64});
  run_dtypes({"E=256 zipf", zipf_sizes(256, 700, 11), false, 136, 64});
  run_dtypes({"E=16 zipf", zipf_sizes(16, 900, 12), false, 200, 128});
  std::vector<int64_t> one_hot(128, 0);
  one_hot[77] = 400;
  run_dtypes({"E=128 one hot", one_hot, false, 64, 64});
}

/* More groups than the shared-memory prefix holds: the row-tiled ops take the reference kernel. */
TEST_CASE(groups_beyond_shared_prefix) {
  auto sizes = zipf_sizes(2500, 300, 13);
  run_all_paths<uint16_t, uint16_t>({"E=2500", sizes, false, 24, 16});
  run_all_paths<float, float>({"E=2500", sizes, false, 24, 16});
}

/* Same inputs, same kernel: bitwise identical outputs (no atomics, fixed order). */
TEST_CASE(fast_kernels_are_deterministic) {
  const int64_t E = 8, T = 2000, n = 256, k = 512;
  auto sizes = zipf_sizes(E, T, 21);
  std::vector<int64_t> off(E + 1, 0);
  for (int64_t e = 0; e < E; e++) off[e + 1] = off[e] + sizes[e];
  gpu::DeviceBuffer<uint16_t> x(encode<uint16_t>(check::randn(T * k, 1))),
      w(encode<uint16_t>(check::randn(E * n * k, 2, 0.05f))), dy(encode<uint16_t>(check::randn(T * n, 3)));
  gpu::DeviceBuffer<int64_t> d_off(off);
  gpu::DeviceBuffer<float> y(T * n), dx(T * k), dw(E * n * k);
  std::vector<float> y0, dx0, dw0;
  for (int run = 0; run < 3; run++) {
    CHECK_STATUS(moe4j_cuda_grouped_gemm_forward(MOE4J_DTYPE_BF16, x.ptr, w.ptr, MOE4J_DTYPE_F32, y.ptr, d_off.ptr, E, T, n, k, nullptr, 0, nullptr), MOE4J_OK);
    CHECK_STATUS(moe4j_cuda_grouped_gemm_dgrad(MOE4J_DTYPE_BF16, dy.ptr, w.ptr, MOE4J_DTYPE_F32, dx.ptr, d_off.ptr, E, T, n, k, 0, nullptr), MOE4J_OK);
    CHECK_STATUS(moe4j_cuda_grouped_gemm_wgrad(MOE4J_DTYPE_BF16, dy.ptr, x.ptr, MOE4J_DTYPE_F32, dw.ptr, d_off.ptr, E, T, n, k, 0, nullptr), MOE4J_OK);
    gpu::sync();
    if (run == 0) {
      y0 = y.download();
      dx0 = dx.download();
      dw0 = dw.download();
    } else {
      CHECK(y.download() == y0 && dx.download() == dx0 && dw.download() == dw0);
    }
  }
}

/* Empty launches succeed; wgrad with no rows zeroes dw (or leaves it when accumulating). */
TEST_CASE(zero_rows) {
  const int64_t E = 3, n = 16, k = 24;
  std::vector<int64_t> off(E + 1, 0);
  gpu::DeviceBuffer<int64_t> d_off(off);
  gpu::DeviceBuffer<uint16_t> w(E * n * k);
  gpu::DeviceBuffer<float> dw(std::vector<float>(E * n * k, 5.0f));
  const int32_t B = MOE4J_DTYPE_BF16, F = MOE4J_DTYPE_F32;
  CHECK_STATUS(moe4j_cuda_grouped_gemm_forward(B, nullptr, w.ptr, F, nullptr, d_off.ptr, E, 0, n, k, nullptr, 0, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_grouped_gemm_dgrad(B, nullptr, w.ptr, F, nullptr, d_off.ptr, E, 0, n, k, 0, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_grouped_gemm_swiglu_forward(B, nullptr, w.ptr, F, nullptr, nullptr, d_off.ptr, E, 0, n / 2, k, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_grouped_gemm_wgrad(B, nullptr, nullptr, F, dw.ptr, d_off.ptr, E, 0, n, k, 1, nullptr), MOE4J_OK);
  gpu::sync();
  CHECK(dw.download() == std::vector<float>(E * n * k, 5.0f));
  CHECK_STATUS(moe4j_cuda_grouped_gemm_wgrad(B, nullptr, nullptr, F, dw.ptr, d_off.ptr, E, 0, n, k, 0, nullptr), MOE4J_OK);
  gpu::sync();
  CHECK(dw.download() == std::vector<float>(E * n * k, 0.0f));
}

TEST_CASE(bad_arguments_fail_without_launch) {
  gpu::DeviceBuffer<float> d(4096);
  gpu::DeviceBuffer<int64_t> off(std::vector<int64_t>{0, 2, 4});
  const int32_t F = MOE4J_DTYPE_F32, E = MOE4J_ERR_INVALID_ARGUMENT;
  float *x = d.ptr, *w = d.ptr + 512, *y = d.ptr + 1024;
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(MOE4J_DTYPE_F16, x, w, F, y, off.ptr, 2, 4, 8, 8, nullptr, 0, nullptr), MOE4J_ERR_UNSUPPORTED, "in_dtype must be F32 or BF16");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, MOE4J_DTYPE_I32, y, off.ptr, 2, 4, 8, 8, nullptr, 0, nullptr), MOE4J_ERR_UNSUPPORTED, "out_dtype");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, F, y, off.ptr, 0, 4, 8, 8, nullptr, 0, nullptr), E, "num_groups must be in [1, 1048576]");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, F, y, nullptr, 2, 4, 8, 8, nullptr, 0, nullptr), E, "offsets is NULL");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, F, y, off.ptr, 2, -1, 8, 8, nullptr, 0, nullptr), E, "total_rows must be >= 0");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, F, y, off.ptr, 2, 4, -8, 8, nullptr, 0, nullptr), E, "n must be >= 0");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, F, y, off.ptr, 2, INT64_MAX / 4, 8, 8, nullptr, 0, nullptr), E, "overflows");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, nullptr, w, F, y, off.ptr, 2, 4, 8, 8, nullptr, 0, nullptr), E, "x is NULL");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, F, (float *)((char *)y + 2), off.ptr, 2, 4, 8, 8, nullptr, 0, nullptr), E, "y (address");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, F, x + 8, off.ptr, 2, 4, 8, 8, nullptr, 0, nullptr), E, "y and x overlap");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_forward(F, x, w, F, w, off.ptr, 2, 4, 8, 8, nullptr, 0, nullptr), E, "y and w overlap");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_dgrad(F, x, w, F, w + 4, off.ptr, 2, 4, 8, 8, 0, nullptr), E, "dx and w overlap");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_wgrad(F, x, y, F, nullptr, off.ptr, 2, 4, 8, 8, 0, nullptr), E, "dw is NULL");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_swiglu_forward(F, x, w, F, y, y + 8, off.ptr, 2, 4, 8, 8, nullptr), E, "gate_up and h overlap");
  CHECK_FAILS(moe4j_cuda_grouped_gemm_swiglu_forward(F, x, w, F, y, nullptr, off.ptr, 2, 4, -1, 8, nullptr), E, "f must be >= 0");
  CHECK_FAILS(moe4j_cuda_cublas_gemm(F, x, w, F, y, -1, 8, 8, nullptr), E, "m must be >= 0");
  CHECK_FAILS(moe4j_cuda_cublas_gemm(F, x, w, F, x, 4, 8, 8, nullptr), E, "c and a overlap");
  gpu::sync();
}

/* cuBLAS baseline (when a libcublas is present) equals our dense kernel to f32 bounds. */
TEST_CASE(cublas_gemm_matches_dense_kernel) {
  const int64_t m = 77, n = 136, k = 200;
  auto a = encode<uint16_t>(check::randn(m * k, 41)), b = encode<uint16_t>(check::randn(n * k, 42, 0.07f));
  gpu::DeviceBuffer<uint16_t> d_a(a), d_b(b);
  gpu::DeviceBuffer<float> c1(m * n), c2(m * n);
  int32_t s = moe4j_cuda_cublas_gemm(MOE4J_DTYPE_BF16, d_a.ptr, d_b.ptr, MOE4J_DTYPE_F32, c1.ptr, m, n, k, nullptr);
  if (strcmp(moe4j_cuda_cublas_library(), "") == 0) {
    CHECK(s == MOE4J_ERR_UNSUPPORTED);
    return;
  }
  CHECK_STATUS(s, MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_grouped_gemm_forward(MOE4J_DTYPE_BF16, d_a.ptr, d_b.ptr, MOE4J_DTYPE_F32, c2.ptr, nullptr, 1, m, n, k, nullptr, 0, nullptr), MOE4J_OK);
  gpu::sync();
  auto r1 = c1.download(), r2 = c2.download();
  int bad = 0;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double sabs = 0;
      for (int64_t kk = 0; kk < k; kk++) sabs += fabs(val(a[i * k + kk]) * val(b[j * k + kk]));
      if (!(fabs(r1[i * n + j] - r2[i * n + j]) <= 4 * k * kU * sabs + 1e-30)) bad++;
    }
  CHECK(bad == 0);
}

GPU_TEST_MAIN("gpu_grouped_gemm")
