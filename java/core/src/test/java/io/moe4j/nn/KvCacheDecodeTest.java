package io.moe4j.nn;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Incremental decoding with the KV cache (flash prefill of right-padded prompts, then the decode
 * kernel one token at a time) against re-running the full forward on the growing sequence: the
 * greedy tokens must be identical and the logits equal to f32 rounding (the two paths sum attention
 * in different orders; 1e-4 absolute on logits of magnitude ~1).
 */
class KvCacheDecodeTest {

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

  private static ModelConfig config(ModelConfig.Architecture arch, ModelConfig.QkNorm qkNorm, ModelConfig.Routing routing,
      float capacity) {
    return new ModelConfig(arch, 23, 16, 2, 4, 2, 6, 20, 12, 4, 2, arch == ModelConfig.Architecture.MIXTRAL, 1,
        List.of(0), qkNorm, 1e-5f, 10000f, 64, false, 0.01f, 0.001f, routing, capacity, 0, 0, 1, 2, 0.3f);
  }

  private static int argmax(float[] logits, int offset, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (logits[offset + i] > logits[offset + best]) best = i;
    return best;
  }

  private static void decodeMatchesFullForward(ModelConfig c) {
    int[][] prompts = {{1, 5, 7}, {1, 3}, {1, 9, 4, 4, 8, 2}};
    int steps = 6;
    int vocab = c.vocabSize();
    try (MoeTransformer model = new MoeTransformer(backend, c, 3); KvCache cache = model.newKvCache(prompts.length, 16)) {
      float[] logits = model.prefill(prompts, cache);
      int[][] sequences = new int[prompts.length][];
      for (int b = 0; b < prompts.length; b++) sequences[b] = prompts[b].clone();
      for (int step = 0; step < steps; step++) {
        int[] next = new int[prompts.length];
        for (int b = 0; b < prompts.length; b++) {
          int[] seq = sequences[b];
          float[] full = model.logits(seq, 1, seq.length);
          float[] fullLast = Arrays.copyOfRange(full, (seq.length - 1) * vocab, seq.length * vocab);
          float[] cached = Arrays.copyOfRange(logits, b * vocab, (b + 1) * vocab);
          assertArrayEquals(fullLast, cached, 1e-4f, c.architecture() + " sequence " + b + " step " + step);
          next[b] = argmax(logits, b * vocab, vocab);
          assertEquals(argmax(fullLast, 0, vocab), next[b]);
          sequences[b] = Arrays.copyOf(seq, seq.length + 1);
          sequences[b][seq.length] = next[b];
        }
        logits = model.decode(next, cache);
      }
      for (int b = 0; b < prompts.length; b++) assertEquals(prompts[b].length + steps, cache.length(b));
    }
  }

  @Test
  void mixtralShaped() {
    decodeMatchesFullForward(config(ModelConfig.Architecture.MIXTRAL, ModelConfig.QkNorm.NONE,
        ModelConfig.Routing.TOKEN_CHOICE, 0));
  }

  @Test
  void qwen3PerHeadQkNormAndOlmoeWholeQkNorm() {
    decodeMatchesFullForward(config(ModelConfig.Architecture.QWEN3_MOE, ModelConfig.QkNorm.PER_HEAD,
        ModelConfig.Routing.TOKEN_CHOICE, 0));
    decodeMatchesFullForward(config(ModelConfig.Architecture.OLMOE, ModelConfig.QkNorm.WHOLE,
        ModelConfig.Routing.TOKEN_CHOICE, 0));
  }

  @Test
  void expertChoiceDecodesWithItsCausalFallback() {
    decodeMatchesFullForward(config(ModelConfig.Architecture.MIXTRAL, ModelConfig.QkNorm.NONE,
        ModelConfig.Routing.EXPERT_CHOICE, 2f));
  }

  @Test
  void badCacheUseIsAClearError() {
    ModelConfig c = config(ModelConfig.Architecture.MIXTRAL, ModelConfig.QkNorm.NONE, ModelConfig.Routing.TOKEN_CHOICE, 0);
    try (MoeTransformer model = new MoeTransformer(backend, c, 3); KvCache cache = model.newKvCache(2, 4)) {
      IllegalArgumentException tooLong = assertThrows(IllegalArgumentException.class,
          () -> model.prefill(new int[][] {{1, 2, 3, 4, 5}, {1}}, cache));
      assertTrue(tooLong.getMessage().contains("cache holds 4"), tooLong.getMessage());
      assertThrows(IllegalArgumentException.class, () -> model.prefill(new int[][] {{1}}, cache));
      IllegalArgumentException badToken = assertThrows(IllegalArgumentException.class,
          () -> model.prefill(new int[][] {{1, 99}, {1}}, cache));
      assertTrue(badToken.getMessage().contains("must be in [0, 23)"), badToken.getMessage());
      model.prefill(new int[][] {{1, 2, 3}, {1}}, cache);
      model.decode(new int[] {4, 4}, cache);
      IllegalStateException full = assertThrows(IllegalStateException.class, () -> model.decode(new int[] {4, 4}, cache));
      assertTrue(full.getMessage().contains("fills the cache"), full.getMessage());
    }
  }

  @Test
  void greedyDecodeIsDeterministic() {
    ModelConfig c = config(ModelConfig.Architecture.MIXTRAL, ModelConfig.QkNorm.NONE, ModelConfig.Routing.TOKEN_CHOICE, 0);
    float[][] runs = new float[2][];
    for (int r = 0; r < 2; r++) {
      try (MoeTransformer model = new MoeTransformer(backend, c, 11); KvCache cache = model.newKvCache(1, 8)) {
        model.prefill(new int[][] {{1, 2, 3}}, cache);
        runs[r] = model.decode(new int[] {new Random(1).nextInt(23)}, cache);
      }
    }
    assertArrayEquals(runs[0], runs[1], 0f);
  }
}
