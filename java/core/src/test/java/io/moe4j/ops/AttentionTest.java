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
 * Attention through the Java API on the CPU backend: forward against a materialized fp64 softmax,
 * the backward's dv against its closed form, decode against the last rows of full attention, a
 * packed varlen batch against each of its sequences run alone, and the two HF q/k-norm variants
 * composed from rmsNormForward and ropeForward against fp64 (the C++ tests sweep shapes, windows,
 * bf16 and finite differences).
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

  // ---- varlen ---------------------------------------------------------------------------------

  /** Lengths with an empty sequence and a single token; T = 11. */
  static final int[] LENGTHS = {3, 0, 7, 1};

  static int[] offsets(int[] lengths) {
    int[] c = new int[lengths.length + 1];
    for (int b = 0; b < lengths.length; b++) c[b + 1] = c[b] + lengths[b];
    return c;
  }

  /**
   * The CPU twin runs a varlen batch and a batch of one on the same per-sequence code path (same
   * tiles from the sequence start, same summation order), so a packed batch must reproduce each
   * sequence run alone bit for bit: out, lse (rows h·T + t vs h·len + i), dq, dk and dv.
   */
  @Test
  void varlenEqualsEachSequenceAlone() {
    int[] c = offsets(LENGTHS);
    int t = c[LENGTHS.length];
    for (AttentionOptions options : new AttentionOptions[] {
        AttentionOptions.causal(D), new AttentionOptions(false, 4, 0.3f), new AttentionOptions(true, 2, 0.5f)}) {
      try (Scope s = new Scope()) {
        Tensor q = s.add(cpu.fromFloats(CpuOpsTest.randn(t * HQ * D, 61), DType.F32, t, HQ, D));
        Tensor k = s.add(cpu.fromFloats(CpuOpsTest.randn(t * HKV * D, 62), DType.F32, t, HKV, D));
        Tensor v = s.add(cpu.fromFloats(CpuOpsTest.randn(t * HKV * D, 63), DType.F32, t, HKV, D));
        Tensor dOut = s.add(cpu.fromFloats(CpuOpsTest.randn(t * HQ * D, 64), DType.F32, t, HQ, D));
        Tensor cu = s.add(cpu.fromInts(c, c.length));
        Tensor out = s.add(cpu.empty(DType.F32, t, HQ, D)), lse = s.add(cpu.empty(DType.F32, HQ, t));
        cpu.attentionForwardVarlen(q, k, v, cu, options, out, lse);
        Tensor dq = s.add(cpu.empty(DType.F32, t, HQ, D)), dk = s.add(cpu.empty(DType.F32, t, HKV, D));
        Tensor dv = s.add(cpu.empty(DType.F32, t, HKV, D));
        cpu.attentionBackwardVarlen(q, k, v, out, dOut, lse, cu, options, dq, dk, dv);
        float[] o = cpu.toFloats(out), l = cpu.toFloats(lse), gq = cpu.toFloats(dq), gk = cpu.toFloats(dk),
            gv = cpu.toFloats(dv);
        for (int b = 0; b < LENGTHS.length; b++) {
          int len = LENGTHS[b], start = c[b];
          if (len == 0) continue;
          String at = options + " sequence " + b;
          Tensor qb = q.view((long) start * HQ * D, 1, len, HQ, D), gb = dOut.view((long) start * HQ * D, 1, len, HQ, D);
          Tensor kb = k.view((long) start * HKV * D, 1, len, HKV, D), vb = v.view((long) start * HKV * D, 1, len, HKV, D);
          Tensor ob = s.add(cpu.empty(DType.F32, 1, len, HQ, D)), lb = s.add(cpu.empty(DType.F32, 1, HQ, len));
          cpu.attentionForward(qb, kb, vb, options, ob, lb);
          Tensor dqb = s.add(cpu.empty(DType.F32, 1, len, HQ, D)), dkb = s.add(cpu.empty(DType.F32, 1, len, HKV, D));
          Tensor dvb = s.add(cpu.empty(DType.F32, 1, len, HKV, D));
          cpu.attentionBackward(qb, kb, vb, ob, gb, lb, options, dqb, dkb, dvb);
          assertArrayEquals(cpu.toFloats(ob), slice(o, start * HQ * D, len * HQ * D), "out " + at);
          assertArrayEquals(cpu.toFloats(dqb), slice(gq, start * HQ * D, len * HQ * D), "dq " + at);
          assertArrayEquals(cpu.toFloats(dkb), slice(gk, start * HKV * D, len * HKV * D), "dk " + at);
          assertArrayEquals(cpu.toFloats(dvb), slice(gv, start * HKV * D, len * HKV * D), "dv " + at);
          float[] alone = cpu.toFloats(lb);
          for (int h = 0; h < HQ; h++)
            for (int i = 0; i < len; i++) assertEquals(alone[h * len + i], l[h * t + start + i], 0.0f, "lse " + at);
        }
      }
    }
  }

  static float[] slice(float[] a, int from, int n) {
    return java.util.Arrays.copyOfRange(a, from, from + n);
  }

  @Test
  void badCuSeqlensAreRejectedWithTheArgumentNamed() {
    int[] c = offsets(LENGTHS);
    int t = c[LENGTHS.length];
    AttentionOptions options = AttentionOptions.causal(D);
    try (Scope s = new Scope()) {
      Tensor q = s.add(cpu.zeros(DType.F32, t, HQ, D)), k = s.add(cpu.zeros(DType.F32, t, HKV, D));
      Tensor v = s.add(cpu.zeros(DType.F32, t, HKV, D)), out = s.add(cpu.empty(DType.F32, t, HQ, D));
      Tensor lse = s.add(cpu.empty(DType.F32, HQ, t));
      Tensor matrix = s.add(cpu.fromInts(c, 1, c.length)), floats = s.add(cpu.zeros(DType.F32, c.length));
      Tensor none = s.add(cpu.empty(DType.I32, 0));
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> cpu.attentionForwardVarlen(q, k, v, matrix, options, out, lse));
      assertTrue(e.getMessage().contains("attentionForwardVarlen: cuSeqlens must be I32 [B + 1]"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> cpu.attentionForwardVarlen(q, k, v, none, options, out, lse));
      assertTrue(e.getMessage().contains("cuSeqlens must be I32 [B + 1]"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class,
          () -> cpu.attentionBackwardVarlen(q, k, v, out, out, lse, floats, options, q, k, v));
      assertTrue(e.getMessage().contains("attentionBackwardVarlen: cuSeqlens must be I32"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class,
          () -> cpu.attentionForwardVarlen(q, k, v, s.add(cpu.fromInts(c, c.length)), options, out,
              s.add(cpu.empty(DType.F32, HQ, t - 1))));
      assertTrue(e.getMessage().contains("lse must have " + HQ * t + " elements"), e.getMessage());
      // the values are checked natively (CPU): not monotone
      int[] bad = {0, 2, 1, 10, t};
      Moe4jException n = assertThrows(Moe4jException.class,
          () -> cpu.attentionForwardVarlen(q, k, v, s.add(cpu.fromInts(bad, bad.length)), options, out, lse));
      assertTrue(n.getMessage().contains("cu_seqlens must be non-decreasing"), n.getMessage());
    }
  }

  // ---- q/k norm --------------------------------------------------------------------------------

  /** fp64 RMSNorm of rows of `cols` values of x, times weight[col]. */
  static double[] rmsNorm(float[] x, float[] weight, int cols, double eps) {
    double[] y = new double[x.length];
    for (int r = 0; r < x.length / cols; r++) {
      double ss = 0;
      for (int j = 0; j < cols; j++) ss += (double) x[r * cols + j] * x[r * cols + j];
      double rstd = 1 / Math.sqrt(ss / cols + eps);
      for (int j = 0; j < cols; j++) y[r * cols + j] = x[r * cols + j] * rstd * weight[j];
    }
    return y;
  }

  /** fp64 rotate-half RoPE of x [T, H, D] at positions pos[T]. */
  static double[] rope(double[] x, int[] pos, int heads, int dim, double theta) {
    double[] y = new double[x.length];
    int half = dim / 2;
    for (int t = 0; t < pos.length; t++)
      for (int h = 0; h < heads; h++)
        for (int i = 0; i < half; i++) {
          double angle = pos[t] * Math.pow(theta, -2.0 * i / dim);
          int base = (t * heads + h) * dim;
          double x0 = x[base + i], x1 = x[base + i + half];
          y[base + i] = x0 * Math.cos(angle) - x1 * Math.sin(angle);
          y[base + i + half] = x1 * Math.cos(angle) + x0 * Math.sin(angle);
        }
    return y;
  }

  /**
   * The two q/k-norm placements of HF MoE models compose from existing ops on a [T, H, D]
   * projection: Qwen3-MoE normalizes each head (rmsNormForward over the [T·H, D] view, weight [D]),
   * OLMoE the whole projection (over [T, H·D], weight [H·D]); both are followed by RoPE.
   */
  @Test
  void qkNormVariantsComposeFromRmsNormAndRope() {
    int t = 6, h = 3, d = 8;
    float eps = 1e-6f, theta = 10000f;
    float[] x = CpuOpsTest.randn(t * h * d, 71), wHead = CpuOpsTest.randn(d, 72), wAll = CpuOpsTest.randn(h * d, 73);
    int[] pos = {0, 1, 2, 7, 8, 30}; // e.g. a varlen batch's per-sequence positions
    double[] perHead = rope(rmsNorm(x, wHead, d, eps), pos, h, d, theta);
    double[] whole = rope(rmsNorm(x, wAll, h * d, eps), pos, h, d, theta);
    try (Scope s = new Scope()) {
      Tensor proj = s.add(cpu.fromFloats(x, DType.F32, t, h, d)), positions = s.add(cpu.fromInts(pos, t));
      Tensor normed = s.add(cpu.empty(DType.F32, t, h, d)), rotated = s.add(cpu.empty(DType.F32, t, h, d));
      // Qwen3-MoE: per-head RMSNorm
      cpu.rmsNormForward(proj.reshape((long) t * h, d), s.add(cpu.fromFloats(wHead, DType.F32, d)), eps,
          normed.reshape((long) t * h, d), null);
      cpu.ropeForward(normed, positions, theta, rotated);
      float[] got = cpu.toFloats(rotated);
      for (int i = 0; i < got.length; i++)
        assertEquals(perHead[i], got[i], 1e-5 * Math.max(1, Math.abs(perHead[i])), "per-head q-norm element " + i);
      // OLMoE: RMSNorm over the whole projection
      cpu.rmsNormForward(proj.reshape(t, (long) h * d), s.add(cpu.fromFloats(wAll, DType.F32, h * d)), eps,
          normed.reshape(t, (long) h * d), null);
      cpu.ropeForward(normed, positions, theta, rotated);
      got = cpu.toFloats(rotated);
      for (int i = 0; i < got.length; i++)
        assertEquals(whole[i], got[i], 1e-5 * Math.max(1, Math.abs(whole[i])), "whole-projection q-norm element " + i);
      // the two really differ (a test that could not tell them apart would prove nothing)
      double diff = 0;
      for (int i = 0; i < got.length; i++) diff = Math.max(diff, Math.abs(perHead[i] - whole[i]));
      assertTrue(diff > 0.1, "variants differ by " + diff);
    }
  }
}
