package io.moe4j.io;

import java.util.Arrays;
import java.util.List;

/**
 * One tensor of a safetensors header, validated: its bytes are {@code [begin, end)} counted from the
 * start of the data section (after the 8-byte length and the JSON header), and {@code end - begin}
 * equals numel · element size.
 */
public record TensorInfo(String name, SafetensorsDType dtype, List<Long> shape, long begin, long end) {

  public TensorInfo {
    shape = List.copyOf(shape);
  }

  public long numel() {
    long n = 1;
    for (long d : shape) n = Math.multiplyExact(n, d);
    return n;
  }

  public long byteLength() {
    return end - begin;
  }

  public long[] shapeArray() {
    return shape.stream().mapToLong(Long::longValue).toArray();
  }

  /** Whether the shape equals {@code other}. */
  public boolean hasShape(long[] other) {
    return Arrays.equals(shapeArray(), other);
  }
}
