package io.moe4j.cli.bench;

import java.util.Arrays;

/**
 * Wall-clock timing of a body after warm-up: median and spread over repetitions. The body must
 * finish its device work before returning (call {@code backend.synchronize()}).
 */
public final class Timing {

  /** Milliseconds: median, min and max over {@code repetitions}. */
  public record Stats(double medianMs, double minMs, double maxMs, int repetitions) {}

  private Timing() {}

  /**
   * Runs {@code body} until {@code warmupMs} elapsed (at least once), then repeats it until
   * {@code minReps} runs and {@code minMs} total time are reached (at most {@code maxReps}).
   */
  public static Stats measure(Runnable body, double warmupMs, int minReps, int maxReps, double minMs) {
    long warmupEnd = System.nanoTime() + (long) (warmupMs * 1e6);
    do {
      body.run();
    } while (System.nanoTime() < warmupEnd);
    double[] samples = new double[maxReps];
    int n = 0;
    double total = 0;
    while (n < maxReps && (n < minReps || total < minMs)) {
      long t0 = System.nanoTime();
      body.run();
      double ms = (System.nanoTime() - t0) / 1e6;
      samples[n++] = ms;
      total += ms;
    }
    double[] s = Arrays.copyOf(samples, n);
    Arrays.sort(s);
    double median = n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    return new Stats(median, s[0], s[n - 1], n);
  }
}
