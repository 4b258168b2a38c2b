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
 * Lifelong MoE on the synthetic tasks: the demo model learns COPY, is checkpointed, resumed with two
 * new experts per layer and everything old frozen (attention, embeddings, norms, old experts, old
 * router rows), and trained on SHIFT (copy's attention with a new per-letter map) with COPY examples
 * mixed in (rehearsal: the new experts and router rows also see the old task, so they learn not to
 * disturb it). The numbers in the assertions are the measured ones with a margin (see the comments).
 *
 * <p>Measured (CPU, this test, the demo model: 4 layers, d = 128, 8 experts grown to 10): COPY exact
 * match 1.000 after phase 1 (600 steps) and 1.000 after growing (900 more steps); SHIFT 0.000 →
 * 0.958 (measured 2026-12-08, embedding without weight decay). Without the COPY examples in phase 2 (the same experiment through the CLI, docs/BENCHMARKS.md
 * "Lifelong MoE") the new router rows take the old tasks' tokens and the old tasks fall to 0–5%.
 */
class GrowthTest {

  static final int PHASE1 = 600, PHASE2 = 900;

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

  static double accuracy(MoeTransformer model, List<Example> heldOut) {
    return new ExactMatchEvaluator(TOKENIZER, heldOut).evaluate(model, 0).value();
  }

  @Test
  void grownModelLearnsTheNewTaskAndKeepsTheOldOne(@TempDir Path tmp) {
    Set<SyntheticTask> oldTask = EnumSet.of(SyntheticTask.COPY), newTask = EnumSet.of(SyntheticTask.SHIFT);
    Set<SyntheticTask> both = EnumSet.of(SyntheticTask.COPY, SyntheticTask.SHIFT);
    int seqLen = SyntheticTasks.requiredSeqLen(both);
    List<Example> oldHeldOut = new SyntheticTasks(TOKENIZER, oldTask, seqLen, 0).heldOut(120, 3);
    List<Example> newHeldOut = new SyntheticTasks(TOKENIZER, newTask, seqLen, 0).heldOut(120, 3);
    Path ckpt = tmp.resolve("ckpt");
    double oldBefore, newBefore;
    Map<String, float[]> frozenBefore = new HashMap<>();
    try (Trainer t = Trainer.builder(cpu).model(ModelConfig.demo()).data(TrainingData.synthetic(new SyntheticTasks(TOKENIZER, oldTask, seqLen, 1)))
        .steps(PHASE1).batchSize(32).schedule(new LrSchedule(3e-3f, 3e-4f, 20, PHASE1, LrSchedule.Decay.COSINE)).seed(1)
        .checkpoints(ckpt, 0).build()) {
      t.run();
      oldBefore = accuracy(t.model(), oldHeldOut);
      newBefore = accuracy(t.model(), newHeldOut);
      for (Parameter p : t.model().parameters()) frozenBefore.put(p.name(), cpu.toFloats(p.value()));
    }
    // measured: COPY 1.000, SHIFT 0.000 (never trained) after 600 steps
    assertTrue(oldBefore >= 0.9, "the old task is learned first: " + oldBefore);
    assertTrue(newBefore <= 0.05, "the new task is new: " + newBefore);

    double oldAfter, newAfter;
    long[][] taskExpert = new long[SyntheticTask.values().length][10]; // last 100 steps, summed over layers
    try (Trainer t = Trainer.builder(cpu).data(TrainingData.synthetic(new SyntheticTasks(TOKENIZER, both, seqLen, 2)))
        .steps(PHASE1 + PHASE2).batchSize(32)
        .schedule(new LrSchedule(3e-3f, 3e-4f, PHASE1 + 20, PHASE1 + PHASE2, LrSchedule.Decay.COSINE))
        .resume(ckpt).grow(2, true).callback(m -> {
          if (m.step() > PHASE1 + PHASE2 - 100 && m.taskExpertTokens() != null) {
            for (int task = 0; task < taskExpert.length; task++)
              for (int e = 0; e < taskExpert[task].length; e++) taskExpert[task][e] += m.taskExpertTokens()[task][e];
          }
        }).build()) {
      assertEquals(10, t.model().config().numExperts());
      t.run();
      oldAfter = accuracy(t.model(), oldHeldOut);
      newAfter = accuracy(t.model(), newHeldOut);
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
    double oldToNew = newExpertShare(taskExpert[SyntheticTask.COPY.id()]);
    double newToNew = newExpertShare(taskExpert[SyntheticTask.SHIFT.id()]);
    System.out.printf("growth phase 2: COPY %.3f -> %.3f, SHIFT %.3f -> %.3f; share of assignments to the new experts:"
        + " COPY %.3f, SHIFT %.3f%n", oldBefore, oldAfter, newBefore, newAfter, oldToNew, newToNew);
    // measured: COPY 1.000 -> 1.000, SHIFT 0.000 -> 0.958 (120 held-out prompts each: one prompt is 0.008)
    assertTrue(oldAfter >= oldBefore - 0.05, "old task kept: " + oldBefore + " -> " + oldAfter);
    assertTrue(newAfter >= 0.8, "new task learned by the new experts alone: " + newAfter);
    // measured: 0.185 and 0.273 — the new experts serve both tasks (they train on both), so the
    // rehearsal examples, not a task split in the router, are what keeps COPY intact
    assertTrue(oldToNew > 0 && newToNew > 0, "the grown experts are used: " + oldToNew + ", " + newToNew);
  }

  /** Fraction of a task's (token, slot) assignments that went to the grown experts 8 and 9. */
  static double newExpertShare(long[] perExpert) {
    long all = 0, grown = 0;
    for (int e = 0; e < perExpert.length; e++) {
      all += perExpert[e];
      if (e >= 8) grown += perExpert[e];
    }
    return all == 0 ? 0 : (double) grown / all;
  }
}
