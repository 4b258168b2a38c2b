package io.moe4j.train;

import java.util.Map;

/**
 * One evaluation: {@code metric} is "exact_match" (fraction of held-out prompts answered exactly,
 * higher is better; {@code perTask} per synthetic task) or "val_loss" (mean cross-entropy per
 * validation target, lower is better; {@code perTask} empty).
 */
public record EvalResult(long step, String metric, double value, Map<String, Double> perTask) {

  public EvalResult {
    perTask = Map.copyOf(perTask);
  }
}
