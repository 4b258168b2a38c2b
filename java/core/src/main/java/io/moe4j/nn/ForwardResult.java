package io.moe4j.nn;

import java.util.List;

/**
 * One forward pass: mean cross-entropy over the non-ignored targets (NaN without targets), the
 * router losses summed over layers (already multiplied by their coefficients), the number of
 * targets counted, and per MoE layer what the router did.
 */
public record ForwardResult(float loss, float auxLoss, float zLoss, long targetTokens, List<LayerRouting> routing) {

  /** The objective backward differentiates. */
  public float totalLoss() {
    return loss + auxLoss + zLoss;
  }
}
