package io.moe4j.io;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moe4j.nn.ModelConfig;
import io.moe4j.nn.ModelConfig.Architecture;
import io.moe4j.nn.ModelConfig.QkNorm;
import io.moe4j.nn.ModelConfig.Routing;
import io.moe4j.tensor.DType;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * {@link ModelConfig} ⇄ Hugging Face config.json of Mixtral, Qwen3-MoE and OLMoE, each with its own
 * key names (transformers' MixtralConfig, Qwen3MoeConfig, OlmoeConfig). Keys missing from a file take
 * that class's defaults, as transformers does. Features the model does not implement (another
 * activation, attention bias, sliding window, RoPE scaling, clip_qkv, router jitter) are rejected
 * when set. moe4j-only settings are extra keys prefixed {@code moe4j_}, which transformers keeps as
 * plain attributes.
 */
public final class HfConfig {

  public static final String FILE_NAME = "config.json";

  static final String ROUTING = "moe4j_routing";
  static final String CAPACITY_FACTOR = "moe4j_capacity_factor";
  static final String SHARED_EXPERTS = "moe4j_num_shared_experts";
  static final String SHARED_WIDTH = "moe4j_shared_expert_intermediate_size";
  static final String Z_LOSS = "moe4j_router_z_loss_coef";
  static final String DENSE_WIDTH = "moe4j_dense_intermediate_size";

  private static final ObjectMapper JSON = new ObjectMapper()
      .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
      .enable(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS)
      .enable(SerializationFeature.INDENT_OUTPUT);

  private HfConfig() {}

  // ---- reading ------------------------------------------------------------------------------

  public static ModelConfig read(Path configJson) {
    String text;
    try {
      text = Files.readString(configJson, StandardCharsets.UTF_8);
    } catch (NoSuchFileException e) {
      throw new IllegalArgumentException("config file " + configJson + " does not exist");
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read config file " + configJson + ": " + e.getMessage(), e);
    }
    return parse(text, configJson.toString());
  }

  /** Parses config.json text; {@code source} names it in errors. */
  public static ModelConfig parse(String text, String source) {
    JsonNode root;
    try {
      root = JSON.readTree(text);
    } catch (JsonProcessingException e) {
      throw new IllegalArgumentException("config file " + source + " is not well-formed JSON: " + e.getOriginalMessage());
    }
    if (root == null || !root.isObject()) throw new IllegalArgumentException("config file " + source + " must be a JSON object");
    Fields f = new Fields(root, source);
    Architecture arch = architecture(f);
    try {
      return switch (arch) {
        case MIXTRAL -> readMixtral(f);
        case QWEN3_MOE -> readQwen3Moe(f);
        case OLMOE -> readOlmoe(f);
      };
    } catch (IllegalArgumentException e) {
      if (e.getMessage() != null && e.getMessage().startsWith("config file ")) throw e;
      throw new IllegalArgumentException("config file " + source + " describes an invalid model: " + e.getMessage(), e);
    }
  }

  private static String supported() {
    List<String> out = new ArrayList<>();
    for (Architecture a : Architecture.values()) out.add(a.modelType() + " (" + a.className() + ")");
    return String.join(", ", out);
  }

  private static Architecture architecture(Fields f) {
    JsonNode type = f.root.get("model_type");
    JsonNode classes = f.root.get("architectures");
    Architecture byType = null;
    if (type != null && !type.isNull()) {
      String t = type.asText();
      byType = Arrays.stream(Architecture.values()).filter(a -> a.modelType().equals(t)).findFirst()
          .orElseThrow(() -> f.error("model_type '" + t + "' is not supported; supported: " + supported()));
    }
    Architecture byClass = null;
    if (classes != null && classes.isArray() && classes.size() > 0) {
      String c = classes.get(0).asText();
      byClass = Arrays.stream(Architecture.values()).filter(a -> a.className().equals(c)).findFirst()
          .orElseThrow(() -> f.error("architectures[0] '" + c + "' is not supported; supported: " + supported()));
    }
    if (byType == null && byClass == null)
      throw f.error("has neither \"model_type\" nor \"architectures\"; supported: " + supported());
    if (byType != null && byClass != null && byType != byClass)
      throw f.error("model_type '" + byType.modelType() + "' contradicts architectures[0] '" + byClass.className() + "'");
    return byType != null ? byType : byClass;
  }

  private static void rejectUnsupported(Fields f, boolean sliding) {
    String act = f.string("hidden_act", "silu");
    if (!act.equals("silu")) throw f.error("hidden_act '" + act + "' is not supported (only silu: SwiGLU experts)");
    if (f.bool("attention_bias", false)) throw f.error("attention_bias true is not supported (q/k/v/o projections have no bias)");
    if (f.present("rope_scaling")) throw f.error("rope_scaling " + f.root.get("rope_scaling") + " is not supported (plain RoPE only)");
    JsonNode rope = f.root.get("rope_parameters");
    if (rope != null && rope.isObject() && rope.has("rope_type") && !rope.get("rope_type").asText().equals("default"))
      throw f.error("rope_parameters.rope_type '" + rope.get("rope_type").asText() + "' is not supported (plain RoPE only)");
    if (sliding && f.present("sliding_window"))
      throw f.error("sliding_window " + f.root.get("sliding_window") + " is not supported (full causal attention only)");
  }

  private static float ropeTheta(Fields f, float fallback) {
    JsonNode rope = f.root.get("rope_parameters");
    if (!f.present("rope_theta") && rope != null && rope.isObject() && rope.has("rope_theta"))
      return new Fields(rope, f.source + " rope_parameters").floatValue("rope_theta", fallback);
    return f.floatValue("rope_theta", fallback);
  }

  private static Routing routing(Fields f) {
    String r = f.string(ROUTING, "token_choice");
    return switch (r) {
      case "token_choice" -> Routing.TOKEN_CHOICE;
      case "expert_choice" -> Routing.EXPERT_CHOICE;
      default -> throw f.error(ROUTING + " must be \"token_choice\" or \"expert_choice\", got '" + r + "'");
    };
  }

  private static int headDim(Fields f, int hidden, int heads) {
    return f.integer("head_dim", heads > 0 && hidden % heads == 0 ? hidden / heads : 0);
  }

  /**
   * The expert count under either of its names: transformers maps one onto the other in each config
   * class (attribute_map), and which one a file holds depends on who wrote it; e.g. Qwen's published
   * Qwen3-MoE configs say "num_experts" while transformers 5 saves "num_local_experts".
   */
  private static int experts(Fields f, String key, String alias, int fallback) {
    if (f.present(key) && f.present(alias) && f.integer(key, 0) != f.integer(alias, 0))
      throw f.error("\"" + key + "\" " + f.root.get(key) + " contradicts \"" + alias + "\" " + f.root.get(alias)
          + " (transformers treats them as the same setting)");
    return f.present(key) ? f.integer(key, fallback) : f.integer(alias, fallback);
  }

  private static ModelConfig readMixtral(Fields f) {
    rejectUnsupported(f, true);
    float jitter = f.floatValue("router_jitter_noise", 0f);
    if (jitter != 0f) throw f.error("router_jitter_noise " + jitter + " is not supported (must be 0)");
    int hidden = f.integer("hidden_size", 4096);
    int heads = f.integer("num_attention_heads", 32);
    return new ModelConfig(Architecture.MIXTRAL,
        f.integer("vocab_size", 32000), hidden, f.integer("num_hidden_layers", 32), heads,
        f.integer("num_key_value_heads", 8), headDim(f, hidden, heads),
        f.integer(DENSE_WIDTH, 0), f.integer("intermediate_size", 14336),
        experts(f, "num_local_experts", "num_experts", 8), f.integer("num_experts_per_tok", 2),
        true, 1, List.of(), QkNorm.NONE,
        f.floatValue("rms_norm_eps", 1e-5f), ropeTheta(f, 1e6f), f.integer("max_position_embeddings", 4096 * 32),
        f.bool("tie_word_embeddings", false), f.floatValue("router_aux_loss_coef", 0.001f),
        f.floatValue(Z_LOSS, 0f), routing(f), f.floatValue(CAPACITY_FACTOR, 0f),
        f.integer(SHARED_EXPERTS, 0), f.integer(SHARED_WIDTH, 0),
        f.tokenId("bos_token_id", 1), f.tokenId("eos_token_id", 2), f.floatValue("initializer_range", 0.02f));
  }

  private static ModelConfig readQwen3Moe(Fields f) {
    rejectUnsupported(f, false);
    if (f.bool("use_sliding_window", false))
      throw f.error("use_sliding_window true is not supported (full causal attention only)");
    int hidden = f.integer("hidden_size", 2048);
    int heads = f.integer("num_attention_heads", 32);
    return new ModelConfig(Architecture.QWEN3_MOE,
        f.integer("vocab_size", 151936), hidden, f.integer("num_hidden_layers", 24), heads,
        f.integer("num_key_value_heads", 4), headDim(f, hidden, heads),
        f.integer("intermediate_size", 6144), f.integer("moe_intermediate_size", 768),
        experts(f, "num_experts", "num_local_experts", 128), f.integer("num_experts_per_tok", 8),
        f.bool("norm_topk_prob", false), f.integer("decoder_sparse_step", 1), f.intList("mlp_only_layers"),
        QkNorm.PER_HEAD,
        f.floatValue("rms_norm_eps", 1e-6f), ropeTheta(f, 10000f), f.integer("max_position_embeddings", 32768),
        f.bool("tie_word_embeddings", false), f.floatValue("router_aux_loss_coef", 0.001f),
        f.floatValue(Z_LOSS, 0f), routing(f), f.floatValue(CAPACITY_FACTOR, 0f),
        f.integer(SHARED_EXPERTS, 0), f.integer(SHARED_WIDTH, 0),
        f.tokenId("bos_token_id", -1), f.tokenId("eos_token_id", -1), f.floatValue("initializer_range", 0.02f));
  }

  private static ModelConfig readOlmoe(Fields f) {
    rejectUnsupported(f, false);
    if (f.present("clip_qkv"))
      throw f.error("clip_qkv " + f.root.get("clip_qkv") + " is not supported (must be null: q/k/v are not clipped)");
    int hidden = f.integer("hidden_size", 2048);
    int heads = f.integer("num_attention_heads", 16);
    if (f.present("head_dim") && heads > 0 && f.integer("head_dim", 0) * heads != hidden)
      throw f.error("head_dim " + f.integer("head_dim", 0) + " must equal hidden_size / num_attention_heads for olmoe");
    return new ModelConfig(Architecture.OLMOE,
        f.integer("vocab_size", 50304), hidden, f.integer("num_hidden_layers", 16), heads,
        f.integer("num_key_value_heads", heads), headDim(f, hidden, heads),
        f.integer(DENSE_WIDTH, 0), f.integer("intermediate_size", 2048),
        experts(f, "num_experts", "num_local_experts", 64), f.integer("num_experts_per_tok", 8),
        f.bool("norm_topk_prob", false), 1, List.of(), QkNorm.WHOLE,
        f.floatValue("rms_norm_eps", 1e-5f), ropeTheta(f, 10000f), f.integer("max_position_embeddings", 4096),
        f.bool("tie_word_embeddings", false), f.floatValue("router_aux_loss_coef", 0.01f),
        f.floatValue(Z_LOSS, 0f), routing(f), f.floatValue(CAPACITY_FACTOR, 0f),
        f.integer(SHARED_EXPERTS, 0), f.integer(SHARED_WIDTH, 0),
        f.tokenId("bos_token_id", -1), f.tokenId("eos_token_id", 50279), f.floatValue("initializer_range", 0.02f));
  }

  /** Typed access to the keys of one JSON object, with errors naming the file and key. */
  private static final class Fields {
    final JsonNode root;
    final String source;

    Fields(JsonNode root, String source) {
      this.root = root;
      this.source = source;
    }

    IllegalArgumentException error(String message) {
      return new IllegalArgumentException("config file " + source + ": " + message);
    }

    boolean present(String key) {
      JsonNode n = root.get(key);
      return n != null && !n.isNull();
    }

    int integer(String key, int fallback) {
      JsonNode n = root.get(key);
      if (n == null || n.isNull()) return fallback;
      if (!n.isIntegralNumber() || !n.canConvertToInt()) throw error("\"" + key + "\" must be an integer, got " + n);
      return n.intValue();
    }

    /** Token ids: null means none (-1); a list (several eos ids) contributes its first entry. */
    int tokenId(String key, int fallback) {
      JsonNode n = root.get(key);
      if (n == null) return fallback;
      if (n.isNull()) return -1;
      if (n.isArray()) {
        if (n.isEmpty()) return -1;
        n = n.get(0);
      }
      if (!n.isIntegralNumber() || !n.canConvertToInt() || n.intValue() < 0)
        throw error("\"" + key + "\" must be a token id >= 0, a list of them, or null, got " + root.get(key));
      return n.intValue();
    }

    float floatValue(String key, float fallback) {
      JsonNode n = root.get(key);
      if (n == null || n.isNull()) return fallback;
      if (!n.isNumber()) throw error("\"" + key + "\" must be a number, got " + n);
      // Through the decimal text, so the float nearest to what is written comes back exactly.
      return Float.parseFloat(n.isBigDecimal() ? n.decimalValue().toString() : n.asText());
    }

    boolean bool(String key, boolean fallback) {
      JsonNode n = root.get(key);
      if (n == null || n.isNull()) return fallback;
      if (!n.isBoolean()) throw error("\"" + key + "\" must be true or false, got " + n);
      return n.booleanValue();
    }

    String string(String key, String fallback) {
      JsonNode n = root.get(key);
      if (n == null || n.isNull()) return fallback;
      if (!n.isTextual()) throw error("\"" + key + "\" must be a string, got " + n);
      return n.textValue();
    }

    List<Integer> intList(String key) {
      JsonNode n = root.get(key);
      if (n == null || n.isNull()) return List.of();
      if (!n.isArray()) throw error("\"" + key + "\" must be a list of integers, got " + n);
      List<Integer> out = new ArrayList<>();
      for (JsonNode e : n) {
        if (!e.isIntegralNumber() || !e.canConvertToInt()) throw error("\"" + key + "\" must be a list of integers, got " + n);
        out.add(e.intValue());
      }
      return out;
    }
  }

  // ---- writing ------------------------------------------------------------------------------

  /** Writes config.json with "torch_dtype": "float32". */
  public static void write(ModelConfig config, Path configJson) {
    write(config, configJson, DType.F32);
  }

  /** Writes config.json (atomically); {@code weightsDtype} becomes "torch_dtype". */
  public static void write(ModelConfig config, Path configJson, DType weightsDtype) {
    AtomicFiles.writeBytes(configJson, toJson(config, weightsDtype, configJson.toString()).getBytes(StandardCharsets.UTF_8));
  }

  /** The config.json text; {@code target} names the destination in errors. */
  public static String toJson(ModelConfig c, DType weightsDtype, String target) {
    checkRepresentable(c, target);
    ObjectNode o = JSON.createObjectNode();
    Architecture a = c.architecture();
    o.putArray("architectures").add(a.className());
    o.put("model_type", a.modelType());
    o.put("vocab_size", c.vocabSize());
    o.put("hidden_size", c.hiddenSize());
    o.put("num_hidden_layers", c.numLayers());
    o.put("num_attention_heads", c.numHeads());
    o.put("num_key_value_heads", c.numKvHeads());
    if (a != Architecture.OLMOE) o.put("head_dim", c.headDim());
    o.put("hidden_act", "silu");
    switch (a) {
      case MIXTRAL -> {
        o.put("intermediate_size", c.moeIntermediateSize());
        o.put("num_local_experts", c.numExperts());
        o.put("sliding_window", (String) null);
        o.put("router_jitter_noise", 0.0f);
      }
      case QWEN3_MOE -> {
        o.put("intermediate_size", c.denseIntermediateSize());
        o.put("moe_intermediate_size", c.moeIntermediateSize());
        o.put("num_experts", c.numExperts());
        o.put("norm_topk_prob", c.normTopkProb());
        o.put("decoder_sparse_step", c.decoderSparseStep());
        ArrayNode mlpOnly = o.putArray("mlp_only_layers");
        c.mlpOnlyLayers().forEach(mlpOnly::add);
        o.put("attention_bias", false);
        o.put("use_sliding_window", false);
        o.put("sliding_window", (String) null);
        o.put("max_window_layers", c.numLayers());
      }
      case OLMOE -> {
        o.put("intermediate_size", c.moeIntermediateSize());
        o.put("num_experts", c.numExperts());
        o.put("norm_topk_prob", c.normTopkProb());
        o.put("attention_bias", false);
        o.put("clip_qkv", (String) null);
      }
    }
    o.put("num_experts_per_tok", c.expertsPerToken());
    o.put("router_aux_loss_coef", c.routerAuxLossCoef());
    o.put("output_router_logits", false);
    o.put("rms_norm_eps", c.rmsNormEps());
    o.put("rope_theta", c.ropeTheta());
    o.put("rope_scaling", (String) null);
    o.put("max_position_embeddings", c.maxPositionEmbeddings());
    o.put("tie_word_embeddings", c.tieWordEmbeddings());
    o.put("initializer_range", c.initializerRange());
    o.put("attention_dropout", 0.0f);
    o.put("use_cache", true);
    putTokenId(o, "bos_token_id", c.bosTokenId());
    putTokenId(o, "eos_token_id", c.eosTokenId());
    o.put("torch_dtype", torchDtype(weightsDtype));
    o.put(ROUTING, c.routing().name().toLowerCase(Locale.ROOT));
    o.put(CAPACITY_FACTOR, c.capacityFactor());
    o.put(Z_LOSS, c.routerZLossCoef());
    o.put(SHARED_EXPERTS, c.numSharedExperts());
    o.put(SHARED_WIDTH, c.sharedExpertIntermediateSize());
    if (a != Architecture.QWEN3_MOE && c.denseIntermediateSize() != 0) o.put(DENSE_WIDTH, c.denseIntermediateSize());
    try {
      return JSON.writeValueAsString(o) + "\n";
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("cannot serialize config for " + target, e);
    }
  }

  private static void putTokenId(ObjectNode o, String key, int id) {
    if (id < 0) o.putNull(key);
    else o.put(key, id);
  }

  static String torchDtype(DType dtype) {
    return switch (dtype) {
      case F32 -> "float32";
      case BF16 -> "bfloat16";
      case F16 -> "float16";
      default -> throw new IllegalArgumentException("weights dtype must be F32, BF16 or F16, got " + dtype);
    };
  }

  /**
   * Settings each architecture's HF config cannot express are refused rather than silently dropped:
   * the written file must describe the same model to transformers as to moe4j.
   */
  private static void checkRepresentable(ModelConfig c, String target) {
    Architecture a = c.architecture();
    String prefix = "cannot write " + target + " as " + a.modelType() + ": ";
    QkNorm expectedNorm = switch (a) {
      case MIXTRAL -> QkNorm.NONE;
      case QWEN3_MOE -> QkNorm.PER_HEAD;
      case OLMOE -> QkNorm.WHOLE;
    };
    if (c.qkNorm() != expectedNorm)
      throw new IllegalArgumentException(prefix + "qkNorm must be " + expectedNorm + " for this architecture, got " + c.qkNorm());
    if (a == Architecture.QWEN3_MOE) return;
    if (c.numExperts() == 0) throw new IllegalArgumentException(prefix + "numExperts must be > 0 (every layer is MoE), got 0");
    if (c.decoderSparseStep() != 1 || !c.mlpOnlyLayers().isEmpty())
      throw new IllegalArgumentException(prefix + "every layer must be MoE (decoderSparseStep 1, no mlpOnlyLayers), got step "
          + c.decoderSparseStep() + " and mlpOnlyLayers " + c.mlpOnlyLayers());
    if (a == Architecture.MIXTRAL && !c.normTopkProb())
      throw new IllegalArgumentException(prefix + "Mixtral always renormalizes the top-k weights (normTopkProb must be true)");
    if (a == Architecture.OLMOE && (long) c.headDim() * c.numHeads() != c.hiddenSize())
      throw new IllegalArgumentException(prefix + "headDim must be hiddenSize / numHeads = " + c.hiddenSize() + " / " + c.numHeads()
          + ", got " + c.headDim());
  }
}
