package io.moe4j.tensor;

/**
 * bf16 and f16 bit conversions in Java, identical to kernels/common/numerics.h: round to nearest
 * even, NaN preserved (quiet), f16 overflow to infinity and subnormals kept.
 */
public final class HalfFloats {

  private HalfFloats() {}

  public static short floatToBf16(float f) {
    int u = Float.floatToRawIntBits(f);
    if ((u & 0x7fffffff) > 0x7f800000) return (short) ((u >>> 16) | 0x0040);
    u += 0x7fff + ((u >>> 16) & 1);
    return (short) (u >>> 16);
  }

  public static float bf16ToFloat(short h) {
    return Float.intBitsToFloat((h & 0xffff) << 16);
  }

  public static short floatToF16(float f) {
    int u = Float.floatToRawIntBits(f);
    int sign = (u >>> 16) & 0x8000;
    int abs = u & 0x7fffffff;
    if (abs > 0x7f800000) return (short) (sign | 0x7e00 | ((abs >>> 13) & 0x3ff));
    if (abs >= 0x477ff000) return (short) (sign | 0x7c00);
    if (abs < 0x38800000) {
      if (abs < 0x33000000) return (short) sign;
      int mant = (abs & 0x7fffff) | 0x800000;
      int shift = 113 - (abs >>> 23) + 13;
      int half = mant >>> shift;
      int rem = mant & ((1 << shift) - 1);
      int mid = 1 << (shift - 1);
      if (rem > mid || (rem == mid && (half & 1) != 0)) half++;
      return (short) (sign | half);
    }
    int r = abs - 0x38000000;
    r += 0xfff + ((r >>> 13) & 1);
    return (short) (sign | (r >>> 13));
  }

  public static float f16ToFloat(short h) {
    int bits = h & 0xffff;
    int sign = (bits & 0x8000) << 16;
    int exp = (bits >>> 10) & 0x1f;
    int mant = bits & 0x3ff;
    if (exp == 0x1f) return Float.intBitsToFloat(sign | 0x7f800000 | (mant << 13));
    if (exp == 0) {
      float v = mant * 0x1p-24f;
      return sign != 0 ? -v : v;
    }
    return Float.intBitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
  }

  /** Rounds a float to the nearest bf16 value, as a float. */
  public static float roundToBf16(float f) {
    return bf16ToFloat(floatToBf16(f));
  }
}
