package io.moe4j.infer;

/**
 * How the next token is chosen. temperature 0 = greedy (argmax, ties to the lower id); otherwise
 * softmax(logits / temperature) restricted to the topK most likely tokens (0 = all) and to the
 * smallest set whose probability reaches topP (1 = all). repetitionPenalty (1 = off) divides the
 * positive logits and multiplies the negative logits of every token already in the sequence (the
 * CTRL / Hugging Face rule). seed makes sampling reproducible.
 */
public record SamplingOptions(float temperature, int topK, float topP, float repetitionPenalty, long seed) {

  public SamplingOptions {
    if (!(temperature >= 0) || !Float.isFinite(temperature))
      throw new IllegalArgumentException("temperature must be finite and >= 0, got " + temperature);
    if (topK < 0) throw new IllegalArgumentException("top-k must be >= 0 (0 = off), got " + topK);
    if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("top-p must be in (0, 1], got " + topP);
    if (!(repetitionPenalty > 0) || !Float.isFinite(repetitionPenalty))
      throw new IllegalArgumentException("repetition penalty must be finite and > 0, got " + repetitionPenalty);
  }

  public static SamplingOptions greedy() {
    return new SamplingOptions(0f, 0, 1f, 1f, 0);
  }

  public boolean isGreedy() {
    return temperature == 0f;
  }
}
