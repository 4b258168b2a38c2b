package io.moe4j.infer;

/**
 * Likelihood of a text: its token ids (with the leading specials the model expects), the negative
 * log-likelihood of each token after the first given the ones before it, and the perplexity
 * exp(mean nll).
 */
public record ScoreResult(int[] tokens, float[] nll, double perplexity) {}
