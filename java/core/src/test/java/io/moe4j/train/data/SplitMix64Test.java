package io.moe4j.train.data;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class SplitMix64Test {

  @Test
  void matchesThePublishedSequenceForSeedZero() {
    // First outputs of the reference splitmix64.c with x = 0.
    SplitMix64 rng = new SplitMix64(0);
    assertEquals(0xE220A8397B1DCDAFL, rng.nextLong());
    assertEquals(0x6E789E6AA1B965F4L, rng.nextLong());
    assertEquals(0x06C45D188009454FL, rng.nextLong());
  }

  @Test
  void restoringAStateRepeatsTheContinuation() {
    SplitMix64 rng = new SplitMix64(12345);
    for (int i = 0; i < 5; i++) {
      rng.nextInt(7);
    }
    long saved = rng.state();
    long[] first = new long[10];
    for (int i = 0; i < first.length; i++) {
      first[i] = rng.nextLong();
    }
    SplitMix64 resumed = new SplitMix64(saved);
    SplitMix64 restored = new SplitMix64(99);
    restored.restore(saved);
    for (long expected : first) {
      assertEquals(expected, resumed.nextLong());
      assertEquals(expected, restored.nextLong());
    }
  }

  @Test
  void nextIntIsInRangeAndUniform() {
    SplitMix64 rng = new SplitMix64(7);
    int[] counts = new int[10];
    int draws = 200_000;
    for (int i = 0; i < draws; i++) {
      counts[rng.nextInt(10)]++;
    }
    // Binomial sd is about 134 for 20,000 expected; 5 sd is 670.
    for (int c : counts) {
      assertTrue(Math.abs(c - draws / 10) < 700, "count " + c);
    }
    for (int i = 0; i < 10_000; i++) {
      int v = rng.nextInt(3, 5);
      assertTrue(v >= 3 && v <= 5, "value " + v);
      int big = rng.nextInt(Integer.MAX_VALUE);
      assertTrue(big >= 0, "value " + big);
      double d = rng.nextDouble();
      assertTrue(d >= 0 && d < 1, "value " + d);
    }
    assertEquals(0, rng.nextInt(1));
  }

  @Test
  void rejectsEmptyRanges() {
    SplitMix64 rng = new SplitMix64(1);
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> rng.nextInt(0));
    assertTrue(e.getMessage().contains("bound"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> rng.nextInt(5, 4));
    assertThrows(IllegalArgumentException.class, () -> rng.nextInt(Integer.MIN_VALUE, Integer.MAX_VALUE));
  }
}
