/*
 * moe4j's CPU GEMM against OpenBLAS in the same run (the DESIGN.md §10 anchor: grouped >= 90% of
 * OpenBLAS dense). Not part of the CMake build (OpenBLAS is not a moe4j dependency); build by hand:
 *   apt-get install -y libopenblas-dev
 *   gcc -O2 -Inative/include native/bench/bench_vs_openblas.c -o /tmp/bench_vs_openblas \
 *       -Lbuild/native/lib -lmoe4j_cpu -lopenblas -Wl,-rpath,$PWD/build/native/lib
 *   OPENBLAS_NUM_THREADS=2 /tmp/bench_vs_openblas
 * Alternates the contenders rep by rep so a noisy neighbour hits both; prints medians.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_util.h"
#include "moe4j.h"

enum { REPS = 9 };

int main(void) {
  const long M = 2048, N = 2048, K = 2048, E = 8;
  float *x = bench_randv(M * K, 1), *w = bench_randv(E * N * K, 2), *y = malloc(sizeof(float) * M * N);
  const long M2 = 8192;
  float *x2 = bench_randv(M2 * K, 3), *y2 = malloc(sizeof(float) * M2 * N);
  int64_t off[9], off2[9];
  for (int e = 0; e <= E; e++) off[e] = e * M / E, off2[e] = e * M2 / E;
  double t[5][REPS];
  for (int r = -2; r < REPS; r++) { /* two warm-up rounds */
    double t0 = bench_now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, x, K, w, K, 0, y, N);
    double t1 = bench_now();
    moe4j_cpu_grouped_gemm_forward(MOE4J_DTYPE_F32, x, w, MOE4J_DTYPE_F32, y, NULL, 1, M, N, K, NULL, 0);
    double t2 = bench_now();
    moe4j_cpu_grouped_gemm_forward(MOE4J_DTYPE_F32, x, w, MOE4J_DTYPE_F32, y, off, E, M, N, K, NULL, 0);
    double t3 = bench_now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M2, N, K, 1, x2, K, w, K, 0, y2, N);
    double t4 = bench_now();
    moe4j_cpu_grouped_gemm_forward(MOE4J_DTYPE_F32, x2, w, MOE4J_DTYPE_F32, y2, off2, E, M2, N, K, NULL, 0);
    double t5 = bench_now();
    if (r < 0) continue;
    t[0][r] = t1 - t0, t[1][r] = t2 - t1, t[2][r] = t3 - t2, t[3][r] = t4 - t3, t[4][r] = t5 - t4;
  }
  const char *names[5] = {"openblas sgemm 2048^3 (NT)", "moe4j dense 2048^3", "moe4j grouped E=8 x 256 rows",
                          "openblas sgemm 8192x2048x2048", "moe4j grouped E=8 x 1024 rows"};
  const double flops[5] = {2.0 * M * N * K, 2.0 * M * N * K, 2.0 * M * N * K, 2.0 * M2 * N * K, 2.0 * M2 * N * K};
  double med[5];
  for (int i = 0; i < 5; i++) {
    qsort(t[i], REPS, sizeof(double), bench_cmp_double);
    med[i] = t[i][REPS / 2];
    printf("%-32s %9.3f ms [%.3f..%.3f]  %7.1f GFLOP/s\n", names[i], med[i] * 1e3, t[i][0] * 1e3,
           t[i][REPS - 1] * 1e3, flops[i] / med[i] * 1e-9);
  }
  printf("moe4j dense / openblas: %.3fx   grouped 8x256 / openblas dense: %.3fx   grouped 8x1024 / "
         "openblas dense: %.3fx\n", med[0] / med[1], med[0] / med[2], med[3] / med[4]);
  return 0;
}
