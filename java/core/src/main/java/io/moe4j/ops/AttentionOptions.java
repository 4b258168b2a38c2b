package io.moe4j.ops;

/**
 * Attention masking and scaling: causal (query i sees keys j <= i), a sliding window (window > 0:
 * also j > i - window; window <= 0: none) and the score scale (usually 1/sqrt(headDim)).
 */
public record AttentionOptions(boolean causal, long window, float scale) {

  public AttentionOptions {
    if (!(scale > 0) || !Float.isFinite(scale))
      throw new IllegalArgumentException("scale must be finite and > 0, got " + scale);
  }

  /** Causal, no window, scale 1/sqrt(headDim): decoder self-attention. */
  public static AttentionOptions causal(long headDim) {
    if (headDim <= 0) throw new IllegalArgumentException("headDim must be > 0, got " + headDim);
    return new AttentionOptions(true, 0, (float) (1.0 / Math.sqrt(headDim)));
  }
}
