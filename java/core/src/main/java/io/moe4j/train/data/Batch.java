package io.moe4j.train.data;

/**
 * One training batch, row-major {@code [batchSize, seqLen]}: {@code targets[i]} is the token that
 * should follow {@code tokens[i]}, or {@link #IGNORE_INDEX} where no loss is taken (prompts,
 * padding). {@code taskIds[b]} is the {@link SyntheticTask#id()} of row b, or {@link #NO_TASK}.
 */
public record Batch(int[] tokens, int[] targets, int[] taskIds, int batchSize, int seqLen) {

  /** Target value that the loss skips (the value PyTorch's cross-entropy uses). */
  public static final int IGNORE_INDEX = -100;

  /** Task id of rows that come from plain text. */
  public static final int NO_TASK = -1;

  public Batch {
    if (batchSize < 0 || seqLen <= 0) {
      throw new IllegalArgumentException(
          "need batchSize >= 0 and seqLen > 0, got batchSize=" + batchSize + ", seqLen=" + seqLen);
    }
    long cells = (long) batchSize * seqLen;
    if (tokens == null || tokens.length != cells) {
      throw new IllegalArgumentException("tokens must have batchSize*seqLen = " + cells
          + " entries, got " + (tokens == null ? "null" : tokens.length));
    }
    if (targets == null || targets.length != cells) {
      throw new IllegalArgumentException("targets must have batchSize*seqLen = " + cells
          + " entries, got " + (targets == null ? "null" : targets.length));
    }
    if (taskIds == null || taskIds.length != batchSize) {
      throw new IllegalArgumentException("taskIds must have batchSize = " + batchSize
          + " entries, got " + (taskIds == null ? "null" : taskIds.length));
    }
  }

  /** Number of positions that carry a loss (targets other than {@link #IGNORE_INDEX}). */
  public int targetCount() {
    int count = 0;
    for (int target : targets) {
      if (target != IGNORE_INDEX) {
        count++;
      }
    }
    return count;
  }
}
