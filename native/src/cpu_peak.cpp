/*
 * Measured FMA peak of this CPU: every OpenMP thread runs a register-only loop of independent
 * fused multiply-adds (16 accumulators, enough to cover FMA latency x ports) with the widest vector
 * unit available, so benchmarks can report a fraction of a peak measured on the same machine in
 * the same run rather than a datasheet clock.
 */
#include <immintrin.h>
#include <omp.h>

#include <chrono>

#include "cpu_common.h"

namespace {

constexpr int kAccumulators = 16;

/* Returns flops done in `iters` iterations. */
__attribute__((target("avx512f"))) double fma_loop_avx512(int64_t iters, float *sink) {
  __m512 acc[kAccumulators];
  for (int i = 0; i < kAccumulators; i++) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; it++)
    for (int i = 0; i < kAccumulators; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  __m512 s = acc[0];
  for (int i = 1; i < kAccumulators; i++) s = _mm512_add_ps(s, acc[i]);
  float lanes[16];
  _mm512_storeu_ps(lanes, s); /* not _mm512_reduce_add_ps: GCC 12 warns inside it */
  *sink = lanes[0] + lanes[15];
  return (double)iters * kAccumulators * 16 * 2;
}

__attribute__((target("avx2,fma"))) double fma_loop_avx2(int64_t iters, float *sink) {
  __m256 acc[kAccumulators];
  for (int i = 0; i < kAccumulators; i++) acc[i] = _mm256_set1_ps(0.001f * i);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; it++)
    for (int i = 0; i < kAccumulators; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  float lanes[8];
  __m256 s = acc[0];
  for (int i = 1; i < kAccumulators; i++) s = _mm256_add_ps(s, acc[i]);
  _mm256_storeu_ps(lanes, s);
  *sink = lanes[0] + lanes[7];
  return (double)iters * kAccumulators * 8 * 2;
}

double fma_loop_scalar(int64_t iters, float *sink) {
  float acc[kAccumulators];
  for (int i = 0; i < kAccumulators; i++) acc[i] = 0.001f * i;
  for (int64_t it = 0; it < iters; it++)
    for (int i = 0; i < kAccumulators; i++) acc[i] = acc[i] * 0.999999f + 1e-7f;
  float s = 0;
  for (int i = 0; i < kAccumulators; i++) s += acc[i];
  *sink = s;
  return (double)iters * kAccumulators * 2;
}

}  // namespace

using namespace moe4j;

extern "C" int32_t moe4j_cpu_measure_fma_peak(double seconds, double *out_gflops) {
  ArgCheck chk("moe4j_cpu_measure_fma_peak");
  chk.require(seconds > 0 && seconds <= 60, "seconds must be in (0, 60], got %g", seconds)
      .buffer("out_gflops", out_gflops, 1, MOE4J_DTYPE_I64);
  if (chk.failed()) return chk.status();
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  double total_flops = 0;
  float sinks[256] = {0};
  auto start = std::chrono::steady_clock::now();
#pragma omp parallel reduction(+ : total_flops)
  {
    int t = omp_get_thread_num() & 255;
    auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < until) {
      const int64_t iters = 1 << 16;
      total_flops += avx512 ? fma_loop_avx512(iters, &sinks[t])
                            : avx2 ? fma_loop_avx2(iters, &sinks[t]) : fma_loop_scalar(iters, &sinks[t]);
    }
  }
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  *out_gflops = total_flops / elapsed * 1e-9;
  return MOE4J_OK;
}
