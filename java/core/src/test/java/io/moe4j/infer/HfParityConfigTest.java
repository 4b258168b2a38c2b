package io.moe4j.infer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.io.HfConfig;
import io.moe4j.nn.ModelConfig;
import io.moe4j.nn.ModelConfig.Architecture;
import io.moe4j.nn.ModelConfig.QkNorm;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/**
 * config.json files exactly as transformers 5.18 save_pretrained wrote them for the HF parity models
 * (tools/hf_parity/make_models.py) read into the model transformers builds from them. transformers 5
 * writes Qwen3-MoE's expert count as "num_local_experts" (its attribute_map alias of "num_experts")
 * and RoPE's theta inside "rope_parameters"; reading "num_experts" alone gave Qwen3-MoE the default
 * 128 experts.
 */
class HfParityConfigTest {

  private static ModelConfig read(String name) {
    String path = "hfparity/configs/" + name + ".json";
    try (InputStream in = HfParityConfigTest.class.getResourceAsStream(path)) {
      if (in == null) throw new AssertionError("missing test resource " + path);
      return HfConfig.parse(new String(in.readAllBytes(), StandardCharsets.UTF_8), path);
    } catch (IOException e) {
      throw new AssertionError(e);
    }
  }

  private static List<Integer> moeLayers(ModelConfig c) {
    return IntStream.range(0, c.numLayers()).filter(c::isMoeLayer).boxed().toList();
  }

  @Test
  void mixtral() {
    ModelConfig c = read("mixtral");
    assertEquals(Architecture.MIXTRAL, c.architecture());
    assertEquals(8, c.numExperts());
    assertEquals(2, c.expertsPerToken());
    assertEquals(List.of(0, 1, 2), moeLayers(c));
    assertEquals(16, c.headDim());
    assertEquals(10000f, c.ropeTheta());
    assertEquals(QkNorm.NONE, c.qkNorm());
  }

  @Test
  void qwen3MoeWithADenseLayerAndRenormalizedTopK() {
    ModelConfig c = read("qwen3_moe_norm");
    assertEquals(Architecture.QWEN3_MOE, c.architecture());
    assertEquals(6, c.numExperts(), "from num_local_experts");
    assertEquals(List.of(1, 2), moeLayers(c), "mlp_only_layers [0]");
    assertTrue(c.normTopkProb());
    assertEquals(24, c.headDim(), "head_dim differs from hidden / heads");
    assertEquals(80, c.denseIntermediateSize());
    assertEquals(48, c.moeIntermediateSize());
    assertEquals(QkNorm.PER_HEAD, c.qkNorm());
    assertEquals(10000f, c.ropeTheta(), "from rope_parameters");
  }

  @Test
  void qwen3MoeSparseStepTwoWithoutRenormalization() {
    ModelConfig c = read("qwen3_moe_nonorm");
    assertEquals(4, c.numExperts(), "from num_local_experts");
    assertEquals(List.of(1, 3), moeLayers(c), "decoder_sparse_step 2");
    assertEquals(false, c.normTopkProb());
  }

  @Test
  void olmoe() {
    ModelConfig c = read("olmoe");
    assertEquals(Architecture.OLMOE, c.architecture());
    assertEquals(8, c.numExperts());
    assertEquals(List.of(0, 1), moeLayers(c));
    assertEquals(false, c.normTopkProb());
    assertEquals(QkNorm.WHOLE, c.qkNorm());
    assertEquals(2, c.numKvHeads());
  }

  @Test
  void eitherNameOfTheExpertCountIsRead() {
    String base = "{\"model_type\": \"%s\", \"hidden_size\": 64, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
        + " \"num_experts_per_tok\": 2, %s}";
    assertEquals(5, HfConfig.parse(String.format(base, "qwen3_moe", "\"num_experts\": 5"), "a").numExperts());
    assertEquals(5, HfConfig.parse(String.format(base, "qwen3_moe", "\"num_local_experts\": 5"), "b").numExperts());
    assertEquals(5, HfConfig.parse(String.format(base, "mixtral", "\"num_experts\": 5"), "c").numExperts());
    assertEquals(5, HfConfig.parse(String.format(base, "olmoe", "\"num_local_experts\": 5"), "d").numExperts());
    assertEquals(7, HfConfig.parse(String.format(base, "olmoe", "\"num_experts\": 7, \"num_local_experts\": 7"), "e")
        .numExperts());
  }

  @Test
  void contradictingExpertCountsAreAnError() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> HfConfig.parse(
        "{\"model_type\": \"qwen3_moe\", \"num_experts\": 8, \"num_local_experts\": 6}", "cfg.json"));
    assertTrue(e.getMessage().contains("cfg.json") && e.getMessage().contains("num_experts")
        && e.getMessage().contains("num_local_experts"), e.getMessage());
  }
}
