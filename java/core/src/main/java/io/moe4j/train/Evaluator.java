package io.moe4j.train;

import io.moe4j.nn.MoeTransformer;

/** Measures a model on held-out data during and after training. */
@FunctionalInterface
public interface Evaluator {

  /** Evaluates {@code model} as it is after {@code step} steps; must not change its parameters. */
  EvalResult evaluate(MoeTransformer model, long step);
}
