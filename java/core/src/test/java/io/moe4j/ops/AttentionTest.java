package io.moe4j.ops;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.tensor.DType;
import io.moe4j.tensor.Scope;
import io.moe4j.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Attention through the Java API on the CPU backend: forward against a materialized fp64 softmax,
 * the backward's dv against its closed form, and decode against the last rows of full attention
 * (the C++ tests sweep shapes, windows, bf16 and finite differences).
 */
class AttentionTest {

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

  static final int B = 1, S = 9, HQ = 4, HKV = 2, D = 8;

  /** p[h][i][j] = causal softmax of scaled q_i·k_j for query head h. */
  static double[][][] probabilities(float[] q, float[] k, float scale) {
    double[][][] p = new double[HQ][S][S];
    for (int h = 0; h < HQ; h++) {
      int g = h / (HQ / HKV);
      for (int i = 0; i < S; i++) {
        double max = Double.NEGATIVE_INFINITY;
        double[] s = new double[i + 1];
        for (int j = 0; j <= i; j++) {
          for (int d = 0; d < D; d++) s[j] += (double) q[(i * HQ + h) * D + d] * k[(j * HKV + g) * D + d];
          s[j] *= scale;
          max = Math.max(max, s[j]);
        }
        double sum = 0;
        for (int j = 0; j <= i; j++) sum += Math.exp(s[j] - max);
        for (int j = 0; j <= i; j++) p[h][i][j] = Math.exp(s[j] - max) / sum;
      }
    }
    return p;
  }

  @Test
  void forwardBackwardAndDecodeMatchReferences() {
    float[] q = CpuOpsTest.randn(B * S * HQ * D, 51), k = CpuOpsTest.randn(B * S * HKV * D, 52);
    float[] v = CpuOpsTest.randn(B * S * HKV * D, 53), dOut = CpuOpsTest.randn(B * S * HQ * D, 54);
    AttentionOptions options = AttentionOptions.causal(D);
    double[][][] p = probabilities(q, k, options.scale());
    try (Scope s = new Scope()) {
      Tensor tq = s.add(cpu.fromFloats(q, DType.F32, B, S, HQ, D)), tk = s.add(cpu.fromFloats(k, DType.F32, B, S, HKV, D));
      Tensor tv = s.add(cpu.fromFloats(v, DType.F32, B, S, HKV, D));
      Tensor out = s.add(cpu.empty(DType.F32, B, S, HQ, D)), lse = s.add(cpu.empty(DType.F32, B, HQ, S));
      cpu.attentionForward(tq, tk, tv, options, out, lse);
      float[] o = cpu.toFloats(out);
      for (int h = 0; h < HQ; h++)
        for (int i = 0; i < S; i++)
          for (int d = 0; d < D; d++) {
            double ref = 0;
            for (int j = 0; j <= i; j++) ref += p[h][i][j] * v[(j * HKV + h / 2) * D + d];
            assertEquals(ref, o[(i * HQ + h) * D + d], 1e-5, "out h=" + h + " i=" + i);
          }
      Tensor dq = s.add(cpu.empty(DType.F32, B, S, HQ, D)), dk = s.add(cpu.empty(DType.F32, B, S, HKV, D));
      Tensor dv = s.add(cpu.empty(DType.F32, B, S, HKV, D));
      cpu.attentionBackward(tq, tk, tv, out, s.add(cpu.fromFloats(dOut, DType.F32, B, S, HQ, D)), lse, options, dq, dk, dv);
      float[] gv = cpu.toFloats(dv);
      for (int g = 0; g < HKV; g++)
        for (int j = 0; j < S; j++)
          for (int d = 0; d < D; d++) {
            double ref = 0; // dv_j = Σ over the group's heads and queries i >= j of p_ij · dOut_i
            for (int h = g * 2; h < g * 2 + 2; h++) for (int i = j; i < S; i++) ref += p[h][i][j] * dOut[(i * HQ + h) * D + d];
            assertEquals(ref, gv[(j * HKV + g) * D + d], 1e-5, "dv g=" + g + " j=" + j);
          }

      // decode the last 2 positions against a cache holding the first S - 2
      int n = 2, cached = S - n, maxSeq = S + 3;
      Tensor kCache = s.add(cpu.zeros(DType.F32, B, maxSeq, HKV, D)), vCache = s.add(cpu.zeros(DType.F32, B, maxSeq, HKV, D));
      float[] kc = new float[B * maxSeq * HKV * D], vc = new float[kc.length];
      System.arraycopy(k, 0, kc, 0, cached * HKV * D);
      System.arraycopy(v, 0, vc, 0, cached * HKV * D);
      cpu.copyFromFloats(kc, kCache);
      cpu.copyFromFloats(vc, vCache);
      Tensor qNew = tq.view((long) cached * HQ * D, B, n, HQ, D);
      Tensor kNew = tk.view((long) cached * HKV * D, B, n, HKV, D), vNew = tv.view((long) cached * HKV * D, B, n, HKV, D);
      Tensor decoded = s.add(cpu.empty(DType.F32, B, n, HQ, D));
      cpu.attentionDecode(qNew, kNew, vNew, kCache, vCache, s.add(cpu.fromInts(new int[] {cached}, B)), options, 3, decoded);
      float[] dec = cpu.toFloats(decoded);
      for (int i = 0; i < dec.length; i++)
        assertEquals(o[cached * HQ * D + i], dec[i], 1e-5, "decode element " + i);

      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> cpu.attentionForward(tq, tv.view(0, B, S, HKV, D - 2), tv, options, out, lse));
      assertTrue(e.getMessage().contains("k must be [1, 9, H, 8]"), e.getMessage());
    }
  }
}
