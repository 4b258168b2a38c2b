package io.moe4j.ops;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.runtime.Moe4jException;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Scope;
import io.moe4j.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Grouped GEMM through the Java API on the CPU backend against fp64 references (the C++ tests
 * sweep shapes and dtypes). Tolerance: f32 accumulation over K terms of products of O(1) values
 * errs by at most ~K·2⁻²⁴·Σ|a·b|; 1e-4 relative to Σ|a·b| covers K ≤ 1000 with margin.
 */
class GroupedGemmTest {

  static Backend cpu;

  @BeforeAll
  static void open() {
    cpu = Backends.cpu();
  }

  @AfterAll
  static void close() {
    assertEquals(0, cpu.memoryStats().liveBytes());
    cpu.close();
  }

  static final long[] OFFSETS = {0, 0, 5, 6, 6, 40}; // empty, 5 rows, 1 row, empty, 34 rows
  static final int E = 5, T = 40, N = 19, K = 37;

  /** result[t][j] = Σ_k a[t][k] * b(group(t))[j][k], and the Σ|a·b| bound alongside. */
  static double[][] reference(float[] a, float[] b, long[] offsets, int rows, int n, int k, boolean bTransposed) {
    double[][] out = new double[2][rows * n];
    for (int e = 0; e + 1 < offsets.length; e++)
      for (long t = offsets[e]; t < offsets[e + 1]; t++)
        for (int j = 0; j < n; j++)
          for (int i = 0; i < k; i++) {
            double bv = bTransposed ? b[(e * n + j) * k + i] : b[(e * k + i) * n + j];
            double prod = (double) a[(int) t * k + i] * bv;
            out[0][(int) t * n + j] += prod;
            out[1][(int) t * n + j] += Math.abs(prod);
          }
    return out;
  }

  static void assertWithin(double[][] ref, float[] got, String what) {
    for (int i = 0; i < got.length; i++)
      assertTrue(Math.abs(got[i] - ref[0][i]) <= 1e-4 * ref[1][i] + 1e-30, what + "[" + i + "] = " + got[i] + " vs " + ref[0][i]);
  }

  @Test
  void forwardDgradWgradMatchFp64() {
    try (Scope s = new Scope()) {
      float[] x = CpuOpsTest.randn(T * K, 1), w = CpuOpsTest.randn(E * N * K, 2), dy = CpuOpsTest.randn(T * N, 3);
      Tensor tx = s.add(cpu.fromFloats(x, DType.F32, T, K)), tw = s.add(cpu.fromFloats(w, DType.F32, E, N, K));
      Tensor off = s.add(cpu.fromLongs(OFFSETS, E + 1));
      Tensor y = s.add(cpu.zeros(DType.F32, T, N));
      cpu.groupedGemmForward(tx, tw, off, y, null, false);
      assertWithin(reference(x, w, OFFSETS, T, N, K, true), cpu.toFloats(y), "forward");

      // dgrad: dx[t][i] = Σ_j dy[t][j] · w_e[j][i] — w [E, N, K] is already the untransposed [red, out] layout
      Tensor dx = s.add(cpu.zeros(DType.F32, T, K));
      cpu.groupedGemmDgrad(s.add(cpu.fromFloats(dy, DType.F32, T, N)), tw, off, dx, false);
      assertWithin(reference(dy, w, OFFSETS, T, K, N, false), cpu.toFloats(dx), "dgrad");

      // wgrad: dw_e[j][i] = Σ_{t in e} dy[t][j] x[t][i]
      Tensor dw = s.add(cpu.fromFloats(new float[E * N * K], DType.F32, E, N, K));
      cpu.groupedGemmWgrad(s.add(cpu.fromFloats(dy, DType.F32, T, N)), tx, off, dw, false);
      float[] got = cpu.toFloats(dw);
      for (int e = 0; e < E; e++)
        for (int j = 0; j < N; j++)
          for (int i = 0; i < K; i++) {
            double sum = 0, abs = 0;
            for (long t = OFFSETS[e]; t < OFFSETS[e + 1]; t++) {
              double p = (double) dy[(int) t * N + j] * x[(int) t * K + i];
              sum += p;
              abs += Math.abs(p);
            }
            float g = got[(e * N + j) * K + i];
            assertTrue(Math.abs(g - sum) <= 1e-4 * abs + 1e-30, "wgrad e=" + e + " j=" + j + " i=" + i + ": " + g + " vs " + sum);
          }
    }
  }

  @Test
  void rowScaleAccumulateAndDenseGemm() {
    try (Scope s = new Scope()) {
      float[] a = CpuOpsTest.randn(7 * 11, 4), b = CpuOpsTest.randn(5 * 11, 5);
      Tensor ta = s.add(cpu.fromFloats(a, DType.F32, 7, 11)), tb = s.add(cpu.fromFloats(b, DType.F32, 5, 11));
      Tensor c = s.add(cpu.zeros(DType.F32, 7, 5));
      cpu.gemm(ta, tb, c, false);
      float[] once = cpu.toFloats(c);
      double[][] ref = reference(a, b, new long[] {0, 7}, 7, 5, 11, true);
      assertWithin(ref, once, "dense");
      cpu.gemm(ta, tb, c, true);
      float[] twice = cpu.toFloats(c);
      for (int i = 0; i < once.length; i++) assertEquals(2 * once[i], twice[i], 1e-5 * Math.abs(once[i]) + 1e-6);
      float[] scale = new float[7];
      for (int t = 0; t < 7; t++) scale[t] = t * 0.5f;
      cpu.groupedGemmForward(ta, tb, null, c, s.add(cpu.fromFloats(scale, DType.F32, 7)), false);
      float[] scaled = cpu.toFloats(c);
      for (int t = 0; t < 7; t++)
        for (int j = 0; j < 5; j++) assertEquals(scale[t] * once[t * 5 + j], scaled[t * 5 + j], 1e-5 * Math.abs(once[t * 5 + j]) + 1e-6);
    }
  }

  @Test
  void swigluEpilogueMatchesUnfusedPath() {
    int f = 13;
    try (Scope s = new Scope()) {
      float[] x = CpuOpsTest.randn(T * K, 6), w13 = CpuOpsTest.randn(E * 2 * f * K, 7);
      Tensor tx = s.add(cpu.fromFloats(x, DType.F32, T, K)), tw = s.add(cpu.fromFloats(w13, DType.F32, E, 2 * f, K));
      Tensor off = s.add(cpu.fromLongs(OFFSETS, E + 1));
      Tensor h = s.add(cpu.zeros(DType.F32, T, f)), gateUp = s.add(cpu.zeros(DType.F32, T, 2 * f));
      cpu.groupedGemmSwigluForward(tx, tw, off, h, gateUp);
      Tensor gu = s.add(cpu.zeros(DType.F32, T, 2 * f)), h2 = s.add(cpu.zeros(DType.F32, T, f));
      cpu.groupedGemmForward(tx, tw, off, gu, null, false);
      cpu.swigluForwardCombined(gu, h2);
      float[] a = cpu.toFloats(gateUp), b = cpu.toFloats(gu);
      for (int i = 0; i < a.length; i++) assertEquals(b[i], a[i], 1e-5 * Math.max(1, Math.abs(b[i])), "gate_up " + i);
      float[] p = cpu.toFloats(h), q = cpu.toFloats(h2);
      for (int i = 0; i < p.length; i++) assertEquals(q[i], p[i], 1e-5 * Math.max(1, Math.abs(q[i])), "h " + i);
    }
  }

  @Test
  void badOffsetsAndShapesAreReported() {
    try (Scope s = new Scope()) {
      Tensor x = s.add(cpu.zeros(DType.F32, 4, 3)), w = s.add(cpu.zeros(DType.F32, 2, 5, 3)), y = s.add(cpu.zeros(DType.F32, 4, 5));
      Tensor decreasing = s.add(cpu.fromLongs(new long[] {0, 3, 2}, 3));
      Moe4jException e = assertThrows(Moe4jException.class, () -> cpu.groupedGemmForward(x, w, decreasing, y, null, false));
      assertTrue(e.getMessage().contains("offsets"), e.getMessage());
      Tensor shortTotal = s.add(cpu.fromLongs(new long[] {0, 1, 3}, 3));
      e = assertThrows(Moe4jException.class, () -> cpu.groupedGemmForward(x, w, shortTotal, y, null, false));
      assertTrue(e.getMessage().contains("offsets"), e.getMessage());
      Tensor threeGroups = s.add(cpu.fromLongs(new long[] {0, 1, 2, 4}, 4));
      IllegalArgumentException ie =
          assertThrows(IllegalArgumentException.class, () -> cpu.groupedGemmForward(x, w, threeGroups, y, null, false));
      assertTrue(ie.getMessage().contains("w must be [3, N, K]"), ie.getMessage());
      assertArrayEquals(new long[] {0, 1, 2, 4}, cpu.toLongs(threeGroups));
      assertThrows(Moe4jException.class, () -> cpu.vendorGemm(x, w.view(0, 5, 3), y));
    }
  }
}
