package io.moe4j.io;

import io.moe4j.tensor.DType;
import java.util.Arrays;
import java.util.Optional;

/**
 * The element types a safetensors header may name (its "dtype" strings), with their sizes. A file
 * holding any of them is read and validated; only those with a moe4j {@link DType} can be loaded
 * into tensors.
 */
public enum SafetensorsDType {
  BOOL(1, null),
  U8(1, DType.U8),
  I8(1, null),
  F8_E4M3(1, null),
  F8_E5M2(1, null),
  I16(2, null),
  U16(2, null),
  F16(2, DType.F16),
  BF16(2, DType.BF16),
  I32(4, DType.I32),
  U32(4, null),
  F32(4, DType.F32),
  F64(8, null),
  I64(8, DType.I64),
  U64(8, null);

  private final int size;
  private final DType moe4j;

  SafetensorsDType(int size, DType moe4j) {
    this.size = size;
    this.moe4j = moe4j;
  }

  /** Bytes per element. */
  public int size() {
    return size;
  }

  /** The moe4j element type with the same bits, if there is one. */
  public Optional<DType> moe4j() {
    return Optional.ofNullable(moe4j);
  }

  public boolean isFloatingPoint() {
    return this == F16 || this == BF16 || this == F32;
  }

  /** The header string of a moe4j type. */
  public static SafetensorsDType of(DType dtype) {
    for (SafetensorsDType d : values()) if (d.moe4j == dtype) return d;
    throw new IllegalArgumentException("dtype " + dtype + " has no safetensors name");
  }

  /** Parses a header "dtype" string (exact, upper case as the format writes it). */
  public static Optional<SafetensorsDType> parse(String name) {
    for (SafetensorsDType d : values()) if (d.name().equals(name)) return Optional.of(d);
    return Optional.empty();
  }

  /** The accepted strings, for error messages. */
  public static String names() {
    return Arrays.toString(values());
  }
}
