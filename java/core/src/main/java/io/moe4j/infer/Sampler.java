package io.moe4j.infer;

import java.util.Arrays;
import java.util.SplittableRandom;

/** Picks next tokens from logits rows; one random stream per sequence, derived from the seed. */
public final class Sampler {

  private final SamplingOptions options;
  private final SplittableRandom[] streams;

  public Sampler(SamplingOptions options, int sequences) {
    this.options = options;
    this.streams = new SplittableRandom[sequences];
    SplittableRandom root = new SplittableRandom(options.seed());
    for (int b = 0; b < sequences; b++) streams[b] = root.split();
  }

  /**
   * The next token of sequence {@code b} from logits[offset .. offset + vocab); {@code history}
   * (tokens so far, for the repetition penalty) may be null.
   */
  public int next(int b, float[] logits, int offset, int vocab, int[] history, int historyLength) {
    float[] row = Arrays.copyOfRange(logits, offset, offset + vocab);
    if (options.repetitionPenalty() != 1f && history != null) {
      boolean[] seen = new boolean[vocab];
      for (int i = 0; i < historyLength; i++) if (history[i] >= 0 && history[i] < vocab) seen[history[i]] = true;
      for (int t = 0; t < vocab; t++)
        if (seen[t]) row[t] = row[t] > 0 ? row[t] / options.repetitionPenalty() : row[t] * options.repetitionPenalty();
    }
    if (options.isGreedy()) return argmax(row);
    Integer[] order = new Integer[vocab];
    for (int t = 0; t < vocab; t++) order[t] = t;
    Arrays.sort(order, (a, c) -> row[a] != row[c] ? Float.compare(row[c], row[a]) : Integer.compare(a, c));
    int keep = options.topK() > 0 ? Math.min(options.topK(), vocab) : vocab;
    double max = row[order[0]];
    double[] weights = new double[keep];
    double total = 0;
    for (int i = 0; i < keep; i++) {
      weights[i] = Math.exp((row[order[i]] - max) / options.temperature());
      total += weights[i];
    }
    if (options.topP() < 1f) {
      double cumulative = 0;
      for (int i = 0; i < keep; i++) {
        cumulative += weights[i] / total;
        if (cumulative >= options.topP()) {
          keep = i + 1;
          break;
        }
      }
      total = 0;
      for (int i = 0; i < keep; i++) total += weights[i];
    }
    double u = streams[b].nextDouble() * total;
    for (int i = 0; i < keep; i++) {
      u -= weights[i];
      if (u < 0) return order[i];
    }
    return order[keep - 1];
  }

  static int argmax(float[] row) {
    int best = 0;
    for (int t = 1; t < row.length; t++) if (row[t] > row[best]) best = t;
    return best;
  }
}
