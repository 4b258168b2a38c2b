package io.moe4j.tensor;

import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;

/**
 * A caching allocator over one device's {@link RawMemory}: freed blocks go to a free list keyed by
 * size class and are reused, so a steady-state training step allocates nothing from the driver.
 * Size classes: multiples of 512 bytes up to 1 MiB, then four classes per power of two (at most
 * 25% slack). Thread-safe. Accounting (live, peak, cached) lets tests check that everything
 * allocated was returned.
 */
public final class CachingAllocator implements AutoCloseable {

  private static final long SMALL_LIMIT = 1L << 20;
  private static final long SMALL_GRANULE = 512;

  private final RawMemory memory;
  private final TreeMap<Long, ArrayDeque<Long>> freeBySize = new TreeMap<>();
  private final Map<Long, Long> blockSize = new HashMap<>();
  private long liveBytes;
  private long peakBytes;
  private long cachedBytes;
  private long systemAllocations;

  public CachingAllocator(RawMemory memory) {
    this.memory = memory;
  }

  public RawMemory memory() {
    return memory;
  }

  /** Rounds a request up to its size class. */
  static long sizeClass(long bytes) {
    if (bytes <= SMALL_LIMIT) return Math.max(SMALL_GRANULE, (bytes + SMALL_GRANULE - 1) / SMALL_GRANULE * SMALL_GRANULE);
    int exp = 63 - Long.numberOfLeadingZeros(bytes - 1); // 2^exp < bytes <= 2^(exp+1)
    long step = 1L << (exp - 2);
    return (bytes + step - 1) / step * step;
  }

  /** Returns the address of a block of at least {@code bytes}; {@code bytes} == 0 gives 0. */
  public synchronized long allocate(long bytes) {
    if (bytes < 0) throw new IllegalArgumentException("bytes must be >= 0, got " + bytes);
    if (bytes == 0) return 0;
    long size = sizeClass(bytes);
    ArrayDeque<Long> free = freeBySize.get(size);
    long address;
    if (free != null && !free.isEmpty()) {
      address = free.pop();
      cachedBytes -= size;
    } else {
      address = allocateFromSystem(size);
    }
    blockSize.put(address, size);
    liveBytes += size;
    peakBytes = Math.max(peakBytes, liveBytes);
    return address;
  }

  private long allocateFromSystem(long size) {
    try {
      systemAllocations++;
      return memory.allocate(size);
    } catch (RuntimeException outOfMemory) {
      // Give the cache back to the system and try once more before failing.
      releaseCached();
      return memory.allocate(size);
    }
  }

  public synchronized void free(long address) {
    if (address == 0) return;
    Long size = blockSize.remove(address);
    if (size == null)
      throw new IllegalStateException("address 0x" + Long.toHexString(address) + " was not allocated here (double free?)");
    liveBytes -= size;
    cachedBytes += size;
    freeBySize.computeIfAbsent(size, k -> new ArrayDeque<>()).push(address);
  }

  /** Returns every cached block to the system. */
  public synchronized void releaseCached() {
    for (ArrayDeque<Long> list : freeBySize.values()) for (long a : list) memory.free(a);
    freeBySize.clear();
    cachedBytes = 0;
  }

  public synchronized MemoryStats stats() {
    return new MemoryStats(liveBytes, peakBytes, cachedBytes, systemAllocations);
  }

  /** Frees the cache; live blocks (leaks) are freed too and reported. */
  @Override
  public synchronized void close() {
    releaseCached();
    if (!blockSize.isEmpty()) {
      long leaked = liveBytes;
      for (long a : blockSize.keySet()) memory.free(a);
      blockSize.clear();
      liveBytes = 0;
      throw new IllegalStateException(
          "allocator for " + memory.device() + " closed with " + leaked + " bytes still live (tensors not closed)");
    }
  }
}
