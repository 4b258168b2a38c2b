package io.moe4j.tensor;

/**
 * Raw memory of one device: what the caching allocator sits on, and host transfers. Addresses are
 * plain {@code long}s (host pointers or CUDA device pointers).
 */
public interface RawMemory {

  Device device();

  /** Allocates {@code bytes} (> 0), at least 64-byte aligned. */
  long allocate(long bytes);

  void free(long address);

  void zero(long address, long bytes);

  void writeFloats(long address, float[] values);

  void readFloats(long address, float[] out);

  void writeInts(long address, int[] values);

  void readInts(long address, int[] out);

  void writeBytes(long address, byte[] values);

  void readBytes(long address, byte[] out);
}
