package io.moe4j.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.nn.ModelConfig;
import io.moe4j.nn.MoeTransformer;
import io.moe4j.nn.Parameter;
import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import io.moe4j.text.ByteTokenizer;
import io.moe4j.train.data.Example;
import io.moe4j.train.data.SyntheticTask;
import io.moe4j.train.data.SyntheticTasks;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Lifelong MoE on the synthetic tasks: a tiny model learns SORT, is checkpointed, resumed with two
 * new experts per layer and everything old frozen, and trained on COPY (with SORT examples mixed
 * in, so that the new router rows learn to leave SORT tokens to the old experts). The numbers in
 * the assertions are the measured ones with a margin (see the comments).
 *
 * <p>Measured (CPU, this test; SORT on 120 held-out prompts, so one prompt is 0.8%): SORT exact match
 * 0.900 after phase 1 and 0.875 after growing; COPY held-out loss 6.37 → 2.07, but COPY exact match
 * stays near 0 (0.025) in 300 steps: with attention,
 * embeddings and norms frozen, new experts alone lower the loss without learning to copy exactly.
 * Without the SORT examples in phase 2 (a separate run, not in this test) SORT fell from 0.90 to
 * 0.05: the new router rows, trained only on COPY, take SORT tokens from the frozen experts.
 */
class GrowthTest {

  static Backend cpu;
  static final ByteTokenizer TOKENIZER = new ByteTokenizer();

  @BeforeAll
  static void open() {
    cpu = Backends.cpu();
  }

  @AfterAll
  static void close() {
    assertEquals(0, cpu.memoryStats().liveBytes());
    cpu.close();
  }

  static ModelConfig small() {
    return new ModelConfig(ModelConfig.Architecture.MIXTRAL, ByteTokenizer.VOCAB_SIZE, 64, 2, 4, 2, 16, 0, 128, 4, 2, true, 1,
        List.of(), ModelConfig.QkNorm.NONE, 1e-5f, 10000f, 64, false, 0.01f, 0.001f, ModelConfig.Routing.TOKEN_CHOICE, 0f, 0, 0,
        ByteTokenizer.BOS_ID, ByteTokenizer.EOS_ID, 0.02f);
  }

  static double accuracy(MoeTransformer model, List<Example> heldOut) {
    return new ExactMatchEvaluator(TOKENIZER, heldOut).evaluate(model, 0).value();
  }

  static double loss(MoeTransformer model, Set<SyntheticTask> tasks, int seqLen) {
    return new ValidationLossEvaluator(List.of(new SyntheticTasks(TOKENIZER, tasks, seqLen, 77).nextBatch(64)))
        .evaluate(model, 0).value();
  }

  @Test
  void grownModelLearnsTheNewTaskAndKeepsTheOldOne(@TempDir Path tmp) {
    Set<SyntheticTask> oldTask = EnumSet.of(SyntheticTask.SORT), newTask = EnumSet.of(SyntheticTask.COPY);
    Set<SyntheticTask> both = EnumSet.of(SyntheticTask.SORT, SyntheticTask.COPY);
    int seqLen = SyntheticTasks.requiredSeqLen(both);
    List<Example> oldHeldOut = new SyntheticTasks(TOKENIZER, oldTask, seqLen, 0).heldOut(120, 3);
    List<Example> newHeldOut = new SyntheticTasks(TOKENIZER, newTask, seqLen, 0).heldOut(40, 3);
    Path ckpt = tmp.resolve("ckpt");
    double oldBefore, newLossBefore;
    Map<String, float[]> frozenBefore = new HashMap<>();
    try (Trainer t = Trainer.builder(cpu).model(small()).data(TrainingData.synthetic(new SyntheticTasks(TOKENIZER, oldTask, seqLen, 1)))
        .steps(600).batchSize(16).schedule(new LrSchedule(3e-3f, 3e-4f, 20, 600, LrSchedule.Decay.COSINE)).seed(1)
        .checkpoints(ckpt, 0).build()) {
      t.run();
      oldBefore = accuracy(t.model(), oldHeldOut);
      newLossBefore = loss(t.model(), newTask, seqLen);
      for (Parameter p : t.model().parameters()) frozenBefore.put(p.name(), cpu.toFloats(p.value()));
    }
    // measured: SORT 0.90 after 600 steps (120 held-out prompts)
    assertTrue(oldBefore >= 0.8, "the old task is learned first: " + oldBefore);

    double oldAfter, newLossAfter, newAccuracy;
    try (Trainer t = Trainer.builder(cpu).data(TrainingData.synthetic(new SyntheticTasks(TOKENIZER, both, seqLen, 2)))
        .steps(900).batchSize(16).schedule(new LrSchedule(3e-3f, 3e-4f, 620, 900, LrSchedule.Decay.COSINE))
        .resume(ckpt).grow(2, true).build()) {
      assertEquals(6, t.model().config().numExperts());
      t.run();
      oldAfter = accuracy(t.model(), oldHeldOut);
      newLossAfter = loss(t.model(), newTask, seqLen);
      newAccuracy = accuracy(t.model(), newHeldOut);
      for (Parameter p : t.model().parameters()) {
        float[] before = frozenBefore.get(p.name());
        float[] now = cpu.toFloats(p.value());
        // Frozen: everything but the appended experts and router rows, which form each stacked
        // tensor's tail (from trainableFrom on).
        assertArrayEquals(before, java.util.Arrays.copyOf(now, before.length), 0f, p.name() + " old part is unchanged");
        if (p.trainableFrom() < p.numel())
          assertEquals(before.length, p.trainableFrom(), p.name() + ": only the new tail trains");
      }
    }
    // measured: SORT 0.900 -> 0.875, COPY loss 6.37 -> 2.07 (see the class comment); the 0.1 margin is
    // 12 of 120 prompts: earlier runs on 40 prompts moved by up to 0.1 with f32 rounding changes alone
    assertTrue(oldAfter >= oldBefore - 0.1, "old task kept: " + oldBefore + " -> " + oldAfter);
    assertTrue(newLossAfter < 0.5 * newLossBefore, "new task learned: loss " + newLossBefore + " -> " + newLossAfter);
    System.out.printf("growth: SORT %.3f -> %.3f, COPY loss %.3f -> %.3f, COPY exact match %.3f%n", oldBefore, oldAfter,
        newLossBefore, newLossAfter, newAccuracy);
  }
}
