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
