package io.moe4j.cli.bench;

import java.util.Map;

/**
 * One benchmark case: the measured method (our kernel) with its timing and throughput, each
 * baseline measured in the same run, and our speed relative to each baseline (baseline time / our
 * time: above 1 means we are faster). {@code unit} is "GFLOP/s" or "GB/s"; {@code fractionOfPeak}
 * is the throughput over the peak named in {@code peak}.
 */
public record BenchResult(
    String suite,
    String caseName,
    String device,
    String shape,
    Timing.Stats timing,
    double throughput,
    String unit,
    double fractionOfPeak,
    String peak,
    Map<String, Baseline> baselines,
    Map<String, Double> ratios) {

  /** A baseline's timing and throughput. */
  public record Baseline(Timing.Stats timing, double throughput) {}
}
