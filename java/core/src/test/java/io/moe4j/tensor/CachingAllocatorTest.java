package io.moe4j.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.runtime.CpuMemory;
import org.junit.jupiter.api.Test;

class CachingAllocatorTest {

  @Test
  void sizeClassesBoundTheSlack() {
    assertEquals(512, CachingAllocator.sizeClass(1));
    assertEquals(512, CachingAllocator.sizeClass(512));
    assertEquals(1024, CachingAllocator.sizeClass(513));
    assertEquals(1 << 20, CachingAllocator.sizeClass(1 << 20));
    for (long bytes = (1 << 20) + 1; bytes < (1L << 34); bytes = bytes * 3 / 2 + 7) {
      long c = CachingAllocator.sizeClass(bytes);
      assertTrue(c >= bytes, "class covers the request");
      assertTrue(c <= bytes * 1.25 + 1, "at most 25% slack for " + bytes + " -> " + c);
    }
  }

  @Test
  void freedBlocksAreReusedAndAccountingReturnsToZero() {
    try (CachingAllocator a = new CachingAllocator(new CpuMemory())) {
      long first = a.allocate(1000);
      assertEquals(1024, a.stats().liveBytes());
      a.free(first);
      assertEquals(0, a.stats().liveBytes());
      assertEquals(1024, a.stats().cachedBytes());
      long second = a.allocate(900); // same size class: the cached block comes back
      assertEquals(first, second);
      assertEquals(1, a.stats().systemAllocations());
      long big = a.allocate(3 << 20);
      assertEquals(1024 + (3L << 20), a.stats().peakBytes());
      a.free(second);
      a.free(big);
      assertEquals(0, a.stats().liveBytes());
      assertEquals(0, a.allocate(0), "empty allocations need no memory");
    }
  }

  @Test
  void doubleFreeAndLeaksAreReported() {
    CachingAllocator a = new CachingAllocator(new CpuMemory());
    long p = a.allocate(64);
    a.free(p);
    assertThrows(IllegalStateException.class, () -> a.free(p));
    a.allocate(64);
    IllegalStateException leak = assertThrows(IllegalStateException.class, a::close);
    assertTrue(leak.getMessage().contains("still live"), leak.getMessage());
    assertThrows(IllegalArgumentException.class, () -> new CachingAllocator(new CpuMemory()).allocate(-1));
  }
}
