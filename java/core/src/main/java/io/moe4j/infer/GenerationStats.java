package io.moe4j.infer;

/**
 * Timing of one generate call: prompt tokens (all sequences), the prefill time (= time to first
 * token), generated tokens and the decode time after the first token.
 */
public record GenerationStats(long promptTokens, double prefillSeconds, long generatedTokens, double decodeSeconds,
    int batch) {

  public double prefillTokensPerSecond() {
    return prefillSeconds > 0 ? promptTokens / prefillSeconds : 0;
  }

  /** Generated tokens per second over the decode loop (all sequences together). */
  public double decodeTokensPerSecond() {
    return decodeSeconds > 0 ? generatedTokens / decodeSeconds : 0;
  }
}
