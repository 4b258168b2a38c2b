package io.moe4j.ops;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
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
 * Token-choice routing through the Java API on the CPU backend: scores → top-k → plan → gather →
 * (identity experts) → combine, against references written here (the C++ tests cover the
 * numerics, ties, capacity priority and gradients in depth).
 */
class RoutingTest {

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
  void droplessRouteWithIdentityExpertsReturnsTheInput() {
    int tokens = 9, experts = 4, k = 2, hidden = 5;
    float[] logits = CpuOpsTest.randn(tokens * experts, 21), x = CpuOpsTest.randn(tokens * hidden, 22);
    try (Scope s = new Scope()) {
      Tensor tl = s.add(cpu.fromFloats(logits, DType.F32, tokens, experts));
      Tensor scores = s.add(cpu.empty(DType.F32, tokens, experts));
      cpu.routerScores(tl, ScoreFunction.SOFTMAX, scores);
      float[] sc = cpu.toFloats(scores);
      for (int t = 0; t < tokens; t++) {
        double max = Double.NEGATIVE_INFINITY, sum = 0;
        for (int e = 0; e < experts; e++) max = Math.max(max, logits[t * experts + e]);
        for (int e = 0; e < experts; e++) sum += Math.exp(logits[t * experts + e] - max);
        for (int e = 0; e < experts; e++)
          assertEquals(Math.exp(logits[t * experts + e] - max) / sum, sc[t * experts + e], 1e-6);
      }
      Tensor ids = s.add(cpu.empty(DType.I32, tokens, k)), w = s.add(cpu.empty(DType.F32, tokens, k));
      cpu.routeTopK(scores, null, k, true, ids, w);
      int[] id = cpu.toInts(ids);
      float[] wt = cpu.toFloats(w);
      for (int t = 0; t < tokens; t++) {
        int best = 0;
        for (int e = 1; e < experts; e++) if (sc[t * experts + e] > sc[t * experts + best]) best = e;
        assertEquals(best, id[t * k], "token " + t + " top-1");
        assertEquals(1.0, wt[t * k] + wt[t * k + 1], 1e-6, "renormalized");
      }
      Tensor offsets = s.add(cpu.empty(DType.I64, experts + 1)), sorted = s.add(cpu.empty(DType.I32, tokens * k));
      Tensor slotOf = s.add(cpu.empty(DType.I32, tokens, k)), counts = s.add(cpu.empty(DType.I64, experts));
      cpu.routePlan(ids, w, 0, offsets, sorted, slotOf, counts);
      long[] off = cpu.toLongs(offsets);
      assertEquals(tokens * k, off[experts], "dropless keeps every assignment");
      long[] cnt = cpu.toLongs(counts);
      for (int e = 0; e < experts; e++) assertEquals(off[e + 1] - off[e], cnt[e]);
      Tensor tx = s.add(cpu.fromFloats(x, DType.F32, tokens, hidden));
      Tensor rows = s.add(cpu.empty(DType.F32, tokens * k, hidden)), y = s.add(cpu.empty(DType.F32, tokens, hidden));
      cpu.routeGather(tx, sorted, rows);
      cpu.routeCombine(rows, slotOf, w, y);
      float[] back = cpu.toFloats(y);
      for (int i = 0; i < x.length; i++) assertEquals(x[i], back[i], 1e-5 * Math.max(1, Math.abs(x[i])));
      // combine backward: d_weights[t, j] = <dy[t], rows[slot]> = <dy[t], x[t]> for identity experts
      float[] dy = CpuOpsTest.randn(tokens * hidden, 23);
      Tensor dRows = s.add(cpu.empty(DType.F32, tokens * k, hidden)), dW = s.add(cpu.empty(DType.F32, tokens, k));
      cpu.routeCombineBackward(s.add(cpu.fromFloats(dy, DType.F32, tokens, hidden)), rows, slotOf, w, dRows, dW);
      float[] dw = cpu.toFloats(dW);
      for (int t = 0; t < tokens; t++) {
        double dot = 0;
        for (int h = 0; h < hidden; h++) dot += (double) dy[t * hidden + h] * x[t * hidden + h];
        for (int j = 0; j < k; j++) assertEquals(dot, dw[t * k + j], 1e-5 * Math.max(1, Math.abs(dot)));
      }
    }
  }

  @Test
  void capacityDropsByPriorityAndBadShapesAreNamed() {
    int tokens = 4, experts = 2, k = 1;
    try (Scope s = new Scope()) {
      Tensor ids = s.add(cpu.fromInts(new int[] {0, 0, 0, 1}, tokens, k));
      Tensor w = s.add(cpu.fromFloats(new float[] {0.2f, 0.9f, 0.5f, 0.7f}, DType.F32, tokens, k));
      Tensor offsets = s.add(cpu.empty(DType.I64, experts + 1)), sorted = s.add(cpu.empty(DType.I32, tokens * k));
      Tensor slotOf = s.add(cpu.empty(DType.I32, tokens, k));
      cpu.routePlan(ids, w, 2, offsets, sorted, slotOf, null);
      assertArrayEquals(new long[] {0, 2, 3}, cpu.toLongs(offsets));
      int[] slots = cpu.toInts(slotOf);
      RoutingMetrics m = RoutingMetrics.of(new long[] {3, 1}, cpu.toLongs(offsets));
      assertEquals(new RoutingMetrics(4, 3, 1, 0.25, 3, 2.0), m);
      assertEquals(-1, slots[0], "token 0 has the lowest weight for expert 0: dropped");
      assertTrue(slots[1] >= 0 && slots[2] >= 0 && slots[3] >= 0);
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> cpu.routeTopK(s.add(cpu.zeros(DType.F32, 3, 4)), null, 2, true, s.add(cpu.zeros(DType.I32, 3, 3)),
              s.add(cpu.zeros(DType.F32, 3, 2))));
      assertTrue(e.getMessage().contains("expertIds must have shape [3, 2]"), e.getMessage());
    }
  }
}
