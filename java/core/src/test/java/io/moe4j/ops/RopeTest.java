package io.moe4j.ops;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.moe4j.tensor.DType;
import io.moe4j.tensor.Scope;
import io.moe4j.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** RoPE through the Java API (CPU) against the HF rotate-half formula in fp64. */
class RopeTest {

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
  void rotatesHalvesAndBackwardIsTheTranspose() {
    int batch = 2, seq = 3, heads = 3, d = 8;
    float theta = 10000f;
    int tokens = batch * seq;
    float[] x = CpuOpsTest.randn(tokens * heads * d, 41);
    int[] pos = {0, 1, 2, 5, 6, 7}; // second sequence decodes from offset 5
    try (Scope s = new Scope()) {
      Tensor tx = s.add(cpu.fromFloats(x, DType.F32, batch, seq, heads, d));
      Tensor tp = s.add(cpu.fromInts(pos, batch, seq));
      Tensor out = s.add(cpu.empty(DType.F32, batch, seq, heads, d));
      cpu.ropeForward(tx, tp, theta, out);
      float[] y = cpu.toFloats(out);
      for (int t = 0; t < tokens; t++)
        for (int h = 0; h < heads; h++)
          for (int i = 0; i < d / 2; i++) {
            double angle = pos[t] * Math.pow(theta, -2.0 * i / d);
            int base = (t * heads + h) * d;
            double x0 = x[base + i], x1 = x[base + i + d / 2];
            assertEquals(x0 * Math.cos(angle) - x1 * Math.sin(angle), y[base + i], 1e-5);
            assertEquals(x1 * Math.cos(angle) + x0 * Math.sin(angle), y[base + i + d / 2], 1e-5);
          }
      cpu.ropeBackward(out, tp, theta, out); // in place: R^T R x = x
      float[] back = cpu.toFloats(out);
      for (int i = 0; i < x.length; i++) assertEquals(x[i], back[i], 1e-5);
    }
  }
}
