package io.moe4j.nn;

/** Time spent per op family since profiling was enabled (forward and backward together). */
public record OpTimes(long attentionNs, long routingNs, long expertGemmNs, long otherNs) {

  public long totalNs() {
    return attentionNs + routingNs + expertGemmNs + otherNs;
  }
}
