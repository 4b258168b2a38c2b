package io.moe4j.train;

import java.util.List;

/**
 * What one optimizer step did, for callbacks (progress bars, metrics.jsonl, plots).
 *
 * @param step 1-based index of the step just finished
 * @param loss mean cross-entropy over the step's targets (mean over micro-batches)
 * @param auxLoss load-balancing loss, coefficient applied, summed over layers
 * @param zLoss router z-loss, coefficient applied, summed over layers
 * @param gradNorm global gradient L2 norm before clipping (NaN when the loss already was not finite)
 * @param skipped whether the update was skipped because the loss or gradient norm was not finite
 * @param skippedTotal steps skipped so far in this run (checkpoints carry it over)
 * @param tokensPerSecond tokens processed (padding included) per second of this step
 * @param mfu model FLOPs utilization: achieved training FLOP/s over the peak the trainer was given
 *     (NaN without a peak)
 * @param expertLoad per MoE layer
 * @param taskExpertTokens [task id][expert] assignments summed over layers, for synthetic data
 *     (null for plain text)
 */
public record StepMetrics(
    long step,
    float loss,
    float auxLoss,
    float zLoss,
    float lr,
    float gradNorm,
    boolean skipped,
    long skippedTotal,
    long tokens,
    double seconds,
    double tokensPerSecond,
    double mfu,
    List<ExpertLoad> expertLoad,
    long[][] taskExpertTokens) {

  public StepMetrics {
    expertLoad = List.copyOf(expertLoad);
  }
}
