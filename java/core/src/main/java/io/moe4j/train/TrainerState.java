package io.moe4j.train;

import java.util.List;

/**
 * The trainer's own part of a checkpoint (trainer_state.json): enough, with the model weights and
 * optimizer moments, to continue bit-exactly.
 *
 * @param step optimizer steps run (skipped ones included): the next step's schedule index
 * @param optimizerSteps steps actually applied (AdamW's bias-correction count)
 * @param skippedSteps steps skipped for a non-finite loss or gradient norm
 * @param seed the run's seed (model init; grown experts derive theirs from it and the step)
 * @param dataPosition the training data stream's position after the last drawn batch
 * @param numExperts experts per MoE layer when saved
 * @param frozenExperts experts frozen by --freeze-old (0 = none)
 * @param mixedPrecision whether the run computes with BF16 copies of the matrices (F32 master)
 * @param tasks the synthetic tasks the run trains on (empty for text data)
 */
public record TrainerState(
    long step,
    long optimizerSteps,
    long skippedSteps,
    long seed,
    long dataPosition,
    int batchSize,
    int seqLen,
    int gradAccumulation,
    int numExperts,
    int frozenExperts,
    LrSchedule schedule,
    float beta1,
    float beta2,
    float eps,
    float weightDecay,
    float maxGradNorm,
    boolean mixedPrecision,
    List<String> tasks) {

  public TrainerState {
    if (step < 0) throw new IllegalArgumentException("trainer_state.json: step must be >= 0, got " + step);
    if (optimizerSteps < 0 || optimizerSteps > step)
      throw new IllegalArgumentException("trainer_state.json: optimizer_steps must be in [0, step=" + step + "], got " + optimizerSteps);
    if (skippedSteps < 0) throw new IllegalArgumentException("trainer_state.json: skipped_steps must be >= 0, got " + skippedSteps);
    if (schedule == null) throw new IllegalArgumentException("trainer_state.json: schedule is missing");
    tasks = tasks == null ? List.of() : List.copyOf(tasks);
  }
}
