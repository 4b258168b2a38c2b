package io.moe4j.ops;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.moe4j.runtime.CudaSupport;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Scope;
import io.moe4j.tensor.Tensor;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/** The cuda backend against the CPU twin, op by op. Skipped (with the reason) without a usable GPU. */
@Tag("gpu")
class CudaOpsTest {

  static Backend cpu;
  static Backend cuda;

  @BeforeAll
  static void open() {
    if (!CudaSupport.probe().available()) return;
    cpu = Backends.cpu();
    cuda = Backends.cuda(0);
  }

  /** Per test, so each is reported skipped (with the reason) rather than silently absent. */
  @BeforeEach
  void requireGpu() {
    CudaSupport.Status s = CudaSupport.probe();
    assumeTrue(s.available(), () -> "cuda unavailable: " + s.reason());
  }

  @AfterAll
  static void close() {
    if (cuda == null) return;
    assertEquals(0, cuda.memoryStats().liveBytes());
    assertEquals(0, cpu.memoryStats().liveBytes());
    cuda.close();
    cpu.close();
  }

  static void assertNear(float[] expected, float[] actual, double rel, String what) {
    assertEquals(expected.length, actual.length);
    for (int i = 0; i < expected.length; i++)
      assertTrue(Math.abs(expected[i] - actual[i]) <= rel * Math.max(1, Math.abs(expected[i])),
          what + "[" + i + "]: cuda " + actual[i] + " vs cpu " + expected[i]);
  }

  @Test
  void everyOpMatchesTheCpuTwin() {
    int rows = 37, cols = 1031;
    float[] x = CpuOpsTest.randn(rows * cols, 1), w = CpuOpsTest.randn(cols, 2), dy = CpuOpsTest.randn(rows * cols, 3);
    for (DType dt : new DType[] {DType.F32, DType.BF16}) {
      float[][] results = new float[2][];
      float[][] grads = new float[2][];
      float[][] dws = new float[2][];
      float[][] swiglu = new float[2][];
      float[][] ce = new float[2][];
      Backend[] both = {cpu, cuda};
      for (int k = 0; k < 2; k++) {
        Backend b = both[k];
        try (Scope s = new Scope()) {
          Tensor tx = s.add(b.fromFloats(x, dt, rows, cols)), tw = s.add(b.fromFloats(w, dt, cols));
          Tensor y = s.add(b.empty(dt, rows, cols)), rstd = s.add(b.empty(DType.F32, rows));
          b.rmsNormForward(tx, tw, 1e-5f, y, rstd);
          results[k] = b.toFloats(y);
          Tensor dx = s.add(b.empty(dt, rows, cols)), dw = s.add(b.empty(DType.F32, cols));
          b.rmsNormBackward(s.add(b.fromFloats(dy, dt, rows, cols)), tx, tw, rstd, dx, dw, false);
          grads[k] = b.toFloats(dx);
          dws[k] = b.toFloats(dw);
          Tensor h = s.add(b.empty(dt, rows, cols));
          b.swigluForward(tx, y, h);
          swiglu[k] = b.toFloats(h);
          int[] targets = new int[rows];
          for (int r = 0; r < rows; r++) targets[r] = (r * 131) % cols;
          Tensor losses = s.add(b.empty(DType.F32, rows)), lse = s.add(b.empty(DType.F32, rows));
          b.crossEntropyForward(tx, s.add(b.fromInts(targets, rows)), -100, losses, lse);
          ce[k] = b.toFloats(losses);
        }
      }
      double tol = dt == DType.F32 ? 1e-5 : 1e-2; // bf16 outputs may differ by one rounding step
      assertNear(results[0], results[1], tol, dt + " rmsnorm");
      assertNear(grads[0], grads[1], tol, dt + " rmsnorm dx");
      assertNear(dws[0], dws[1], 1e-4, dt + " rmsnorm dw");
      assertNear(swiglu[0], swiglu[1], tol, dt + " swiglu");
      assertNear(ce[0], ce[1], 1e-5, dt + " cross-entropy");
    }
  }

  @Test
  void optimizerAndNormMatchTheCpuTwin() {
    int n = 100_003;
    float[] p = CpuOpsTest.randn(n, 4), g = CpuOpsTest.randn(n, 5);
    float[][] params = new float[2][];
    float[][] norms = new float[2][];
    Backend[] both = {cpu, cuda};
    for (int k = 0; k < 2; k++) {
      Backend b = both[k];
      try (Scope s = new Scope()) {
        Tensor tp = s.add(b.fromFloats(p, DType.F32, n)), tg = s.add(b.fromFloats(g, DType.F32, n));
        Tensor m = s.add(b.zeros(DType.F32, n)), v = s.add(b.zeros(DType.F32, n));
        Tensor clip = s.add(b.gradNormAndClipCoefficient(List.of(tg), 1.0f));
        norms[k] = b.toFloats(clip);
        Tensor coefficient = clip.view(1, 1);
        b.adamwStep(tp, tg, m, v, null, AdamWConfig.defaults(1e-3f), 1, coefficient);
        params[k] = b.toFloats(tp);
      }
    }
    assertNear(norms[0], norms[1], 1e-5, "norm and coefficient");
    assertNear(params[0], params[1], 1e-6, "adamw");
    int[] ids = {0, 5, 5, 2};
    try (Tensor table = cuda.fromFloats(CpuOpsTest.randn(60, 6), DType.F32, 6, 10);
        Tensor tids = cuda.fromInts(ids, 4);
        Tensor out = cuda.empty(DType.F32, 4, 10)) {
      cuda.embeddingForward(table, tids, out);
      float[] t = cuda.toFloats(table), o = cuda.toFloats(out);
      for (int i = 0; i < 4; i++) assertArrayEquals(java.util.Arrays.copyOfRange(t, ids[i] * 10, ids[i] * 10 + 10), java.util.Arrays.copyOfRange(o, i * 10, i * 10 + 10));
    }
  }

  @Test
  void groupedGemmMatchesTheCpuTwin() {
    long[] offsets = {0, 0, 130, 131, 131, 600};
    int t = 600, n = 136, k = 264, e = 5;
    float[] x = CpuOpsTest.randn(t * k, 7), w = CpuOpsTest.randn(e * n * k, 8);
    for (DType dt : new DType[] {DType.F32, DType.BF16}) {
      float[][] y = new float[2][];
      Backend[] both = {cpu, cuda};
      for (int b = 0; b < 2; b++) {
        try (Scope s = new Scope()) {
          Tensor tx = s.add(both[b].fromFloats(x, dt, t, k)), tw = s.add(both[b].fromFloats(w, dt, e, n, k));
          Tensor ty = s.add(both[b].empty(DType.F32, t, n));
          both[b].groupedGemmForward(tx, tw, s.add(both[b].fromLongs(offsets, e + 1)), ty, null, false);
          y[b] = both[b].toFloats(ty);
        }
      }
      // same inputs, f32 accumulation in a different order: |Δ| ≤ K·2⁻²³·Σ|a·b| ≈ 3e-5·(√K·O(1))
      assertNear(y[0], y[1], 1e-3, dt + " grouped forward");
    }
  }

  @Test
  void tokenChoiceRoutingMatchesTheCpuTwin() {
    int tokens = 300, experts = 16, k = 4, hidden = 72;
    float[] logits = CpuOpsTest.randn(tokens * experts, 9), x = CpuOpsTest.randn(tokens * hidden, 10);
    long[][] offsets = new long[2][];
    int[][] slots = new int[2][];
    float[][] y = new float[2][];
    // both backends select from the CPU's scores: the device expf may differ from glibc's by an ulp,
    // which could flip a near-tie (scores themselves are compared in the C++ GPU tests)
    float[] cpuScores = cpuScores(logits, tokens, experts);
    Backend[] both = {cpu, cuda};
    for (int b = 0; b < 2; b++) {
      Backend be = both[b];
      try (Scope s = new Scope()) {
        Tensor scores = s.add(be.fromFloats(cpuScores, DType.F32, tokens, experts));
        Tensor ids = s.add(be.empty(DType.I32, tokens, k)), w = s.add(be.empty(DType.F32, tokens, k));
        be.routeTopK(scores, null, k, true, ids, w);
        Tensor off = s.add(be.empty(DType.I64, experts + 1)), sorted = s.add(be.empty(DType.I32, tokens * k));
        Tensor slotOf = s.add(be.empty(DType.I32, tokens, k));
        be.routePlan(ids, w, (long) Math.ceil(1.25 * tokens * k / experts), off, sorted, slotOf, null);
        Tensor rows = s.add(be.empty(DType.F32, tokens * k, hidden)), out = s.add(be.empty(DType.F32, tokens, hidden));
        be.routeGather(s.add(be.fromFloats(x, DType.F32, tokens, hidden)), sorted, rows);
        be.routeCombine(rows, slotOf, w, out);
        offsets[b] = be.toLongs(off);
        slots[b] = be.toInts(slotOf);
        y[b] = be.toFloats(out);
      }
    }
    assertArrayEquals(offsets[0], offsets[1], "plan offsets");
    assertArrayEquals(slots[0], slots[1], "plan slots");
    assertArrayEquals(y[0], y[1], "combine (same order, bitwise)");
  }

  private static float[] cpuScores(float[] logits, int tokens, int experts) {
    try (Tensor l = cpu.fromFloats(logits, DType.F32, tokens, experts); Tensor sc = cpu.empty(DType.F32, tokens, experts)) {
      cpu.routerScores(l, ScoreFunction.SOFTMAX, sc);
      return cpu.toFloats(sc);
    }
  }

  /**
   * Packed varlen attention through the Java API: cuda (reference kernels for F32; cuSeqlens in
   * device memory) against the CPU twin, forward (out, lse) and backward (dq, dk, dv), with an empty
   * and a one-token sequence. Both compute the same f32 formulas in different summation orders.
   */
  @Test
  void varlenAttentionMatchesTheCpuTwin() {
    int[] cu = {0, 5, 5, 6, 75};
    int t = cu[cu.length - 1], hq = 4, hkv = 2, d = 16;
    float[] q = CpuOpsTest.randn(t * hq * d, 81), k = CpuOpsTest.randn(t * hkv * d, 82);
    float[] v = CpuOpsTest.randn(t * hkv * d, 83), g = CpuOpsTest.randn(t * hq * d, 84);
    AttentionOptions options = new AttentionOptions(true, 40, 0.25f);
    float[][][] results = new float[2][][];
    Backend[] both = {cpu, cuda};
    for (int b = 0; b < 2; b++) {
      Backend be = both[b];
      try (Scope s = new Scope()) {
        Tensor tq = s.add(be.fromFloats(q, DType.F32, t, hq, d)), tk = s.add(be.fromFloats(k, DType.F32, t, hkv, d));
        Tensor tv = s.add(be.fromFloats(v, DType.F32, t, hkv, d)), tg = s.add(be.fromFloats(g, DType.F32, t, hq, d));
        Tensor tcu = s.add(be.fromInts(cu, cu.length));
        Tensor out = s.add(be.empty(DType.F32, t, hq, d)), lse = s.add(be.empty(DType.F32, hq, t));
        be.attentionForwardVarlen(tq, tk, tv, tcu, options, out, lse);
        Tensor dq = s.add(be.empty(DType.F32, t, hq, d)), dk = s.add(be.empty(DType.F32, t, hkv, d));
        Tensor dv = s.add(be.empty(DType.F32, t, hkv, d));
        be.attentionBackwardVarlen(tq, tk, tv, out, tg, lse, tcu, options, dq, dk, dv);
        results[b] = new float[][] {be.toFloats(out), be.toFloats(lse), be.toFloats(dq), be.toFloats(dk), be.toFloats(dv)};
      }
    }
    String[] names = {"out", "lse", "dq", "dk", "dv"};
    for (int i = 0; i < names.length; i++) assertNear(results[0][i], results[1][i], 1e-4, "varlen " + names[i]);
  }
}
