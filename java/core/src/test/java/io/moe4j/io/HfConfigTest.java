package io.moe4j.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.moe4j.nn.ModelConfig;
import io.moe4j.nn.ModelConfig.Architecture;
import io.moe4j.nn.ModelConfig.QkNorm;
import io.moe4j.nn.ModelConfig.Routing;
import io.moe4j.tensor.DType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class HfConfigTest {

  @TempDir Path dir;

  /** Mixtral-8x7B-v0.1's published config.json. */
  static final String MIXTRAL_8X7B = """
      {
        "architectures": ["MixtralForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 4096,
        "initializer_range": 0.02,
        "intermediate_size": 14336,
        "max_position_embeddings": 32768,
        "model_type": "mixtral",
        "num_attention_heads": 32,
        "num_experts_per_tok": 2,
        "num_hidden_layers": 32,
        "num_key_value_heads": 8,
        "num_local_experts": 8,
        "output_router_logits": false,
        "rms_norm_eps": 1e-05,
        "rope_theta": 1000000.0,
        "router_aux_loss_coef": 0.02,
        "sliding_window": null,
        "tie_word_embeddings": false,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.36.0.dev0",
        "use_cache": true,
        "vocab_size": 32000
      }
      """;

  /** Qwen3-30B-A3B's published config.json. */
  static final String QWEN3_30B_A3B = """
      {
        "architectures": ["Qwen3MoeForCausalLM"],
        "attention_bias": false,
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "decoder_sparse_step": 1,
        "eos_token_id": 151645,
        "head_dim": 128,
        "hidden_act": "silu",
        "hidden_size": 2048,
        "initializer_range": 0.02,
        "intermediate_size": 6144,
        "max_position_embeddings": 40960,
        "max_window_layers": 48,
        "mlp_only_layers": [],
        "model_type": "qwen3_moe",
        "moe_intermediate_size": 768,
        "norm_topk_prob": true,
        "num_attention_heads": 32,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "num_hidden_layers": 48,
        "num_key_value_heads": 4,
        "output_router_logits": false,
        "rms_norm_eps": 1e-06,
        "rope_scaling": null,
        "rope_theta": 1000000.0,
        "router_aux_loss_coef": 0.001,
        "sliding_window": null,
        "tie_word_embeddings": false,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.51.0",
        "use_cache": true,
        "use_sliding_window": false,
        "vocab_size": 151936
      }
      """;

  /** OLMoE-1B-7B-0924's published config.json. */
  static final String OLMOE_1B_7B = """
      {
        "architectures": ["OlmoeForCausalLM"],
        "attention_bias": false,
        "attention_dropout": 0.0,
        "clip_qkv": null,
        "eos_token_id": 50279,
        "hidden_act": "silu",
        "hidden_size": 2048,
        "initializer_range": 0.02,
        "intermediate_size": 1024,
        "max_position_embeddings": 4096,
        "model_type": "olmoe",
        "norm_topk_prob": false,
        "num_attention_heads": 16,
        "num_experts": 64,
        "num_experts_per_tok": 8,
        "num_hidden_layers": 16,
        "num_key_value_heads": 16,
        "output_router_logits": false,
        "pad_token_id": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": null,
        "rope_theta": 10000.0,
        "router_aux_loss_coef": 0.01,
        "tie_word_embeddings": false,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.43.0.dev0",
        "use_cache": true,
        "vocab_size": 50304
      }
      """;

  private static ModelConfig parse(String text) {
    return HfConfig.parse(text, "test.json");
  }

  private static String error(String text) {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> parse(text));
    assertTrue(e.getMessage().contains("test.json"), e.getMessage());
    return e.getMessage();
  }

  @Test
  void readsMixtral8x7b() {
    ModelConfig c = parse(MIXTRAL_8X7B);
    assertEquals(Architecture.MIXTRAL, c.architecture());
    assertEquals(32000, c.vocabSize());
    assertEquals(4096, c.hiddenSize());
    assertEquals(32, c.numLayers());
    assertEquals(32, c.numHeads());
    assertEquals(8, c.numKvHeads());
    assertEquals(128, c.headDim());
    assertEquals(14336, c.moeIntermediateSize());
    assertEquals(8, c.numExperts());
    assertEquals(2, c.expertsPerToken());
    assertTrue(c.normTopkProb(), "Mixtral always renormalizes");
    assertEquals(QkNorm.NONE, c.qkNorm());
    assertEquals(1, c.decoderSparseStep());
    assertTrue(c.mlpOnlyLayers().isEmpty());
    assertEquals(1e-5f, c.rmsNormEps());
    assertEquals(1e6f, c.ropeTheta());
    assertEquals(32768, c.maxPositionEmbeddings());
    assertFalse(c.tieWordEmbeddings());
    assertEquals(0.02f, c.routerAuxLossCoef());
    assertEquals(0f, c.routerZLossCoef());
    assertEquals(Routing.TOKEN_CHOICE, c.routing());
    assertEquals(0f, c.capacityFactor());
    assertEquals(1, c.bosTokenId());
    assertEquals(2, c.eosTokenId());
    assertEquals(0.02f, c.initializerRange());
    for (int i = 0; i < 32; i++) assertTrue(c.isMoeLayer(i));
  }

  @Test
  void readsQwen3Moe30bA3b() {
    ModelConfig c = parse(QWEN3_30B_A3B);
    assertEquals(Architecture.QWEN3_MOE, c.architecture());
    assertEquals(151936, c.vocabSize());
    assertEquals(2048, c.hiddenSize());
    assertEquals(48, c.numLayers());
    assertEquals(32, c.numHeads());
    assertEquals(4, c.numKvHeads());
    assertEquals(128, c.headDim(), "head_dim differs from hidden / heads = 64");
    assertEquals(6144, c.denseIntermediateSize());
    assertEquals(768, c.moeIntermediateSize());
    assertEquals(128, c.numExperts());
    assertEquals(8, c.expertsPerToken());
    assertTrue(c.normTopkProb());
    assertEquals(QkNorm.PER_HEAD, c.qkNorm());
    assertEquals(1e-6f, c.rmsNormEps());
    assertEquals(1e6f, c.ropeTheta());
    assertEquals(40960, c.maxPositionEmbeddings());
    assertEquals(0.001f, c.routerAuxLossCoef());
    assertEquals(151643, c.bosTokenId());
    assertEquals(151645, c.eosTokenId());
  }

  @Test
  void readsOlmoe1b7b() {
    ModelConfig c = parse(OLMOE_1B_7B);
    assertEquals(Architecture.OLMOE, c.architecture());
    assertEquals(50304, c.vocabSize());
    assertEquals(2048, c.hiddenSize());
    assertEquals(16, c.numLayers());
    assertEquals(16, c.numHeads());
    assertEquals(16, c.numKvHeads());
    assertEquals(128, c.headDim());
    assertEquals(1024, c.moeIntermediateSize());
    assertEquals(64, c.numExperts());
    assertEquals(8, c.expertsPerToken());
    assertFalse(c.normTopkProb());
    assertEquals(QkNorm.WHOLE, c.qkNorm());
    assertEquals(1e-5f, c.rmsNormEps());
    assertEquals(10000f, c.ropeTheta());
    assertEquals(4096, c.maxPositionEmbeddings());
    assertEquals(0.01f, c.routerAuxLossCoef());
    assertEquals(-1, c.bosTokenId(), "OLMoE has no bos token (default None)");
    assertEquals(50279, c.eosTokenId());
  }

  @Test
  void qwen3SparseStepAndMlpOnlyLayers() {
    ModelConfig c = parse(QWEN3_30B_A3B.replace("\"decoder_sparse_step\": 1", "\"decoder_sparse_step\": 2")
        .replace("\"mlp_only_layers\": []", "\"mlp_only_layers\": [3]"));
    assertEquals(2, c.decoderSparseStep());
    assertEquals(List.of(3), c.mlpOnlyLayers());
    assertFalse(c.isMoeLayer(0));
    assertTrue(c.isMoeLayer(1));
    assertFalse(c.isMoeLayer(3));
    assertTrue(c.isMoeLayer(5));
  }

  private void roundTrip(ModelConfig c) throws IOException {
    Path file = dir.resolve(c.architecture().modelType() + ".json");
    HfConfig.write(c, file, DType.BF16);
    assertEquals(c, HfConfig.read(file));
    JsonNode json = new ObjectMapper().readTree(Files.readString(file));
    assertEquals(c.architecture().modelType(), json.get("model_type").asText());
    assertEquals(c.architecture().className(), json.get("architectures").get(0).asText());
    assertEquals("bfloat16", json.get("torch_dtype").asText());
  }

  @Test
  void roundTripsMixtral() throws IOException {
    ModelConfig demo = ModelConfig.demo();
    roundTrip(demo);
    roundTrip(demo.withRouting(Routing.EXPERT_CHOICE, 1.25f));
    ModelConfig shared = new ModelConfig(Architecture.MIXTRAL, 300, 64, 2, 4, 4, 16, 96, 32, 4, 2, true, 1, List.of(),
        QkNorm.NONE, 1e-6f, 5e5f, 512, true, 0.005f, 1e-4f, Routing.TOKEN_CHOICE, 1.5f, 2, 48, -1, 7, 0.01f);
    roundTrip(shared);
    JsonNode json = new ObjectMapper().readTree(HfConfig.toJson(demo, DType.F32, "x"));
    assertEquals(256, json.get("intermediate_size").asInt(), "Mixtral's intermediate_size is the expert width");
    assertEquals(8, json.get("num_local_experts").asInt());
    assertFalse(json.has("num_experts"));
    assertEquals("token_choice", json.get("moe4j_routing").asText());
    assertEquals(0.001, json.get("moe4j_router_z_loss_coef").asDouble(), 1e-9);
  }

  @Test
  void roundTripsQwen3Moe() throws IOException {
    ModelConfig c = new ModelConfig(Architecture.QWEN3_MOE, 1000, 64, 6, 4, 2, 32, 128, 48, 8, 2, false, 2, List.of(1, 5),
        QkNorm.PER_HEAD, 1e-6f, 1e6f, 1024, false, 0.001f, 0f, Routing.TOKEN_CHOICE, 0f, 1, 64, 3, 4, 0.02f);
    roundTrip(c);
    roundTrip(c.withRouting(Routing.EXPERT_CHOICE, 2f));
    JsonNode json = new ObjectMapper().readTree(HfConfig.toJson(c, DType.F32, "x"));
    assertEquals(128, json.get("intermediate_size").asInt());
    assertEquals(48, json.get("moe_intermediate_size").asInt());
    assertEquals(32, json.get("head_dim").asInt());
    assertEquals(2, json.get("decoder_sparse_step").asInt());
    assertEquals("[1,5]", json.get("mlp_only_layers").toString());
  }

  @Test
  void roundTripsOlmoe() throws IOException {
    ModelConfig c = new ModelConfig(Architecture.OLMOE, 500, 64, 3, 4, 4, 16, 0, 32, 16, 4, false, 1, List.of(),
        QkNorm.WHOLE, 1e-5f, 1e4f, 4096, false, 0.01f, 0.001f, Routing.TOKEN_CHOICE, 0f, 0, 0, -1, 50279, 0.02f);
    roundTrip(c);
    JsonNode json = new ObjectMapper().readTree(HfConfig.toJson(c, DType.F32, "x"));
    assertTrue(json.get("clip_qkv").isNull());
    assertTrue(json.get("bos_token_id").isNull());
    assertFalse(json.has("head_dim"));
  }

  @Test
  void unknownArchitectureNamesFileValueAndSupported() {
    String m = error(MIXTRAL_8X7B.replace("\"mixtral\"", "\"llama\""));
    assertTrue(m.contains("'llama'") && m.contains("mixtral") && m.contains("qwen3_moe") && m.contains("olmoe"), m);
    m = error("{\"architectures\": [\"GPT2LMHeadModel\"]}");
    assertTrue(m.contains("GPT2LMHeadModel") && m.contains("MixtralForCausalLM"), m);
    m = error(MIXTRAL_8X7B.replace("\"MixtralForCausalLM\"", "\"OlmoeForCausalLM\""));
    assertTrue(m.contains("contradicts"), m);
    m = error("{\"vocab_size\": 3}");
    assertTrue(m.contains("neither"), m);
  }

  @Test
  void unsupportedFeaturesAreRejected() {
    String m = error(OLMOE_1B_7B.replace("\"clip_qkv\": null", "\"clip_qkv\": 8.0"));
    assertTrue(m.contains("clip_qkv") && m.contains("not supported"), m);
    m = error(MIXTRAL_8X7B.replace("\"silu\"", "\"gelu\""));
    assertTrue(m.contains("hidden_act 'gelu'"), m);
    m = error(MIXTRAL_8X7B.replace("\"sliding_window\": null", "\"sliding_window\": 4096"));
    assertTrue(m.contains("sliding_window"), m);
    m = error(QWEN3_30B_A3B.replace("\"use_sliding_window\": false", "\"use_sliding_window\": true"));
    assertTrue(m.contains("use_sliding_window"), m);
    m = error(QWEN3_30B_A3B.replace("\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0}"));
    assertTrue(m.contains("rope_scaling"), m);
    m = error(QWEN3_30B_A3B.replace("\"attention_bias\": false", "\"attention_bias\": true"));
    assertTrue(m.contains("attention_bias"), m);
  }

  @Test
  void badValuesNameTheKey() {
    String m = error(MIXTRAL_8X7B.replace("\"hidden_size\": 4096", "\"hidden_size\": \"big\""));
    assertTrue(m.contains("\"hidden_size\" must be an integer"), m);
    m = error(MIXTRAL_8X7B.replace("\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 9"));
    assertTrue(m.contains("expertsPerToken"), m);
    m = error(QWEN3_30B_A3B.replace("\"mlp_only_layers\": []", "\"mlp_only_layers\": [48]"));
    assertTrue(m.contains("mlpOnlyLayers"), m);
    m = error(MIXTRAL_8X7B.replace("\"use_cache\": true", "\"moe4j_routing\": \"random\""));
    assertTrue(m.contains("moe4j_routing"), m);
    m = error("{\"model_type\": \"mixtral\",");
    assertTrue(m.contains("not well-formed JSON"), m);
  }

  @Test
  void eosListAndMissingKeysTakeDefaults() {
    ModelConfig c = parse("{\"model_type\": \"mixtral\", \"eos_token_id\": [2, 32000], \"num_hidden_layers\": 2}");
    assertEquals(2, c.eosTokenId());
    assertEquals(1, c.bosTokenId());
    assertEquals(4096, c.hiddenSize());
    assertEquals(1e6f, c.ropeTheta());
    ModelConfig v5 = parse("{\"model_type\": \"olmoe\", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500000.0}}");
    assertEquals(5e5f, v5.ropeTheta());
  }

  @Test
  void writeRefusesWhatTheArchitectureCannotExpress() {
    ModelConfig demo = ModelConfig.demo();
    ModelConfig withNorm = new ModelConfig(Architecture.MIXTRAL, 259, 128, 4, 4, 2, 32, 0, 256, 8, 2, true, 1, List.of(),
        QkNorm.PER_HEAD, 1e-5f, 10000f, 256, false, 0.01f, 0.001f, Routing.TOKEN_CHOICE, 0f, 0, 0, 257, 258, 0.02f);
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> HfConfig.toJson(withNorm, DType.F32, "out.json"));
    assertTrue(e.getMessage().contains("out.json") && e.getMessage().contains("qkNorm"), e.getMessage());
    ModelConfig noRenorm = new ModelConfig(Architecture.MIXTRAL, 259, 128, 4, 4, 2, 32, 0, 256, 8, 2, false, 1, List.of(),
        QkNorm.NONE, 1e-5f, 10000f, 256, false, 0.01f, 0.001f, Routing.TOKEN_CHOICE, 0f, 0, 0, 257, 258, 0.02f);
    e = assertThrows(IllegalArgumentException.class, () -> HfConfig.toJson(noRenorm, DType.F32, "out.json"));
    assertTrue(e.getMessage().contains("normTopkProb"), e.getMessage());
    ModelConfig sparse = new ModelConfig(Architecture.OLMOE, 259, 128, 4, 4, 4, 32, 64, 256, 8, 2, false, 2, List.of(),
        QkNorm.WHOLE, 1e-5f, 10000f, 256, false, 0.01f, 0.001f, Routing.TOKEN_CHOICE, 0f, 0, 0, 257, 258, 0.02f);
    e = assertThrows(IllegalArgumentException.class, () -> HfConfig.toJson(sparse, DType.F32, "out.json"));
    assertTrue(e.getMessage().contains("every layer must be MoE"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> HfConfig.toJson(demo, DType.I32, "out.json"));
    assertTrue(e.getMessage().contains("F32, BF16 or F16"), e.getMessage());
  }

  @Test
  void generationConfigRoundTrip() {
    Path file = dir.resolve(GenerationConfig.FILE_NAME);
    new GenerationConfig(257, 258).write(file);
    assertEquals(new GenerationConfig(257, 258), GenerationConfig.read(file));
    new GenerationConfig(-1, 50279).write(file);
    assertEquals(new GenerationConfig(-1, 50279), GenerationConfig.read(file));
    new GenerationConfig(151643, List.of(151645, 151643)).write(file);
    GenerationConfig qwen = GenerationConfig.read(file);
    assertEquals(List.of(151645, 151643), qwen.eosTokenIds());
    assertEquals(151645, qwen.eosTokenId());
    assertEquals(-1, new GenerationConfig(1, -1).eosTokenId());
  }

  @Test
  void generationConfigRejectsBadIds() throws IOException {
    Path file = dir.resolve(GenerationConfig.FILE_NAME);
    Files.writeString(file, "{\"eos_token_id\": [2, \"x\"]}");
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> GenerationConfig.read(file));
    assertTrue(e.getMessage().contains(file.toString()) && e.getMessage().contains("eos_token_id"), e.getMessage());
  }
}
