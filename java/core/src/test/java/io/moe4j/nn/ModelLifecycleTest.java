package io.moe4j.nn;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Recomputation, growing experts, freezing, and inference-only misuse. */
class ModelLifecycleTest {

  private static Backend backend;

  @BeforeAll
  static void open() {
    backend = Backends.open("cpu");
  }

  @AfterAll
  static void close() {
    assertEquals(0, backend.memoryStats().liveBytes(), "memory returned");
    backend.close();
  }

  private static ModelConfig config() {
    return new ModelConfig(ModelConfig.Architecture.QWEN3_MOE, 31, 16, 3, 4, 2, 4, 20, 10, 4, 2, true, 1, List.of(1),
        ModelConfig.QkNorm.PER_HEAD, 1e-5f, 10000f, 64, false, 0.02f, 0.001f, ModelConfig.Routing.TOKEN_CHOICE, 0f, 1, 6,
        1, 2, 0.1f);
  }

  private static int[][] batch(int b, int s, int vocab) {
    Random r = new Random(4);
    int[] tokens = new int[b * s];
    int[] targets = new int[b * s];
    for (int i = 0; i < tokens.length; i++) {
      tokens[i] = r.nextInt(vocab);
      targets[i] = r.nextInt(vocab);
    }
    return new int[][] {tokens, targets};
  }

  private static Map<String, float[]> gradients(boolean recompute) {
    ModelConfig c = config();
    int[][] data = batch(2, 7, c.vocabSize());
    Map<String, float[]> grads = new HashMap<>();
    try (MoeTransformer model = new MoeTransformer(backend, c, 1)) {
      model.setRecompute(recompute);
      model.zeroGrad();
      ForwardResult r = model.forward(data[0], data[1], 2, 7);
      grads.put("loss", new float[] {r.loss(), r.auxLoss(), r.zLoss()});
      model.backward(1f);
      for (Parameter p : model.parameters()) grads.put(p.name(), backend.toFloats(p.grad()));
    }
    return grads;
  }

  @Test
  void recomputationGivesBitwiseTheSameLossAndGradients() {
    Map<String, float[]> plain = gradients(false);
    Map<String, float[]> recomputed = gradients(true);
    assertEquals(plain.keySet(), recomputed.keySet());
    for (String name : plain.keySet()) assertArrayEquals(plain.get(name), recomputed.get(name), 0f, name);
  }

  @Test
  void mixedPrecisionGradientsFollowTheF32OnesWithinBf16Rounding() {
    ModelConfig c = config();
    int[][] data = batch(2, 7, c.vocabSize());
    try (MoeTransformer f32 = new MoeTransformer(backend, c, 5); MoeTransformer mixed = new MoeTransformer(backend, c, 5)) {
      mixed.setMixedPrecision(true);
      assertEquals(io.moe4j.tensor.DType.BF16, mixed.parameter("lm_head.weight").computeValue().dtype());
      assertEquals(io.moe4j.tensor.DType.F32, mixed.parameter("model.norm.weight").computeValue().dtype());
      float[] losses = new float[2];
      int i = 0;
      for (MoeTransformer m : List.of(f32, mixed)) {
        m.zeroGrad();
        losses[i++] = m.forward(data[0], data[1], 2, 7).loss();
        m.backward(1f);
      }
      // bf16 GEMM inputs (relative rounding 2^-9) through 3 layers: ~1% on the loss and most gradients.
      assertEquals(losses[0], losses[1], 0.01 * losses[0]);
      for (Parameter p : f32.parameters()) {
        float[] a = backend.toFloats(p.grad());
        float[] b = backend.toFloats(mixed.parameter(p.name()).grad());
        double diff = 0, norm = 0;
        for (int j = 0; j < a.length; j++) {
          diff += (a[j] - b[j]) * (double) (a[j] - b[j]);
          norm += a[j] * (double) a[j];
        }
        // Matrices: ~1% measured, bound 3%. Norm scales: their gradient sums dy·x̂ over all tokens with
        // much cancellation (values ~1e-2 here), which magnifies relative rounding: ~5% measured, bound 10%.
        double bound = p.value().rank() >= 2 ? 0.03 : 0.10;
        assertTrue(Math.sqrt(diff) <= bound * Math.sqrt(norm) + 1e-6,
            p.name() + ": mixed vs f32 gradient relative L2 error " + Math.sqrt(diff / Math.max(norm, 1e-30)));
      }
      // copies follow the masters after an update
      Parameter w = mixed.parameter("lm_head.weight");
      backend.scale(w.value(), 0.5f, w.value());
      mixed.refreshComputeCopies();
      float[] master = backend.toFloats(w.value());
      float[] copy = backend.toFloats(w.computeCopy());
      for (int j = 0; j < master.length; j++)
        assertEquals(io.moe4j.tensor.HalfFloats.bf16ToFloat(io.moe4j.tensor.HalfFloats.floatToBf16(master[j])), copy[j], 0f);
    }
  }

  @Test
  void addExpertsKeepsOldValuesAndFreezeLeavesOnlyNewExpertsTrainable() {
    ModelConfig c = config();
    try (MoeTransformer model = new MoeTransformer(backend, c, 2)) {
      String w1 = "model.layers.0.mlp.experts.{j}.gate_proj.weight";
      String router = "model.layers.0.mlp.gate.weight";
      float[] oldW1 = backend.toFloats(model.parameter(w1).value());
      float[] oldRouter = backend.toFloats(model.parameter(router).value());
      model.addExperts(3, 9);
      assertEquals(7, model.config().numExperts());
      assertArrayEquals(new long[] {7, 10, 16}, model.parameter(w1).value().shape());
      float[] grownW1 = backend.toFloats(model.parameter(w1).value());
      assertArrayEquals(oldW1, Arrays.copyOf(grownW1, oldW1.length), 0f);
      assertTrue(Arrays.stream(toDoubles(grownW1, oldW1.length)).anyMatch(v -> v != 0), "new experts initialized");
      float[] grownRouter = backend.toFloats(model.parameter(router).value());
      assertArrayEquals(oldRouter, Arrays.copyOf(grownRouter, oldRouter.length), 0f);
      assertTrue(model.parameter("model.layers.1.mlp.gate_proj.weight").value().dim(0) == 20, "dense layer unchanged");

      model.freezeAllBut(4);
      for (Parameter p : model.parameters()) {
        if (p.name().contains("experts.{j}")) assertEquals(p.numel() / 7 * 4, p.trainableFrom(), p.name());
        else if (p.name().endsWith("mlp.gate.weight")) assertEquals(4L * 16, p.trainableFrom(), p.name());
        else assertEquals(p.numel(), p.trainableFrom(), p.name() + " frozen");
      }
      int[][] data = batch(2, 5, c.vocabSize());
      model.zeroGrad();
      ForwardResult r = model.forward(data[0], data[1], 2, 5);
      assertEquals(7, r.routing().get(0).expertTokens().length);
      model.backward(1f);
    }
  }

  @Test
  void weightDecayIsOnProjectionMatricesOnlyNotOnEmbeddingsOrNorms() {
    ModelConfig tied = new ModelConfig(ModelConfig.Architecture.QWEN3_MOE, 31, 16, 3, 4, 2, 4, 20, 10, 4, 2, true, 1,
        List.of(1), ModelConfig.QkNorm.PER_HEAD, 1e-5f, 10000f, 64, true, 0.02f, 0.001f,
        ModelConfig.Routing.TOKEN_CHOICE, 0f, 1, 6, 1, 2, 0.1f);
    for (ModelConfig c : List.of(config(), tied)) {
      try (MoeTransformer model = new MoeTransformer(backend, c, 1)) {
        for (Parameter p : model.parameters()) {
          boolean projection = !p.name().equals("model.embed_tokens.weight") && !p.name().endsWith("norm.weight");
          assertEquals(projection, p.weightDecay(), p.name() + (c.tieWordEmbeddings() ? " (tied)" : " (untied)"));
        }
        assertEquals(!c.tieWordEmbeddings(), model.parameters().stream().anyMatch(p -> p.name().equals("lm_head.weight")));
      }
    }
  }

  private static double[] toDoubles(float[] a, int from) {
    double[] d = new double[a.length - from];
    for (int i = from; i < a.length; i++) d[i - from] = a[i];
    return d;
  }

  @Test
  void badCallsSayWhatWasExpected() {
    ModelConfig c = config();
    try (MoeTransformer model = new MoeTransformer(backend, c, 3)) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> model.forward(new int[5], null, 2, 3));
      assertTrue(e.getMessage().contains("batchSize*seqLen = 6"), e.getMessage());
      assertThrows(IllegalStateException.class, () -> model.backward(1f));
      IllegalArgumentException grow = assertThrows(IllegalArgumentException.class, () -> model.addExperts(0, 1));
      assertTrue(grow.getMessage().contains("> 0"), grow.getMessage());
    }
  }
}
