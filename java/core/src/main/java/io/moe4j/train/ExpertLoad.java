package io.moe4j.train;

/**
 * What one MoE layer's router did in a training step (summed over its micro-batches).
 *
 * @param expertTokens assignments each expert received, after capacity dropping
 * @param droppedFraction mean over micro-batches of the fraction of assignments dropped
 */
public record ExpertLoad(int layer, long[] expertTokens, double droppedFraction) {

  public ExpertLoad {
    expertTokens = expertTokens.clone();
  }

  @Override
  public long[] expertTokens() {
    return expertTokens.clone();
  }
}
