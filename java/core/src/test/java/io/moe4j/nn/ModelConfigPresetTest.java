package io.moe4j.nn;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The named presets: their shapes, parameter counts by construction, and the error for an unknown name. */
class ModelConfigPresetTest {

  /** Parameters of a Mixtral-shaped config without shared experts or dense layers. */
  private static long parameters(ModelConfig c) {
    long h = c.hiddenSize(), attn = h * c.numHeads() * c.headDim() * 2 + h * c.numKvHeads() * c.headDim() * 2;
    long moe = c.numExperts() * 3L * h * c.moeIntermediateSize() + (long) c.numExperts() * h;
    long layer = attn + moe + 2 * h;
    return c.numLayers() * layer + (long) c.vocabSize() * h * (c.tieWordEmbeddings() ? 1 : 2) + h;
  }

  @Test
  void presetsHaveTheirDocumentedSizes() {
    assertEquals(ModelConfig.demo(), ModelConfig.preset("demo"));
    ModelConfig m100 = ModelConfig.preset("moe-100m");
    assertEquals(6, m100.numLayers());
    assertEquals(512, m100.hiddenSize());
    assertEquals(8, m100.numExperts());
    long p100 = parameters(m100);
    assertTrue(p100 > 90_000_000L && p100 < 120_000_000L, "moe-100m parameters " + p100);
    ModelConfig m1b = ModelConfig.preset("moe-1b");
    assertEquals(16, m1b.numLayers());
    long p1b = parameters(m1b);
    assertTrue(p1b > 900_000_000L && p1b < 1_300_000_000L, "moe-1b parameters " + p1b);
    for (String name : ModelConfig.PRESETS) assertEquals(ModelConfig.Architecture.MIXTRAL, ModelConfig.preset(name).architecture());
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ModelConfig.preset("huge"));
    assertEquals("preset must be one of [demo, moe-100m, moe-1b], got 'huge'", e.getMessage());
  }
}
