package io.moe4j.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.nn.ModelConfig;
import io.moe4j.nn.Parameter;
import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import io.moe4j.text.ByteTokenizer;
import io.moe4j.train.data.SyntheticTask;
import io.moe4j.train.data.SyntheticTasks;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The training loop on a tiny MoE: determinism, metrics, the NaN policy, argument checks. */
class TrainerTest {

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

  /** 2 layers, d = 32, 4 experts of width 64, top-2: a few milliseconds a step. */
  static ModelConfig tiny(int experts) {
    return new ModelConfig(ModelConfig.Architecture.MIXTRAL, ByteTokenizer.VOCAB_SIZE, 32, 2, 2, 1, 16, 0, 64, experts, 2,
        true, 1, List.of(), ModelConfig.QkNorm.NONE, 1e-5f, 10000f, 64, false, 0.01f, 0.001f,
        ModelConfig.Routing.TOKEN_CHOICE, 0f, 0, 0, ByteTokenizer.BOS_ID, ByteTokenizer.EOS_ID, 0.02f);
  }

  static SyntheticTasks copyTask(long seed) {
    Set<SyntheticTask> tasks = EnumSet.of(SyntheticTask.COPY);
    return new SyntheticTasks(TOKENIZER, tasks, SyntheticTasks.requiredSeqLen(tasks), seed);
  }

  static Trainer.Builder tinyTrainer(SyntheticTasks data, long steps) {
    return Trainer.builder(cpu).model(tiny(4)).data(TrainingData.synthetic(data)).steps(steps).batchSize(4)
        .schedule(LrSchedule.cosine(3e-3f, 2, steps)).seed(11);
  }

  static final class Recorder implements TrainingCallback {
    final List<StepMetrics> steps = new ArrayList<>();
    final List<EvalResult> evals = new ArrayList<>();

    @Override
    public void onStep(StepMetrics metrics) {
      steps.add(metrics);
    }

    @Override
    public void onEval(EvalResult result) {
      evals.add(result);
    }

    float[] losses() {
      float[] l = new float[steps.size()];
      for (int i = 0; i < l.length; i++) l[i] = steps.get(i).loss();
      return l;
    }
  }

  @Test
  void sameSeedGivesABitwiseIdenticalLossCurve() {
    float[][] curves = new float[2][];
    for (int run = 0; run < 2; run++) {
      Recorder rec = new Recorder();
      try (Trainer t = tinyTrainer(copyTask(5), 6).gradAccumulation(2).callback(rec).build()) {
        t.run();
        assertEquals(6, t.step());
      }
      curves[run] = rec.losses();
    }
    assertEquals(6, curves[0].length);
    assertArrayEquals(curves[0], curves[1], 0f);
    Recorder other = new Recorder();
    try (Trainer t = tinyTrainer(copyTask(6), 6).gradAccumulation(2).callback(other).build()) {
      t.run();
    }
    assertFalse(java.util.Arrays.equals(curves[0], other.losses()), "another data seed gives another curve");
  }

  @Test
  void metricsCarryLossLrGradNormThroughputAndExpertLoad() {
    Recorder rec = new Recorder();
    try (Trainer t = tinyTrainer(copyTask(1), 3).peakFlops(1e12).callback(rec).build()) {
      t.run();
    }
    assertEquals(3, rec.steps.size());
    LrSchedule schedule = LrSchedule.cosine(3e-3f, 2, 3);
    for (int i = 0; i < 3; i++) {
      StepMetrics m = rec.steps.get(i);
      assertEquals(i + 1, m.step());
      assertEquals(schedule.lr(i), m.lr(), 0f);
      assertTrue(m.loss() > 0 && Float.isFinite(m.loss()), "loss " + m.loss());
      assertTrue(m.auxLoss() > 0, "aux loss is reported");
      assertTrue(m.gradNorm() > 0 && Float.isFinite(m.gradNorm()));
      assertFalse(m.skipped());
      assertEquals(4L * 23, m.tokens());
      assertTrue(m.tokensPerSecond() > 0);
      assertTrue(m.mfu() > 0 && m.mfu() < 1, "mfu " + m.mfu());
      assertEquals(2, m.expertLoad().size(), "both layers are MoE");
      for (ExpertLoad load : m.expertLoad()) {
        assertEquals(4, load.expertTokens().length);
        // dropless top-2: every token is assigned twice
        assertEquals(2L * 4 * 23, java.util.Arrays.stream(load.expertTokens()).sum());
        assertEquals(0.0, load.droppedFraction(), 0.0);
      }
      long[][] te = m.taskExpertTokens();
      assertNotNull(te);
      assertEquals(2L * 2 * 4 * 23, java.util.Arrays.stream(te[SyntheticTask.COPY.id()]).sum(), "k × layers × tokens");
      assertEquals(0L, java.util.Arrays.stream(te[SyntheticTask.ADD.id()]).sum());
    }
    // The first loss is about ln(vocab) for a freshly initialized model.
    assertEquals(Math.log(ByteTokenizer.VOCAB_SIZE), rec.steps.get(0).loss(), 0.2);
  }

  @Test
  void nonFiniteStepsAreSkippedAndThreeInARowStopTraining() {
    Recorder rec = new Recorder();
    Trainer[] self = new Trainer[1];
    TrainingCallback poison = m -> {
      if (m.step() == 4) {
        // A NaN weight makes every following loss NaN, as a diverged run would.
        Parameter p = self[0].model().parameter("model.norm.weight");
        float[] v = new float[(int) p.numel()];
        java.util.Arrays.fill(v, Float.NaN);
        cpu.copyFromFloats(v, p.value());
      }
    };
    try (Trainer t = tinyTrainer(copyTask(2), 20).callback(rec).callback(poison).build()) {
      self[0] = t;
      TrainingStoppedException e = assertThrows(TrainingStoppedException.class, t::run);
      assertEquals(7, e.step());
      assertEquals(7, t.step());
      assertEquals(4, t.optimizer().stepCount(), "skipped steps apply nothing");
      assertTrue(e.getMessage().contains("training stopped at step 7: 3 consecutive steps had a non-finite loss"), e.getMessage());
      assertTrue(e.getMessage().contains("no checkpoint was written"), e.getMessage());
    }
    assertEquals(7, rec.steps.size());
    assertFalse(rec.steps.get(3).skipped(), "step 4 itself was fine");
    for (int i = 4; i < 7; i++) {
      assertTrue(rec.steps.get(i).skipped(), "step " + (i + 1));
      assertTrue(Float.isNaN(rec.steps.get(i).loss()));
      assertEquals(i - 3, rec.steps.get(i).skippedTotal());
    }
  }

  @Test
  void resumeContinuesBitExactly(@TempDir Path tmp) throws Exception {
    resumeContinuesBitExactly(tmp, false);
  }

  @Test
  void mixedPrecisionResumeContinuesBitExactlyWithTheCheckpointsSettings(@TempDir Path tmp) throws Exception {
    resumeContinuesBitExactly(tmp, true);
  }

  /**
   * 8 steps in one go against 4 + checkpoint + resume + 4; the resumed trainer is given neither the
   * accumulation nor the precision: they come from the checkpoint.
   */
  private void resumeContinuesBitExactly(Path tmp, boolean mixed) throws Exception {
    Recorder whole = new Recorder();
    try (Trainer t = tinyTrainer(copyTask(3), 8).gradAccumulation(2).mixedPrecision(mixed).callback(whole).build()) {
      assertEquals(mixed, t.model().mixedPrecision());
      t.run();
    }
    Path ckpt = tmp.resolve("ckpt");
    Recorder first = new Recorder();
    try (Trainer t = tinyTrainer(copyTask(3), 8).gradAccumulation(2).mixedPrecision(mixed).callback(first).checkpoints(ckpt, 4)
        .build()) {
      for (int i = 0; i < 4; i++) t.runStep();
      t.checkpoint();
    }
    for (String f : List.of("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
        TrainingCheckpoint.OPTIMIZER_FILE, TrainingCheckpoint.STATE_FILE))
      assertTrue(Files.isRegularFile(ckpt.resolve(f)), f);
    TrainerState saved = TrainingCheckpoint.read(ckpt).state();
    assertEquals(4, saved.step());
    assertEquals(4, saved.optimizerSteps());
    assertEquals(2, saved.gradAccumulation());
    assertEquals(mixed, saved.mixedPrecision());
    assertEquals(List.of("COPY"), saved.tasks());
    Recorder second = new Recorder();
    // A fresh data stream with another seed: the position in the checkpoint must win.
    try (Trainer t = tinyTrainer(copyTask(999), 8).callback(second).resume(ckpt).build()) {
      assertEquals(4, t.step());
      assertEquals(mixed, t.model().mixedPrecision());
      t.run();
    }
    float[] joined = new float[8];
    System.arraycopy(first.losses(), 0, joined, 0, 4);
    System.arraycopy(second.losses(), 0, joined, 4, 4);
    assertArrayEquals(whole.losses(), joined, 0f, "4 + save + resume + 4 == 8 uninterrupted");
    assertEquals(5, second.steps.get(0).step());
  }

  @Test
  void resumeErrorsNameTheProblem(@TempDir Path tmp) throws Exception {
    Path empty = Files.createDirectory(tmp.resolve("empty"));
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> tinyTrainer(copyTask(1), 4).resume(empty).build());
    assertTrue(e.getMessage().contains("has no trainer_state.json"), e.getMessage());
    Path ckpt = tmp.resolve("c");
    try (Trainer t = tinyTrainer(copyTask(1), 2).checkpoints(ckpt, 0).build()) {
      t.run();
    }
    e = assertThrows(IllegalArgumentException.class, () -> tinyTrainer(copyTask(1), 2).resume(ckpt).build());
    assertTrue(e.getMessage().contains("must exceed the checkpoint's step 2"), e.getMessage());
    Files.writeString(ckpt.resolve(TrainingCheckpoint.STATE_FILE), "{\"step\": 2}");
    e = assertThrows(IllegalArgumentException.class, () -> tinyTrainer(copyTask(1), 4).resume(ckpt).build());
    assertTrue(e.getMessage().contains("lacks \"schedule\""), e.getMessage());
    assertEquals(0, cpu.memoryStats().liveBytes());
  }

  @Test
  void stoppingLeavesTheLastGoodCheckpoint(@TempDir Path tmp) {
    Path ckpt = tmp.resolve("ckpt");
    Trainer[] self = new Trainer[1];
    TrainingCallback poison = m -> {
      if (m.step() == 5) {
        Parameter p = self[0].model().parameter("model.norm.weight");
        float[] v = new float[(int) p.numel()];
        java.util.Arrays.fill(v, Float.POSITIVE_INFINITY);
        cpu.copyFromFloats(v, p.value());
      }
    };
    try (Trainer t = tinyTrainer(copyTask(4), 20).checkpoints(ckpt, 2).callback(poison).build()) {
      self[0] = t;
      TrainingStoppedException e = assertThrows(TrainingStoppedException.class, t::run);
      assertEquals(8, e.step(), "steps 6, 7, 8 are the three non-finite ones");
      assertTrue(e.getMessage().contains("the last good checkpoint is " + ckpt + " (step 4)"), e.getMessage());
    }
    TrainerState saved = TrainingCheckpoint.read(ckpt).state();
    assertEquals(4, saved.step(), "the skipped step 6 wrote no checkpoint");
    assertEquals(0, saved.skippedSteps());
  }

  @Test
  void badConfigurationNamesTheArgument() {
    SyntheticTasks data = copyTask(1);
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> tinyTrainer(data, 5).steps(0).build());
    assertTrue(e.getMessage().startsWith("steps must be > 0"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> tinyTrainer(data, 5).batchSize(-2).build());
    assertTrue(e.getMessage().contains("batchSize must be > 0, got -2"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> tinyTrainer(data, 5).gradAccumulation(0).build());
    assertTrue(e.getMessage().contains("gradAccumulation"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> tinyTrainer(data, 5).grow(2, false).build());
    assertTrue(e.getMessage().contains("resume"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> Trainer.builder(cpu).model(tiny(4)).steps(5).batchSize(2).build());
    assertTrue(e.getMessage().contains("data"), e.getMessage());
    assertEquals(0, cpu.memoryStats().liveBytes(), "a failed build leaves nothing allocated");
  }
}
