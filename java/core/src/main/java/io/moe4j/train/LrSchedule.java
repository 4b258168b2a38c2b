package io.moe4j.train;

/**
 * Learning rate per optimizer step: linear warmup from {@code peak / warmupSteps} to {@code peak}
 * over the first {@code warmupSteps} steps, then a decay to {@code min} at {@code totalSteps}
 * (cosine, linear, or none), and {@code min} after that.
 *
 * @param peak the learning rate reached at the end of warmup
 * @param min the floor the decay ends at (0 ≤ min ≤ peak)
 * @param warmupSteps steps of linear warmup (0 = start at peak)
 * @param totalSteps the step at which the decay reaches min (≥ warmupSteps)
 */
public record LrSchedule(float peak, float min, long warmupSteps, long totalSteps, Decay decay) {

  public enum Decay { COSINE, LINEAR, CONSTANT }

  public LrSchedule {
    if (!(peak >= 0) || !Float.isFinite(peak)) throw new IllegalArgumentException("peak lr must be finite and >= 0, got " + peak);
    if (!(min >= 0) || min > peak) throw new IllegalArgumentException("min lr must be in [0, peak=" + peak + "], got " + min);
    if (warmupSteps < 0) throw new IllegalArgumentException("warmupSteps must be >= 0, got " + warmupSteps);
    if (totalSteps < warmupSteps)
      throw new IllegalArgumentException("totalSteps must be >= warmupSteps=" + warmupSteps + ", got " + totalSteps);
    if (decay == null) throw new IllegalArgumentException("decay must not be null");
  }

  /** Warmup over {@code warmupSteps}, then cosine decay to {@code peak / 10} at {@code totalSteps}. */
  public static LrSchedule cosine(float peak, long warmupSteps, long totalSteps) {
    return new LrSchedule(peak, peak / 10, warmupSteps, totalSteps, Decay.COSINE);
  }

  /** The same rate for every step. */
  public static LrSchedule constant(float lr) {
    return new LrSchedule(lr, lr, 0, 0, Decay.CONSTANT);
  }

  /** The rate for step {@code step} (0-based: the first optimizer step is step 0). */
  public float lr(long step) {
    if (step < 0) throw new IllegalArgumentException("step must be >= 0, got " + step);
    if (step < warmupSteps) return (float) ((double) peak * (step + 1) / warmupSteps);
    if (decay == Decay.CONSTANT) return peak;
    if (step >= totalSteps) return min;
    // Double precision so that the schedule does not depend on float rounding of the progress.
    double progress = (double) (step - warmupSteps) / (double) (totalSteps - warmupSteps);
    double shape = decay == Decay.COSINE ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress;
    return (float) (min + (peak - (double) min) * shape);
  }
}
