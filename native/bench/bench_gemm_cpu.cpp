/*
 * CPU grouped-GEMM benchmark (not a test): GFLOP/s and fraction of the measured FMA peak for
 *   dense f32 and bf16-in GEMM (offsets == NULL), grouped balanced vs dense at equal FLOPs,
 *   grouped vs a loop of per-expert dense calls at small groups, Zipf-skewed routing,
 *   and the dgrad / wgrad / swiglu entry points.
 * The peak is measured first: a register-only AVX-512 (else AVX2) FMA loop on every OpenMP thread.
 * FLOPs = 2 * M * N * K. Each case: warmup, then the median (and min..max) of `reps` timings.
 *   bench_gemm_cpu [reps]
 */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <random>
#include <vector>

#include "moe4j.h"

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

__attribute__((target("avx512f,fma"), noinline)) float fma_loop_512(long iters) {
  __m512 a[16];
  const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < 16; i++) a[i] = _mm512_set1_ps((float)i);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
  }
  __m512 s = a[0];
  for (int i = 1; i < 16; i++) s = _mm512_add_ps(s, a[i]);
  float o[16];
  _mm512_storeu_ps(o, s);
  return o[0] + o[15];
}

__attribute__((target("avx2,fma"), noinline)) float fma_loop_256(long iters) {
  __m256 a[12];
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
  }
  __m256 s = a[0];
  for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
  float o[8];
  _mm256_storeu_ps(o, s);
  return o[0];
}

/* Achievable FMA peak in GFLOP/s on all threads (best of 3). */
double measure_peak(int threads, bool avx512, double *per_core) {
  const long iters = 50000000;
  double best = 0;
  for (int r = 0; r < 3; r++) {
    float sink = 0;
    double t0 = now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += avx512 ? fma_loop_512(iters) : fma_loop_256(iters);
    double dt = now() - t0;
    double flops = (double)threads * iters * (avx512 ? 16.0 * 32 : 12.0 * 16);
    best = std::max(best, flops / dt / 1e9);
    if (sink == 1.2345f) printf(" ");
  }
  *per_core = best / threads;
  return best;
}

/* Clock estimate from a dependent imul chain (3 cycles each). */
double measure_clock_ghz() {
  long n = 200000000, x = 3;
  double t0 = now();
  for (long i = 0; i < n; i++)
    __asm__ volatile("imul %0, %0\n\timul %0, %0\n\timul %0, %0\n\timul %0, %0" : "+r"(x));
  return 12.0 * n / (now() - t0) / 1e9;
}

struct Timing {
  double median, lo, hi;
};

Timing time_it(int reps, const std::function<void()> &fn) {
  fn(); /* warmup */
  std::vector<double> t;
  for (int r = 0; r < reps; r++) {
    double t0 = now();
    fn();
    t.push_back(now() - t0);
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front(), t.back()};
}

std::vector<float> randv(size_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto &x : v) x = d(g);
  return v;
}

std::vector<uint16_t> to_bf16(const std::vector<float> &v) {
  std::vector<uint16_t> o(v.size());
  for (size_t i = 0; i < v.size(); i++) {
    uint32_t u;
    memcpy(&u, &v[i], 4);
    o[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
  return o;
}

double g_peak = 0;

void row(const char *name, const char *shape, double flops, const Timing &t, const char *extra = "") {
  double gf = flops / t.median / 1e9;
  printf("%-34s %-26s %9.3f ms [%7.3f..%7.3f] %8.1f GFLOP/s %6.1f%% peak %s\n", name, shape,
         t.median * 1e3, t.lo * 1e3, t.hi * 1e3, gf, 100.0 * gf / g_peak, extra);
}

void ok(int32_t s) {
  if (s != MOE4J_OK) {
    fprintf(stderr, "call failed: %s\n", moe4j_last_error());
    exit(1);
  }
}

/* offsets for E groups whose sizes follow Zipf(s) over T rows (largest first). */
std::vector<int64_t> zipf_offsets(int64_t E, int64_t T, double s) {
  std::vector<double> w(E);
  double sum = 0;
  for (int64_t e = 0; e < E; e++) sum += (w[e] = 1.0 / pow((double)(e + 1), s));
  std::vector<int64_t> off(E + 1, 0);
  int64_t given = 0;
  for (int64_t e = 0; e < E; e++) {
    int64_t c = (int64_t)floor(T * w[e] / sum);
    off[e + 1] = off[e] + c;
    given += c;
  }
  off[E] = T; /* remainder to the last group */
  (void)given;
  return off;
}

}  // namespace

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 7;
  int threads = omp_get_max_threads();
  bool avx512 = __builtin_cpu_supports("avx512f");
  double per_core = 0;
  g_peak = measure_peak(threads, avx512, &per_core);
  double ghz = measure_clock_ghz();
  printf("threads %d, %s; measured FMA peak %.1f GFLOP/s (%.1f per core; clock ~%.2f GHz => %.2f "
         "FMA/cycle/core of %d lanes)\n\n",
         threads, avx512 ? "AVX-512" : "AVX2", g_peak, per_core, ghz,
         per_core / ghz / (avx512 ? 32 : 16), avx512 ? 16 : 8);

  const int F32 = MOE4J_DTYPE_F32, BF16 = MOE4J_DTYPE_BF16;
  {
    const int64_t M = 2048, N = 2048, K = 2048;
    auto x = randv(M * K, 1), w = randv(N * K, 2);
    auto xb = to_bf16(x), wb = to_bf16(w);
    std::vector<float> y(M * N);
    double fl = 2.0 * M * N * K;
    Timing td = time_it(reps, [&] {
      ok(moe4j_cpu_grouped_gemm_forward(F32, x.data(), w.data(), F32, y.data(), nullptr, 1, M, N, K, nullptr, 0));
    });
    row("dense f32 (forward, NULL offsets)", "2048x2048x2048", fl, td);
    Timing tb = time_it(reps, [&] {
      ok(moe4j_cpu_grouped_gemm_forward(BF16, xb.data(), wb.data(), F32, y.data(), nullptr, 1, M, N, K, nullptr, 0));
    });
    row("dense bf16-in f32-out", "2048x2048x2048", fl, tb);
    Timing tg = time_it(reps, [&] {
      ok(moe4j_cpu_grouped_gemm_dgrad(F32, x.data(), w.data(), F32, y.data(), nullptr, 1, M, N, K, 0));
    });
    row("dense f32 dgrad", "2048x2048x2048", fl, tg);
    Timing tw = time_it(reps, [&] {
      ok(moe4j_cpu_grouped_gemm_wgrad(F32, x.data(), w.data(), F32, y.data(), nullptr, 1, M, N, K, 0));
    });
    row("dense f32 wgrad", "2048x2048x2048", fl, tw);

    /* grouped balanced, equal FLOPs: E = 8 groups of 256 rows... each with its own weight */
    const int64_t E = 8;
    auto we = randv(E * N * K, 3);
    std::vector<int64_t> off(E + 1);
    for (int64_t e = 0; e <= E; e++) off[e] = e * M / E;
    Timing tgr = time_it(reps, [&] {
      ok(moe4j_cpu_grouped_gemm_forward(F32, x.data(), we.data(), F32, y.data(), off.data(), E, M, N, K, nullptr, 0));
    });
    char r[64];
    snprintf(r, sizeof r, "(%.3fx dense)", td.median / tgr.median);
    row("grouped f32 balanced E=8", "8x256 rows x2048x2048", fl, tgr, r);
    auto zoff = zipf_offsets(E, M, 1.2);
    Timing tz = time_it(reps, [&] {
      ok(moe4j_cpu_grouped_gemm_forward(F32, x.data(), we.data(), F32, y.data(), zoff.data(), E, M, N, K, nullptr, 0));
    });
    snprintf(r, sizeof r, "(%.3fx dense; largest group %lld rows)", td.median / tz.median, (long long)(zoff[1] - zoff[0]));
    row("grouped f32 Zipf(1.2) E=8", "2048 rows x2048x2048", fl, tz, r);
  }
  {
    /* large balanced groups: 8 x 1024 rows (Mixtral-like T = 4096 tokens, top-2) vs one dense
     * GEMM of the same FLOPs (8192 x 2048 x 2048) */
    const int64_t E = 8, M = 8192, N = 2048, K = 2048;
    auto x = randv(M * K, 6), w = randv(E * N * K, 7);
    std::vector<float> y(M * N);
    std::vector<int64_t> off(E + 1);
    for (int64_t e = 0; e <= E; e++) off[e] = e * M / E;
    double fl = 2.0 * M * N * K;
    Timing td = time_it(reps, [&] {
      ok(moe4j_cpu_grouped_gemm_forward(F32, x.data(), w.data(), F32, y.data(), nullptr, 1, M, N, K, nullptr, 0));
    });
    row("dense f32 8192x2048x2048", "8192x2048x2048", fl, td);
    Timing tg = time_it(reps, [&] {
      ok(moe4j_cpu_grouped_gemm_forward(F32, x.data(), w.data(), F32, y.data(), off.data(), E, M, N, K, nullptr, 0));
    });
    char r[64];
    snprintf(r, sizeof r, "(%.3fx dense)", td.median / tg.median);
    row("grouped f32 balanced E=8 x 1024", "8x1024 rows x2048x2048", fl, tg, r);
  }
  {
    /* small groups: E = 64 experts x 64 rows, N = 512, K = 1024 (scaled down 1024x2048) */
    const int64_t E = 64, R = 64, N = 512, K = 1024, T = E * R;
    auto x = randv(T * K, 4), w = randv(E * N * K, 5);
    std::vector<float> y(T * N);
    std::vector<int64_t> off(E + 1);
    for (int64_t e = 0; e <= E; e++) off[e] = e * R;
    double fl = 2.0 * T * N * K;
    Timing tg = time_it(reps, [&] {
      ok(moe4j_cpu_grouped_gemm_forward(F32, x.data(), w.data(), F32, y.data(), off.data(), E, T, N, K, nullptr, 0));
    });
    Timing tl = time_it(reps, [&] {
      for (int64_t e = 0; e < E; e++)
        ok(moe4j_cpu_grouped_gemm_forward(F32, x.data() + e * R * K, w.data() + e * N * K, F32,
                                          y.data() + e * R * N, nullptr, 1, R, N, K, nullptr, 0));
    });
    char r[64];
    snprintf(r, sizeof r, "(%.2fx the loop)", tl.median / tg.median);
    row("grouped f32 E=64 x 64 rows", "4096 rows x512x1024", fl, tg, r);
    row("loop of 64 dense calls", "64 x (64x512x1024)", fl, tl);
    auto zoff = zipf_offsets(E, T, 1.0);
    Timing tz = time_it(reps, [&] {
      ok(moe4j_cpu_grouped_gemm_forward(F32, x.data(), w.data(), F32, y.data(), zoff.data(), E, T, N, K, nullptr, 0));
    });
    snprintf(r, sizeof r, "(largest group %lld rows)", (long long)(zoff[1] - zoff[0]));
    row("grouped f32 E=64 Zipf(1.0)", "4096 rows x512x1024", fl, tz, r);
    Timing tw = time_it(reps, [&] {
      ok(moe4j_cpu_grouped_gemm_wgrad(F32, y.data(), x.data(), F32, w.data(), off.data(), E, T, N, K, 0));
    });
    row("grouped f32 wgrad E=64 x 64 rows", "4096 rows x512x1024", fl, tw);
  }
  {
    /* swiglu: T = 2048, f = 1024, k = 2048, E = 8 balanced, bf16 in/out */
    const int64_t E = 8, T = 2048, f = 1024, K = 2048;
    auto x = to_bf16(randv(T * K, 6)), w = to_bf16(randv(E * 2 * f * K, 7));
    std::vector<uint16_t> h(T * f), gu(T * 2 * f);
    std::vector<int64_t> off(E + 1);
    for (int64_t e = 0; e <= E; e++) off[e] = e * T / E;
    double fl = 2.0 * T * 2 * f * K;
    Timing ts = time_it(reps, [&] {
      ok(moe4j_cpu_grouped_gemm_swiglu_forward(BF16, x.data(), w.data(), BF16, h.data(), gu.data(), off.data(), E, T, f, K));
    });
    row("swiglu bf16 E=8 (h + gate_up)", "2048 rows x2x1024x2048", fl, ts);
  }
  return 0;
}
