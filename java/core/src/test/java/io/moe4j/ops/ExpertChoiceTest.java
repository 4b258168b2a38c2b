package io.moe4j.ops;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.moe4j.tensor.DType;
import io.moe4j.tensor.Scope;
import io.moe4j.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Expert Choice routing and the balancing losses through the Java API on the CPU backend. */
class ExpertChoiceTest {

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

  @Test
  void eachExpertTakesItsBestTokensPerGroup() {
    int tokens = 6, experts = 3, group = 3, capacity = 1, hidden = 4;
    float[] scores = CpuOpsTest.randn(tokens * experts, 31);
    float[] x = CpuOpsTest.randn(tokens * hidden, 32);
    try (Scope s = new Scope()) {
      Tensor sc = s.add(cpu.fromFloats(scores, DType.F32, tokens, experts));
      Tensor offsets = s.add(cpu.empty(DType.I64, experts + 1));
      Tensor sorted = s.add(cpu.empty(DType.I32, experts * (tokens / group) * capacity));
      Tensor slotOf = s.add(cpu.empty(DType.I32, tokens, experts)), w = s.add(cpu.empty(DType.F32, tokens, experts));
      Tensor uncovered = s.add(cpu.empty(DType.I64, 1));
      cpu.routeExpertChoice(sc, group, capacity, offsets, sorted, slotOf, w, uncovered);
      assertArrayEquals(new long[] {0, 2, 4, 6}, cpu.toLongs(offsets));
      int[] tok = cpu.toInts(sorted);
      float[] wt = cpu.toFloats(w);
      boolean[] covered = new boolean[tokens];
      for (int e = 0; e < experts; e++)
        for (int g = 0; g < tokens / group; g++) {
          int best = g * group;
          for (int t = g * group + 1; t < (g + 1) * group; t++) if (scores[t * experts + e] > scores[best * experts + e]) best = t;
          assertEquals(best, tok[e * 2 + g], "expert " + e + " group " + g);
          assertEquals(scores[best * experts + e], wt[best * experts + e], 0f);
          covered[best] = true;
        }
      long expectUncovered = 0;
      for (boolean c : covered) if (!c) expectUncovered++;
      assertEquals(expectUncovered, cpu.toLongs(uncovered)[0]);
      // combine with identity experts: y[t] = (Σ_e w[t, e]) · x[t]
      Tensor rows = s.add(cpu.empty(DType.F32, experts * 2, hidden)), y = s.add(cpu.empty(DType.F32, tokens, hidden));
      cpu.routeGather(s.add(cpu.fromFloats(x, DType.F32, tokens, hidden)), sorted, rows);
      cpu.routeCombine(rows, slotOf, w, y);
      float[] out = cpu.toFloats(y);
      for (int t = 0; t < tokens; t++) {
        double sum = 0;
        for (int e = 0; e < experts; e++) sum += wt[t * experts + e];
        for (int h = 0; h < hidden; h++) assertEquals(sum * x[t * hidden + h], out[t * hidden + h], 1e-5);
      }
    }
  }

  @Test
  void balancingLossesAndBiasUpdate() {
    int tokens = 5, experts = 4, k = 2;
    float[] logits = CpuOpsTest.randn(tokens * experts, 33);
    int[] ids = {0, 1, 0, 2, 0, 3, 1, 0, 0, 2};
    try (Scope s = new Scope()) {
      Tensor lg = s.add(cpu.fromFloats(logits, DType.F32, tokens, experts));
      Tensor sc = s.add(cpu.empty(DType.F32, tokens, experts));
      cpu.routerScores(lg, ScoreFunction.SOFTMAX, sc);
      float[] p = cpu.toFloats(sc);
      Tensor out = s.add(cpu.empty(DType.F32, 1)), dScores = s.add(cpu.zeros(DType.F32, tokens, experts));
      cpu.routerBalanceLoss(sc, s.add(cpu.fromInts(ids, tokens, k)), 0.01f, out, dScores);
      double[] f = new double[experts], meanP = new double[experts];
      for (int id : ids) f[id] += 1.0 / (tokens * k);
      for (int t = 0; t < tokens; t++) for (int e = 0; e < experts; e++) meanP[e] += p[t * experts + e] / tokens;
      double loss = 0;
      for (int e = 0; e < experts; e++) loss += 0.01 * experts * f[e] * meanP[e];
      assertEquals(loss, cpu.toFloats(out)[0], 1e-6);
      float[] d = cpu.toFloats(dScores);
      for (int t = 0; t < tokens; t++)
        for (int e = 0; e < experts; e++) assertEquals(0.01 * experts * f[e] / tokens, d[t * experts + e], 1e-7);
      Tensor z = s.add(cpu.empty(DType.F32, 1));
      cpu.routerZLoss(lg, 1e-3f, z, null);
      double zl = 0;
      for (int t = 0; t < tokens; t++) {
        double max = Double.NEGATIVE_INFINITY, sum = 0;
        for (int e = 0; e < experts; e++) max = Math.max(max, logits[t * experts + e]);
        for (int e = 0; e < experts; e++) sum += Math.exp(logits[t * experts + e] - max);
        double lse = max + Math.log(sum);
        zl += 1e-3 * lse * lse / tokens;
      }
      assertEquals(zl, cpu.toFloats(z)[0], 1e-6);
      Tensor bias = s.add(cpu.zeros(DType.F32, experts));
      cpu.routerBiasUpdate(bias, s.add(cpu.fromLongs(new long[] {5, 2, 3, 2}, experts)), 0.1f); // mean 3
      assertArrayEquals(new float[] {-0.1f, 0.1f, 0f, 0.1f}, cpu.toFloats(bias), 0f);
    }
  }
}
