package io.moe4j.infer;

import io.moe4j.nn.MoeTransformer;
import java.util.function.Function;

/** Scores texts with one forward pass each (nothing generated). */
public final class Scorer {

  private final MoeTransformer model;
  private final Function<String, int[]> encoder;

  public Scorer(MoeTransformer model, Function<String, int[]> encoder) {
    this.model = model;
    this.encoder = encoder;
  }

  public ScoreResult score(String text) {
    return scoreIds(encoder.apply(text));
  }

  public ScoreResult scoreIds(int[] ids) {
    if (ids.length < 2)
      throw new IllegalArgumentException("scoring needs at least 2 tokens (one to predict from, one to predict), got "
          + ids.length);
    int n = ids.length - 1;
    int[] inputs = java.util.Arrays.copyOf(ids, n);
    int[] targets = java.util.Arrays.copyOfRange(ids, 1, ids.length);
    float[] nll = model.tokenLosses(inputs, targets, 1, n);
    double sum = 0;
    for (float v : nll) sum += v;
    return new ScoreResult(ids.clone(), nll, Math.exp(sum / n));
  }
}
