package io.moe4j.ops;

import io.moe4j.tensor.Tensor;

/**
 * Load metrics of one routed step, read on demand (they need the counts and offsets on the host):
 * assignments requested (T·k), kept and dropped, the dropped fraction, and the max and mean
 * per-expert load before dropping (max / mean = the imbalance capacity has to absorb).
 */
public record RoutingMetrics(
    long assignments, long kept, long dropped, double droppedFraction, long maxLoad, double meanLoad) {

  /**
   * From route_plan's counts I64 [E] (assignments per expert before dropping) and offsets I64 [E + 1]
   * (offsets[E] = kept rows).
   */
  public static RoutingMetrics of(long[] counts, long[] offsets) {
    if (offsets.length != counts.length + 1)
      throw new IllegalArgumentException(
          "offsets must have counts.length + 1 = " + (counts.length + 1) + " entries, got " + offsets.length);
    long total = 0, max = 0;
    for (long c : counts) {
      total += c;
      max = Math.max(max, c);
    }
    long kept = offsets[counts.length];
    return new RoutingMetrics(total, kept, total - kept, total == 0 ? 0 : (double) (total - kept) / total, max,
        counts.length == 0 ? 0 : (double) total / counts.length);
  }

  /** Reads counts and offsets from the backend (a device-to-host copy: not every step). */
  public static RoutingMetrics read(Backend backend, Tensor counts, Tensor offsets) {
    return of(backend.toLongs(counts), backend.toLongs(offsets));
  }
}
