package io.moe4j.tensor;

/**
 * Allocator accounting. {@code liveBytes}: bytes in blocks of tensors not yet closed (rounded up to the size class);
 * {@code peakBytes}: the most ever live; {@code cachedBytes}: bytes held in free lists for reuse;
 * {@code systemAllocations}: allocations that reached the driver / host allocator.
 */
public record MemoryStats(long liveBytes, long peakBytes, long cachedBytes, long systemAllocations) {}
