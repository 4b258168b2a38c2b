/*
 * Small-M CPU GEMM benchmark (not a test): decode-shaped moe4j_cpu_grouped_gemm_forward calls,
 * y [M, N] = x [M, K] . w [N, K]^T with bf16 x and w, f32 y, in GB/s of weight bytes (N * K * 2;
 * x and y are a few KiB and not counted), next to the machine's bandwidth measured in the same run:
 *   copy: moe4j_cpu_copy of 256 MiB, (read + write) bytes / time (the STREAM convention, the
 *         reference of docs/BENCHMARKS.md and io.moe4j.infer.MemoryBandwidth);
 *   read: moe4j_cpu_sum_squares over 256 MiB of f32, bytes read / time (a read-only stream, what
 *         a GEMV is; a copy also pays the write-allocate read of its destination).
 * Each shape runs through the small-M (GEMV) path (the default for M <= 16) and the packed path
 * (MOE4J_CPU_GEMV_MAX_ROWS=0), M = 1..16: where the packed path would start to win (the threshold).
 * Weights rotate over copies totalling >= 512 MiB so every call streams from memory, not cache.
 *   bench_gemv_cpu [reps]
 */
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

void ok(int32_t s) {
  if (s != MOE4J_OK) {
    fprintf(stderr, "call failed: %s\n", moe4j_last_error());
    exit(1);
  }
}

struct Timing {
  double median, lo, hi;
};

/* fn(i) for i = 0, 1, ...: warm-up of `reps` calls, then the median of `reps` timed calls. */
Timing time_it(int reps, const std::function<void(int)> &fn) {
  int i = 0;
  for (int r = 0; r < reps; r++) fn(i++);
  std::vector<double> t;
  for (int r = 0; r < reps; r++) {
    double t0 = now();
    fn(i++);
    t.push_back(now() - t0);
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front(), t.back()};
}

std::vector<uint16_t> random_bf16(size_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<uint16_t> o(n);
  for (auto &v : o) {
    /* sign, exponent 120..127 (|v| in [2^-7, 2)), random mantissa: finite, no rounding needed */
    const uint64_t r = g();
    v = (uint16_t)(((r & 1) << 15) | ((120 + (r >> 1) % 8) << 7) | ((r >> 8) & 0x7f));
  }
  return o;
}

void set_threshold(const char *v) {
  if (v == nullptr) unsetenv("MOE4J_CPU_GEMV_MAX_ROWS");
  else setenv("MOE4J_CPU_GEMV_MAX_ROWS", v, 1);
}

}  // namespace

int main(int argc, char **argv) {
  const int reps = argc > 1 ? atoi(argv[1]) : 15;
  const int BF16 = MOE4J_DTYPE_BF16, F32 = MOE4J_DTYPE_F32;
  printf("threads %d\n", omp_get_max_threads());

  /* bandwidth references */
  const int64_t ref_bytes = (int64_t)256 << 20;
  std::vector<char> a(ref_bytes, 1), b(ref_bytes, 2);
  Timing tc = time_it(5, [&](int) { ok(moe4j_cpu_copy(a.data(), b.data(), ref_bytes)); });
  const double copy_gbs = 2.0 * ref_bytes / tc.median / 1e9;
  float sink = 0;
  Timing tr = time_it(5, [&](int) { ok(moe4j_cpu_sum_squares(F32, a.data(), ref_bytes / 4, &sink)); });
  const double read_gbs = (double)ref_bytes / tr.median / 1e9;
  printf("copy %.2f GB/s (2 x 256 MiB per copy, median of 5), read %.2f GB/s (sum of squares over 256 MiB)\n\n",
         copy_gbs, read_gbs);
  a = {};
  b = {};

  printf("%-8s %-12s %3s %-7s %9s %19s %8s %8s %8s\n", "weights", "N x K", "M", "path", "median ms",
         "[min..max] ms", "GB/s", "of copy", "of read");
  struct Shape {
    int64_t n, k;
  };
  for (Shape s : {Shape{4096, 4096}, Shape{14336, 4096}}) {
    const int64_t wbytes = s.n * s.k * 2;
    const int copies = (int)std::max<int64_t>(2, ((int64_t)512 << 20) / wbytes + 1);
    std::vector<std::vector<uint16_t>> w;
    for (int c = 0; c < copies; c++) w.push_back(random_bf16(s.n * s.k, 10 + c));
    auto x = random_bf16(16 * s.k, 3);
    std::vector<float> y(16 * s.n);
    for (int64_t m : {1, 2, 4, 8, 12, 16}) {
      for (int packed = 0; packed < 2; packed++) {
        const bool gemv = packed == 0;
        set_threshold(gemv ? nullptr : "0");
        Timing t = time_it(reps, [&](int i) {
          ok(moe4j_cpu_grouped_gemm_forward(BF16, x.data(), w[i % copies].data(), F32, y.data(), nullptr, 1, m,
                                            s.n, s.k, nullptr, 0));
        });
        const double gbs = wbytes / t.median / 1e9;
        char shape[32];
        snprintf(shape, sizeof shape, "%lldx%lld", (long long)s.n, (long long)s.k);
        printf("%-8s %-12s %3lld %-7s %9.3f [%7.3f..%8.3f] %8.2f %7.1f%% %7.1f%%\n", "bf16", shape, (long long)m,
               gemv ? "gemv" : "packed", t.median * 1e3, t.lo * 1e3, t.hi * 1e3, gbs, 100 * gbs / copy_gbs,
               100 * gbs / read_gbs);
      }
    }
  }
  set_threshold(nullptr);
  if (sink == 1.2345f) printf(" ");
  return 0;
}
