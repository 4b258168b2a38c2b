/* Helpers of the hand-built C benchmark tools (ab_gemm_cpu.c, bench_vs_openblas.c): a monotonic
 * clock, the median of timings, and deterministic random inputs. */
#pragma once
#include <stdlib.h>
#include <time.h>

static inline double bench_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Sorts t[0..n) in place and returns its median. */
static inline double bench_median(double *t, int n) {
  qsort(t, n, sizeof(double), bench_cmp_double);
  return t[n / 2];
}

/* n floats uniform in [-0.5, 0.5] from rand() seeded with seed (at least one element allocated). */
static inline float *bench_randv(long n, unsigned seed) {
  float *v = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
  srand(seed);
  for (long i = 0; i < n; i++) v[i] = (float)rand() / RAND_MAX - 0.5f;
  return v;
}
