package io.moe4j.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

class TensorTest {

  static Backend cpu;

  @BeforeAll
  static void open() {
    cpu = Backends.cpu();
  }

  @AfterAll
  static void close() {
    assertEquals(0, cpu.memoryStats().liveBytes(), "every tensor was closed");
    cpu.close();
  }

  @Test
  void roundTripsEveryFloatDtype() {
    float[] values = {0f, 1f, -2.5f, 3.14159f, 1e-3f, 65504f};
    for (DType dt : new DType[] {DType.F32, DType.BF16, DType.F16}) {
      try (Tensor t = cpu.fromFloats(values, dt, 2, 3)) {
        float[] back = cpu.toFloats(t);
        for (int i = 0; i < values.length; i++) {
          float expected = switch (dt) {
            case BF16 -> HalfFloats.roundToBf16(values[i]);
            case F16 -> HalfFloats.f16ToFloat(HalfFloats.floatToF16(values[i]));
            default -> values[i];
          };
          assertEquals(expected, back[i], 0f, dt + " element " + i);
        }
        assertEquals(6L * dt.size(), t.byteSize());
      }
    }
  }

  @Test
  void viewsShareMemoryByOffset() {
    try (Tensor t = cpu.fromFloats(new float[] {1, 2, 3, 4, 5, 6}, DType.F32, 2, 3)) {
      Tensor row1 = t.view(3, 3);
      assertArrayEquals(new float[] {4, 5, 6}, cpu.toFloats(row1));
      assertTrue(row1.isView());
      cpu.copyFromFloats(new float[] {7, 8, 9}, row1);
      assertArrayEquals(new float[] {1, 2, 3, 7, 8, 9}, cpu.toFloats(t));
      assertArrayEquals(new long[] {3, 2}, t.reshape(3, 2).shape());
      row1.close(); // a view owns nothing
      assertEquals(6, cpu.toFloats(t).length);
      assertThrows(IllegalArgumentException.class, () -> t.view(4, 3));
      assertThrows(IllegalArgumentException.class, () -> t.reshape(4, 2));
      assertThrows(IllegalArgumentException.class, () -> t.view(-1, 1));
    }
  }

  @Test
  void badShapesAndClosedTensorsAreRejected() {
    assertThrows(IllegalArgumentException.class, () -> cpu.empty(DType.F32, 2, -1));
    assertThrows(ArithmeticException.class, () -> cpu.empty(DType.F32, Long.MAX_VALUE, 4));
    Tensor t = cpu.zeros(DType.I32, 5);
    assertArrayEquals(new int[5], cpu.toInts(t));
    t.close();
    t.close(); // idempotent
    assertThrows(IllegalStateException.class, t::address);
    try (Tensor empty = cpu.empty(DType.F32, 0, 7)) {
      assertEquals(0, cpu.toFloats(empty).length);
    }
  }

  @Test
  void scopeClosesEverythingInReverseOrder() {
    long before = cpu.memoryStats().liveBytes();
    try (Scope scope = new Scope()) {
      scope.add(cpu.empty(DType.F32, 1000));
      scope.add(cpu.zeros(DType.BF16, 10, 10));
      assertTrue(cpu.memoryStats().liveBytes() > before);
    }
    assertEquals(before, cpu.memoryStats().liveBytes());
  }
}
