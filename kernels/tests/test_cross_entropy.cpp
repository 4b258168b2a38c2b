/*
 * CUDA softmax cross-entropy (optimized and reference kernels) against the CPU twin.
 *
 * Tolerances: CUDA expf/logf and glibc's differ by a couple of ulp and the summation orders differ
 * (block butterfly vs 16 CPU lanes), so losses and lse agree to fp32 accuracy, 1e-5 relative
 * (absolute below 1). The backward is given the CPU's lse, so only expf and the final roundings
 * differ: 1e-6 |s| p + 2^-22 |g| for f32; bf16 results may round to neighbouring values, one bf16
 * ulp (<= 2^-7 relative) apart.
 */
#include <string.h>

#include "gpu_test.h"
#include "numerics.h"

using moe4j::bf16_t;

namespace {

constexpr int32_t kIgnore = -100;

std::vector<int32_t> random_targets(int64_t rows, int64_t vocab, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<int32_t> t(rows);
  for (int64_t r = 0; r < rows; r++) t[r] = r % 7 == 3 ? kIgnore : (int32_t)(g() % (uint64_t)vocab);
  return t;
}

/* Host logits in the requested dtype as raw bytes, plus their f32 values. */
struct Logits {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};

Logits make_logits(int32_t dtype, int64_t n, uint64_t seed, float scale, float offset) {
  Logits l;
  l.values = check::randn(n, seed, scale);
  for (auto &v : l.values) v += offset;
  if (dtype == MOE4J_DTYPE_BF16) {
    std::vector<uint16_t> b(n);
    for (int64_t i = 0; i < n; i++) {
      b[i] = moe4j::f32_to_bf16_bits(l.values[i]);
      l.values[i] = moe4j::bf16_bits_to_f32(b[i]);
    }
    l.bytes.assign((const uint8_t *)b.data(), (const uint8_t *)b.data() + n * 2);
  } else {
    l.bytes.assign((const uint8_t *)l.values.data(), (const uint8_t *)l.values.data() + n * 4);
  }
  return l;
}

float element(int32_t dtype, const uint8_t *bytes, int64_t i) {
  if (dtype == MOE4J_DTYPE_BF16) {
    uint16_t b;
    memcpy(&b, bytes + 2 * i, 2);
    return moe4j::bf16_bits_to_f32(b);
  }
  float f;
  memcpy(&f, bytes + 4 * i, 4);
  return f;
}

double fwd_tol(double v) { return 1e-5 * (fabs(v) > 1 ? fabs(v) : 1); }

/* Runs forward and backward (fast or reference) on logits placed `offset` elements into their
 * device buffer (offset 1 misaligns every row), dlogits at `grad_offset`; compares with the CPU. */
void compare_case(int32_t dtype, int64_t rows, int64_t vocab, int64_t offset, int64_t grad_offset,
                  float logit_offset, int ref) {
  const int64_t es = dtype == MOE4J_DTYPE_BF16 ? 2 : 4, n = rows * vocab;
  const Logits x = make_logits(dtype, n, 40 + vocab + rows, 3.0f, logit_offset);
  const auto targets = random_targets(rows, vocab, 41 + rows);
  const float scale = 1.0f / (float)rows;
  std::vector<float> losses(rows), lse(rows);
  std::vector<uint8_t> grad(n * es);
  CHECK_STATUS(moe4j_cpu_cross_entropy_forward(dtype, x.bytes.data(), targets.data(), losses.data(), lse.data(), rows, vocab, kIgnore), MOE4J_OK);
  CHECK_STATUS(moe4j_cpu_cross_entropy_backward(dtype, x.bytes.data(), targets.data(), lse.data(), grad.data(), rows, vocab, kIgnore, scale), MOE4J_OK);

  moe4j_cuda_use_reference_kernels(ref);
  gpu::DeviceBuffer<uint8_t> dx((n + offset + 1) * es), dgrad((n + grad_offset + 1) * es);
  CHECK(cudaMemcpy(dx.ptr + offset * es, x.bytes.data(), n * es, cudaMemcpyHostToDevice) == cudaSuccess);
  CHECK(cudaMemset(dgrad.ptr, 0x7f, dgrad.count) == cudaSuccess);
  gpu::DeviceBuffer<int32_t> dt(targets);
  gpu::DeviceBuffer<float> dlosses(rows + 1), dlse(rows + 1), dcpu_lse(lse);
  CHECK(cudaMemset(dlosses.ptr, 0x7f, (rows + 1) * 4) == cudaSuccess);
  CHECK_STATUS(moe4j_cuda_cross_entropy_forward(dtype, dx.ptr + offset * es, dt.ptr, dlosses.ptr, dlse.ptr, rows, vocab, kIgnore, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_cross_entropy_backward(dtype, dx.ptr + offset * es, dt.ptr, dcpu_lse.ptr, dgrad.ptr + grad_offset * es, rows, vocab, kIgnore, scale, nullptr), MOE4J_OK);
  gpu::sync();
  moe4j_cuda_use_reference_kernels(0);
  const auto glosses = dlosses.download(), glse = dlse.download();
  const auto ggrad = dgrad.download();
  int bad = 0;
  for (int64_t r = 0; r < rows; r++) {
    if (!(fabs(glosses[r] - losses[r]) <= fwd_tol(losses[r])) || !(fabs(glse[r] - lse[r]) <= fwd_tol(lse[r]))) bad++;
    if (targets[r] == kIgnore && glosses[r] != 0.0f) bad++;
  }
  uint32_t sentinel;
  memcpy(&sentinel, &glosses[rows], 4);
  CHECK(sentinel == 0x7f7f7f7fu); /* nothing written past the end */
  for (int64_t i = 0; i < n; i++) {
    const int64_t r = i / vocab;
    const double want = element(dtype, grad.data(), i);
    const double got = element(dtype, ggrad.data() + grad_offset * es, i);
    const double p = exp((double)x.values[i] - (double)lse[r]);
    double tol = 1e-6 * scale * p + ldexp(fabs(want), -22);
    if (dtype == MOE4J_DTYPE_BF16) tol += ldexp(fabs(want), -7);
    if (targets[r] == kIgnore) tol = 0;
    if (!(fabs(got - want) <= tol)) bad++;
  }
  for (int64_t b = 0; b < es; b++) CHECK(ggrad[(grad_offset + n) * es + b] == 0x7f);
  if (bad) {
    char msg[200];
    snprintf(msg, sizeof msg, "%s dtype=%d rows=%lld vocab=%lld offset=%lld/%lld: %d mismatches",
             ref ? "ref" : "fast", dtype, (long long)rows, (long long)vocab, (long long)offset,
             (long long)grad_offset, bad);
    check::report(__FILE__, __LINE__, msg);
  }
}

}  // namespace

TEST_CASE(fast_and_reference_match_cpu_twin) {
  for (int ref : {0, 1})
    for (int32_t dtype : {MOE4J_DTYPE_F32, MOE4J_DTYPE_BF16})
      for (int64_t vocab : {1, 2, 7, 1031, 50257})
        for (int64_t rows : {1, 3, 17}) compare_case(dtype, rows, vocab, 0, 0, 0.0f, ref);
  /* many rows (grid-stride), misaligned rows, differently aligned dlogits (unpacked path) */
  for (int32_t dtype : {MOE4J_DTYPE_F32, MOE4J_DTYPE_BF16}) {
    compare_case(dtype, 300, 32000, 0, 0, 0.0f, 0);
    compare_case(dtype, 5, 50257, 1, 1, 0.0f, 0);
    compare_case(dtype, 5, 50257, 1, 0, 0.0f, 0);
    compare_case(dtype, 5, 4096, 3, 2, 0.0f, 0);
  }
}

TEST_CASE(large_logits_stay_finite_and_match) {
  for (int32_t dtype : {MOE4J_DTYPE_F32, MOE4J_DTYPE_BF16})
    for (int ref : {0, 1}) {
      compare_case(dtype, 3, 1031, 0, 0, 1e4f, ref);
      compare_case(dtype, 3, 1031, 0, 0, -3e4f, ref);
    }
}

TEST_CASE(in_place_backward_equals_out_of_place_bitwise) {
  for (int32_t dtype : {MOE4J_DTYPE_F32, MOE4J_DTYPE_BF16}) {
    const int64_t rows = 9, vocab = 50257, es = dtype == MOE4J_DTYPE_BF16 ? 2 : 4;
    const Logits x = make_logits(dtype, rows * vocab, 50, 2.0f, 0.0f);
    const auto targets = random_targets(rows, vocab, 51);
    gpu::DeviceBuffer<uint8_t> dx(x.bytes), dgrad(x.bytes.size());
    gpu::DeviceBuffer<int32_t> dt(targets);
    gpu::DeviceBuffer<float> dlosses(rows), dlse(rows);
    CHECK_STATUS(moe4j_cuda_cross_entropy_forward(dtype, dx.ptr, dt.ptr, dlosses.ptr, dlse.ptr, rows, vocab, kIgnore, nullptr), MOE4J_OK);
    CHECK_STATUS(moe4j_cuda_cross_entropy_backward(dtype, dx.ptr, dt.ptr, dlse.ptr, dgrad.ptr, rows, vocab, kIgnore, 0.5f, nullptr), MOE4J_OK);
    CHECK_STATUS(moe4j_cuda_cross_entropy_backward(dtype, dx.ptr, dt.ptr, dlse.ptr, dx.ptr, rows, vocab, kIgnore, 0.5f, nullptr), MOE4J_OK);
    gpu::sync();
    CHECK(dx.download() == dgrad.download());
    (void)es;
  }
}

TEST_CASE(forward_is_deterministic) {
  const int64_t rows = 64, vocab = 50257;
  const Logits x = make_logits(MOE4J_DTYPE_BF16, rows * vocab, 60, 4.0f, 0.0f);
  const auto targets = random_targets(rows, vocab, 61);
  gpu::DeviceBuffer<uint8_t> dx(x.bytes);
  gpu::DeviceBuffer<int32_t> dt(targets);
  gpu::DeviceBuffer<float> l1(rows), s1(rows), l2(rows), s2(rows);
  CHECK_STATUS(moe4j_cuda_cross_entropy_forward(MOE4J_DTYPE_BF16, dx.ptr, dt.ptr, l1.ptr, s1.ptr, rows, vocab, kIgnore, nullptr), MOE4J_OK);
  CHECK_STATUS(moe4j_cuda_cross_entropy_forward(MOE4J_DTYPE_BF16, dx.ptr, dt.ptr, l2.ptr, s2.ptr, rows, vocab, kIgnore, nullptr), MOE4J_OK);
  gpu::sync();
  CHECK(l1.download() == l2.download() && s1.download() == s2.download());
}

TEST_CASE(out_of_range_target_gives_nan_on_device) {
  const int64_t rows = 3, vocab = 7;
  const auto x = check::randn(rows * vocab, 70);
  const std::vector<int32_t> targets = {2, 7, kIgnore};
  for (int ref : {0, 1}) {
    moe4j_cuda_use_reference_kernels(ref);
    gpu::DeviceBuffer<float> dx(x), dgrad(rows * vocab), dlosses(rows), dlse(rows);
    gpu::DeviceBuffer<int32_t> dt(targets);
    CHECK_STATUS(moe4j_cuda_cross_entropy_forward(MOE4J_DTYPE_F32, dx.ptr, dt.ptr, dlosses.ptr, dlse.ptr, rows, vocab, kIgnore, nullptr), MOE4J_OK);
    CHECK_STATUS(moe4j_cuda_cross_entropy_backward(MOE4J_DTYPE_F32, dx.ptr, dt.ptr, dlse.ptr, dgrad.ptr, rows, vocab, kIgnore, 1.0f, nullptr), MOE4J_OK);
    gpu::sync();
    const auto losses = dlosses.download(), grad = dgrad.download();
    CHECK(isfinite(losses[0]) && isnan(losses[1]) && losses[2] == 0.0f);
    for (int64_t c = 0; c < vocab; c++) {
      CHECK(isfinite(grad[c]));
      CHECK(isnan(grad[vocab + c]));
      CHECK(grad[2 * vocab + c] == 0.0f);
    }
  }
  moe4j_cuda_use_reference_kernels(0);
}

TEST_CASE(bad_arguments_fail_without_launch) {
  gpu::DeviceBuffer<float> x(21), l(3), s(3), g(21);
  gpu::DeviceBuffer<int32_t> t(3);
  const int32_t F32 = MOE4J_DTYPE_F32;
  CHECK_FAILS(moe4j_cuda_cross_entropy_forward(MOE4J_DTYPE_F16, x.ptr, t.ptr, l.ptr, s.ptr, 3, 7, kIgnore, nullptr), MOE4J_ERR_UNSUPPORTED, "dtype must be F32 or BF16");
  CHECK_FAILS(moe4j_cuda_cross_entropy_forward(F32, x.ptr, t.ptr, l.ptr, s.ptr, -1, 7, kIgnore, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "rows must be >= 0");
  CHECK_FAILS(moe4j_cuda_cross_entropy_forward(F32, x.ptr, t.ptr, l.ptr, s.ptr, 3, 0, kIgnore, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "vocab must be > 0");
  CHECK_FAILS(moe4j_cuda_cross_entropy_forward(F32, x.ptr, t.ptr, l.ptr, s.ptr, INT64_MAX / 2, 7, kIgnore, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "overflows");
  CHECK_FAILS(moe4j_cuda_cross_entropy_forward(F32, nullptr, t.ptr, l.ptr, s.ptr, 3, 7, kIgnore, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "logits is NULL");
  CHECK_FAILS(moe4j_cuda_cross_entropy_forward(F32, x.ptr, nullptr, l.ptr, s.ptr, 3, 7, kIgnore, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "targets is NULL");
  CHECK_FAILS(moe4j_cuda_cross_entropy_forward(F32, x.ptr, t.ptr, nullptr, s.ptr, 3, 7, kIgnore, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "losses is NULL");
  CHECK_FAILS(moe4j_cuda_cross_entropy_forward(F32, x.ptr, t.ptr, l.ptr, nullptr, 3, 7, kIgnore, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "lse is NULL");
  CHECK_FAILS(moe4j_cuda_cross_entropy_forward(F32, x.ptr, t.ptr, l.ptr, l.ptr, 3, 7, kIgnore, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "losses and lse overlap");
  CHECK_FAILS(moe4j_cuda_cross_entropy_forward(F32, x.ptr, t.ptr, x.ptr + 2, s.ptr, 3, 7, kIgnore, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "losses/lse overlap logits");
  CHECK_FAILS(moe4j_cuda_cross_entropy_backward(MOE4J_DTYPE_I32, x.ptr, t.ptr, s.ptr, g.ptr, 3, 7, kIgnore, 1.0f, nullptr), MOE4J_ERR_UNSUPPORTED, "dtype");
  CHECK_FAILS(moe4j_cuda_cross_entropy_backward(F32, x.ptr, t.ptr, s.ptr, g.ptr, 3, 7, kIgnore, INFINITY, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "grad_scale must be finite");
  CHECK_FAILS(moe4j_cuda_cross_entropy_backward(F32, x.ptr, t.ptr, nullptr, g.ptr, 3, 7, kIgnore, 1.0f, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "lse is NULL");
  CHECK_FAILS(moe4j_cuda_cross_entropy_backward(F32, x.ptr, t.ptr, s.ptr, nullptr, 3, 7, kIgnore, 1.0f, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "dlogits is NULL");
  CHECK_FAILS(moe4j_cuda_cross_entropy_backward(F32, x.ptr, t.ptr, s.ptr, x.ptr + 1, 2, 7, kIgnore, 1.0f, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "logits and dlogits overlap");
  CHECK_FAILS(moe4j_cuda_cross_entropy_backward(F32, x.ptr, t.ptr, s.ptr, (float *)((char *)g.ptr + 2), 3, 7, kIgnore, 1.0f, nullptr), MOE4J_ERR_INVALID_ARGUMENT, "aligned");
  CHECK_STATUS(moe4j_cuda_cross_entropy_forward(F32, nullptr, nullptr, nullptr, nullptr, 0, 7, kIgnore, nullptr), MOE4J_OK);
}

GPU_TEST_MAIN("gpu_cross_entropy")
