package io.moe4j.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class HalfFloatsTest {

  @Test
  void bf16RoundsToNearestEvenAndKeepsNaN() {
    assertEquals((short) 0x3f80, HalfFloats.floatToBf16(1.0f + 0x1p-8f)); // tie -> even (down)
    assertEquals((short) 0x3f82, HalfFloats.floatToBf16(1.0f + 3 * 0x1p-8f)); // tie -> even (up)
    assertEquals((short) 0x3f81, HalfFloats.floatToBf16(1.0f + 0x1p-8f + 0x1p-16f));
    assertTrue(Float.isNaN(HalfFloats.bf16ToFloat(HalfFloats.floatToBf16(Float.intBitsToFloat(0x7f800001)))));
    assertEquals(Float.NEGATIVE_INFINITY, HalfFloats.bf16ToFloat(HalfFloats.floatToBf16(Float.NEGATIVE_INFINITY)));
  }

  @Test
  void f16EdgeCases() {
    assertEquals((short) 0x7bff, HalfFloats.floatToF16(65504f));
    assertEquals((short) 0x7c00, HalfFloats.floatToF16(65520f));
    assertEquals((short) 0x0001, HalfFloats.floatToF16(0x1p-24f));
    assertEquals((short) 0x0000, HalfFloats.floatToF16(0x1p-25f));
    for (int h = 0; h < 0x7c00; h++) assertEquals((short) h, HalfFloats.floatToF16(HalfFloats.f16ToFloat((short) h)));
  }

  /** The Java conversions and the native ones (kernels/common/numerics.h) agree bit for bit. */
  @Test
  void javaAndNativeConversionsAgree() {
    SplittableRandom r = new SplittableRandom(7);
    float[] values = new float[100_003];
    for (int i = 0; i < values.length; i++) values[i] = Float.intBitsToFloat(r.nextInt());
    try (Backend cpu = Backends.cpu();
        Tensor bf = cpu.fromFloats(values, DType.BF16, values.length);
        Tensor h = cpu.fromFloats(values, DType.F16, values.length)) {
      float[] nativeBf = cpu.toFloats(bf);
      float[] nativeH = cpu.toFloats(h);
      for (int i = 0; i < values.length; i++) {
        assertEquals(Float.floatToIntBits(HalfFloats.roundToBf16(values[i])), Float.floatToIntBits(nativeBf[i]), "bf16 of " + values[i]);
        float jh = HalfFloats.f16ToFloat(HalfFloats.floatToF16(values[i]));
        assertEquals(Float.floatToIntBits(jh), Float.floatToIntBits(nativeH[i]), "f16 of " + values[i]);
      }
    }
  }
}
