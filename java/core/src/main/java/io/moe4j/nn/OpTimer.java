package io.moe4j.nn;

import io.moe4j.ops.Backend;

/**
 * Accumulates wall time per op family when enabled. Enabling it synchronizes the backend around each
 * timed region (GPU work is asynchronous), which costs speed: it is for `moe4j bench train`, off in
 * training.
 */
final class OpTimer {

  enum Family { ATTENTION, ROUTING, EXPERT_GEMM, TOTAL }

  private final Backend backend;
  private final long[] ns = new long[Family.values().length];
  private boolean enabled;

  OpTimer(Backend backend) {
    this.backend = backend;
  }

  void setEnabled(boolean on) {
    enabled = on;
    java.util.Arrays.fill(ns, 0);
  }

  long start() {
    if (!enabled) return 0;
    backend.synchronize();
    return System.nanoTime();
  }

  void stop(Family family, long startNs) {
    if (!enabled) return;
    backend.synchronize();
    ns[family.ordinal()] += System.nanoTime() - startNs;
  }

  OpTimes times() {
    long attention = ns[Family.ATTENTION.ordinal()];
    long routing = ns[Family.ROUTING.ordinal()];
    long experts = ns[Family.EXPERT_GEMM.ordinal()];
    long other = Math.max(0, ns[Family.TOTAL.ordinal()] - attention - routing - experts);
    return new OpTimes(attention, routing, experts, other);
  }
}
