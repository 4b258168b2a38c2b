package io.moe4j.train.data;

/**
 * Steele, Lea and Flood's SplitMix64 generator with its whole state in one {@code long}, so a data
 * position is saved and restored exactly by {@link #state()} and {@link #SplitMix64(long)}. Not
 * thread-safe: each data stream owns one.
 */
public final class SplitMix64 {

  private static final long GOLDEN_GAMMA = 0x9E3779B97F4A7C15L;

  private long state;

  /** A generator whose state is {@code state}: a seed, or a value saved from {@link #state()}. */
  public SplitMix64(long state) {
    this.state = state;
  }

  /** The whole state; {@code new SplitMix64(state())} continues with the same numbers. */
  public long state() {
    return state;
  }

  /** Continues from a state saved with {@link #state()}. */
  public void restore(long state) {
    this.state = state;
  }

  public long nextLong() {
    state += GOLDEN_GAMMA;
    return mix(state);
  }

  /** Uniform in {@code [0, bound)}, without modulo bias. */
  public int nextInt(int bound) {
    if (bound <= 0) {
      throw new IllegalArgumentException("bound must be > 0, got " + bound);
    }
    // Rejecting the top partial block of 2^31 keeps every residue equally likely.
    int limit = Integer.MAX_VALUE - (int) ((Integer.MAX_VALUE + 1L) % bound);
    while (true) {
      int candidate = (int) (nextLong() >>> 33);
      if (candidate <= limit) {
        return candidate % bound;
      }
    }
  }

  /** Uniform in {@code [lo, hi]} (both inclusive). */
  public int nextInt(int lo, int hi) {
    if (hi < lo || (long) hi - lo + 1 > Integer.MAX_VALUE) {
      throw new IllegalArgumentException(
          "need lo <= hi with hi - lo < 2^31 - 1, got lo=" + lo + ", hi=" + hi);
    }
    return lo + nextInt(hi - lo + 1);
  }

  /** Uniform in {@code [0, 1)} with 53 random bits. */
  public double nextDouble() {
    return (nextLong() >>> 11) * 0x1.0p-53;
  }

  /** The SplitMix64 output finalizer; also a good stand-alone 64-bit hash mixer. */
  public static long mix(long z) {
    z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
    z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
    return z ^ (z >>> 31);
  }
}
