package io.moe4j.train;

import java.nio.file.Path;

/** Receives the trainer's progress; every method runs on the training thread, between steps. */
public interface TrainingCallback {

  void onStep(StepMetrics metrics);

  default void onEval(EvalResult result) {}

  default void onCheckpoint(long step, Path directory) {}
}
