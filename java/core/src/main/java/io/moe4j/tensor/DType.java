package io.moe4j.tensor;

/** Element types. {@link #code()} matches MOE4J_DTYPE_* in native/include/moe4j.h. */
public enum DType {
  F32(0, 4),
  BF16(1, 2),
  F16(2, 2),
  I32(3, 4),
  I64(4, 8),
  U8(5, 1);

  private final int code;
  private final int size;

  DType(int code, int size) {
    this.code = code;
    this.size = size;
  }

  public int code() {
    return code;
  }

  /** Bytes per element. */
  public int size() {
    return size;
  }

  public boolean isFloatingPoint() {
    return this == F32 || this == BF16 || this == F16;
  }
}
