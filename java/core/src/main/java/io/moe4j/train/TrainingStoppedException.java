package io.moe4j.train;

/** Training stopped early: too many consecutive steps had a non-finite loss or gradient norm. */
public final class TrainingStoppedException extends RuntimeException {

  private final long step;

  public TrainingStoppedException(long step, String message) {
    super(message);
    this.step = step;
  }

  /** The last step that ran (1-based). */
  public long step() {
    return step;
  }
}
