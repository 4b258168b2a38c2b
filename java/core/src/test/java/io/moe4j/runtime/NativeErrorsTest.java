package io.moe4j.runtime;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Tensor;
import org.junit.jupiter.api.Test;

/** Mistakes surface as exceptions with a clear message; the JVM keeps running. */
class NativeErrorsTest {

  @Test
  void nativeMessagesSurfaceAsMoe4jException() {
    try (Backend cpu = Backends.cpu()) {
      try (Tensor x = cpu.zeros(DType.I32, 4, 8);
          Tensor w = cpu.zeros(DType.I32, 8);
          Tensor y = cpu.zeros(DType.I32, 4, 8)) {
        Moe4jException e = assertThrows(Moe4jException.class, () -> cpu.rmsNormForward(x, w, 1e-5f, y, null));
        assertEquals(Moe4jException.Status.UNSUPPORTED, e.status());
        assertTrue(e.getMessage().contains("moe4j_cpu_rmsnorm_forward"), e.getMessage());
        assertTrue(e.getMessage().contains("got I32"), e.getMessage());
      }
      try (Tensor table = cpu.zeros(DType.F32, 10, 4);
          Tensor ids = cpu.fromInts(new int[] {1, 2, 70000}, 3);
          Tensor out = cpu.zeros(DType.F32, 3, 4)) {
        Moe4jException e = assertThrows(Moe4jException.class, () -> cpu.embeddingForward(table, ids, out));
        assertTrue(e.getMessage().contains("70000"), e.getMessage());
        assertEquals(Moe4jException.Status.INVALID_ARGUMENT, e.status());
      }
      // raw C ABI misuse is validated too
      assertEquals(Moe4jException.Status.INVALID_ARGUMENT, CpuNative.moe4j_cpu_add(DType.F32.code(), 0, 0, 0, 16));
      assertTrue(CpuNative.moe4j_last_error().contains("a is NULL"), CpuNative.moe4j_last_error());
      assertEquals(Moe4jException.Status.INVALID_ARGUMENT, CpuNative.moe4j_cpu_scale(DType.F32.code(), 0, 0, -3, 1f));
      // the process is fine: work goes on
      try (Tensor a = cpu.fromFloats(new float[] {1, 2}, DType.F32, 2); Tensor b = cpu.zeros(DType.F32, 2)) {
        cpu.add(a, a, b);
        assertArrayEquals(new float[] {2, 4}, cpu.toFloats(b));
      }
      assertEquals(0, cpu.memoryStats().liveBytes());
    }
  }

  @Test
  void shapeMistakesNameTheArgument() {
    try (Backend cpu = Backends.cpu();
        Tensor x = cpu.zeros(DType.F32, 4, 8);
        Tensor w = cpu.zeros(DType.F32, 7);
        Tensor y = cpu.zeros(DType.F32, 4, 8)) {
      IllegalArgumentException e =
          assertThrows(IllegalArgumentException.class, () -> cpu.rmsNormForward(x, w, 1e-5f, y, null));
      assertEquals("rmsNormForward: weight must have shape [8], got [7]", e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> cpu.add(x, w, y));
      assertTrue(e.getMessage().startsWith("add: b must have shape [4, 8]"), e.getMessage());
    }
  }
}
