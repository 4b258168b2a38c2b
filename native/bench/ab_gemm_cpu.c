/*
 * A/B timing of two builds of libmoe4j_cpu.so on one grouped-GEMM shape, in one process: both
 * libraries are dlopen'ed and called alternately (A, B, A, B, ...), so load from other tenants of
 * a shared machine hits both alike; prints each median and the ratio A time / B time (> 1: B is
 * faster). For tuning the CPU GEMM: build the baseline, copy its library away, build the change.
 * Not part of the CMake build; build by hand:
 *   cp build/native/lib/libmoe4j_cpu.so /tmp/a.so      # baseline (e.g. after git stash)
 *   ... rebuild the change ...; cp build/native/lib/libmoe4j_cpu.so /tmp/b.so
 *   gcc -O2 -Inative/include native/bench/ab_gemm_cpu.c -o /tmp/ab_gemm_cpu -ldl -lm
 *   /tmp/ab_gemm_cpu /tmp/a.so /tmp/b.so fwd|dgrad|wgrad ROWS N K [E [ZIPF_S]] [REPS]
 * ROWS rows split over E groups, evenly or by a Zipf(ZIPF_S) law (0 = even); f32 in and out.
 */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "moe4j.h"

typedef int32_t (*forward_fn)(int32_t, const void *, const void *, int32_t, void *, const int64_t *,
                              int64_t, int64_t, int64_t, int64_t, const float *, int32_t);
typedef int32_t (*grad_fn)(int32_t, const void *, const void *, int32_t, void *, const int64_t *,
                           int64_t, int64_t, int64_t, int64_t, int32_t);

int main(int argc, char **argv) {
  if (argc < 7) {
    fprintf(stderr, "usage: %s A.so B.so fwd|dgrad|wgrad ROWS N K [E [ZIPF_S]] [REPS]\n", argv[0]);
    return 2;
  }
  const char *op = argv[3];
  const long rows = atol(argv[4]), n = atol(argv[5]), k = atol(argv[6]);
  const long E = argc > 7 ? atol(argv[7]) : 1;
  const double zipf = argc > 8 ? atof(argv[8]) : 0.0;
  const int reps = argc > 9 ? atoi(argv[9]) : 21;
  if (rows < 1 || n < 1 || k < 1 || E < 1 || reps < 1 || reps > 1000) {
    fprintf(stderr, "ROWS, N, K, E must be >= 1 and REPS in 1..1000\n");
    return 2;
  }
  const char *name = strcmp(op, "fwd") == 0     ? "moe4j_cpu_grouped_gemm_forward"
                     : strcmp(op, "dgrad") == 0 ? "moe4j_cpu_grouped_gemm_dgrad"
                     : strcmp(op, "wgrad") == 0 ? "moe4j_cpu_grouped_gemm_wgrad"
                                                : NULL;
  if (name == NULL) {
    fprintf(stderr, "op must be fwd, dgrad or wgrad, got '%s'\n", op);
    return 2;
  }
  void *fn[2];
  for (int c = 0; c < 2; c++) {
    void *h = dlopen(argv[1 + c], RTLD_NOW | RTLD_LOCAL);
    fn[c] = h ? dlsym(h, name) : NULL;
    if (fn[c] == NULL) {
      fprintf(stderr, "cannot load %s from %s: %s\n", name, argv[1 + c], dlerror());
      return 1;
    }
  }
  /* group offsets: even, or sizes proportional to (e + 1)^-s, the remainder to the last group */
  int64_t *off = malloc(sizeof(int64_t) * (size_t)(E + 1));
  double z = 0;
  for (long e = 0; e < E; e++) z += pow(e + 1.0, -zipf);
  off[0] = 0;
  for (long e = 0; e < E; e++)
    off[e + 1] = e == E - 1 ? rows : off[e] + (int64_t)(rows * (zipf > 0 ? pow(e + 1.0, -zipf) / z : 1.0 / E));
  float *x = bench_randv(rows * k, 1), *w = bench_randv(E * n * k, 2), *dy = bench_randv(rows * n, 3);
  float *out = bench_randv(rows * n > E * n * k ? rows * n : (rows * k > E * n * k ? rows * k : E * n * k), 4);
  const int64_t *offsets = E > 1 ? off : NULL;
  double *t[2] = {malloc(sizeof(double) * reps), malloc(sizeof(double) * reps)};
  for (int r = -1; r < reps; r++)
    for (int c = 0; c < 2; c++) {
      const double t0 = bench_now();
      int32_t rc;
      if (strcmp(op, "fwd") == 0)
        rc = ((forward_fn)fn[c])(MOE4J_DTYPE_F32, x, w, MOE4J_DTYPE_F32, out, offsets, E, rows, n, k, NULL, 0);
      else if (strcmp(op, "dgrad") == 0)
        rc = ((grad_fn)fn[c])(MOE4J_DTYPE_F32, dy, w, MOE4J_DTYPE_F32, out, offsets, E, rows, n, k, 0);
      else
        rc = ((grad_fn)fn[c])(MOE4J_DTYPE_F32, dy, x, MOE4J_DTYPE_F32, out, offsets, E, rows, n, k, 0);
      if (rc != MOE4J_OK) {
        fprintf(stderr, "%s returned %d\n", argv[1 + c], rc);
        return 1;
      }
      if (r >= 0) t[c][r] = bench_now() - t0;
    }
  const double flops = 2.0 * rows * n * k;
  double med[2];
  for (int c = 0; c < 2; c++) {
    med[c] = bench_median(t[c], reps);
    printf("%s %s rows=%ld n=%ld k=%ld E=%ld zipf=%.2f: median %.3f ms, %.1f GFLOP/s\n", c ? "B" : "A",
           op, rows, n, k, E, zipf, 1e3 * med[c], flops / med[c] / 1e9);
  }
  printf("A time / B time: %.3f (median of %d alternating pairs)\n", med[0] / med[1], reps);
  return 0;
}
