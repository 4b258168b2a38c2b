package io.moe4j.nn;

import java.util.List;
import java.util.Set;

/**
 * The shape and routing of a decoder-only MoE transformer. Field meanings follow Hugging Face
 * config.json (Mixtral, Qwen3-MoE, OLMoE; DESIGN.md §5); {@link io.moe4j.io.HfConfig} reads and
 * writes them with each architecture's own key names, moe4j-only fields as extra keys.
 *
 * @param architecture which HF family the tensor names and config keys follow
 * @param headDim per-head width (may differ from hiddenSize / numHeads, as in Qwen3-MoE)
 * @param denseIntermediateSize FFN width of the dense (non-MoE) layers
 * @param moeIntermediateSize FFN width of one expert
 * @param decoderSparseStep layer i is MoE iff (i + 1) % step == 0 and i is not in mlpOnlyLayers
 * @param qkNorm RMSNorm of q and k before RoPE: per head (Qwen3-MoE) or whole projection (OLMoE)
 * @param capacityFactor token choice: 0 = dropless, else capacity = ceil(cf · T · k / E) per expert;
 *     Expert Choice: each expert takes cf · T / E tokens of its routing group
 * @param numSharedExperts always-active SwiGLU experts added to the routed output (width
 *     sharedExpertIntermediateSize each), 0 for none
 */
public record ModelConfig(
    Architecture architecture,
    int vocabSize,
    int hiddenSize,
    int numLayers,
    int numHeads,
    int numKvHeads,
    int headDim,
    int denseIntermediateSize,
    int moeIntermediateSize,
    int numExperts,
    int expertsPerToken,
    boolean normTopkProb,
    int decoderSparseStep,
    List<Integer> mlpOnlyLayers,
    QkNorm qkNorm,
    float rmsNormEps,
    float ropeTheta,
    int maxPositionEmbeddings,
    boolean tieWordEmbeddings,
    float routerAuxLossCoef,
    float routerZLossCoef,
    Routing routing,
    float capacityFactor,
    int numSharedExperts,
    int sharedExpertIntermediateSize,
    int bosTokenId,
    int eosTokenId,
    float initializerRange) {

  public enum Architecture {
    MIXTRAL("mixtral", "MixtralForCausalLM"),
    QWEN3_MOE("qwen3_moe", "Qwen3MoeForCausalLM"),
    OLMOE("olmoe", "OlmoeForCausalLM");

    private final String modelType;
    private final String className;

    Architecture(String modelType, String className) {
      this.modelType = modelType;
      this.className = className;
    }

    /** config.json "model_type". */
    public String modelType() {
      return modelType;
    }

    /** config.json "architectures"[0]. */
    public String className() {
      return className;
    }
  }

  public enum QkNorm { NONE, PER_HEAD, WHOLE }

  public enum Routing { TOKEN_CHOICE, EXPERT_CHOICE }

  public ModelConfig {
    positive("vocabSize", vocabSize);
    positive("hiddenSize", hiddenSize);
    positive("numLayers", numLayers);
    positive("numHeads", numHeads);
    positive("numKvHeads", numKvHeads);
    positive("headDim", headDim);
    positive("decoderSparseStep", decoderSparseStep);
    if (architecture == null) throw new IllegalArgumentException("architecture must not be null");
    if (qkNorm == null) throw new IllegalArgumentException("qkNorm must not be null");
    if (routing == null) throw new IllegalArgumentException("routing must not be null");
    if (numHeads % numKvHeads != 0)
      throw new IllegalArgumentException(
          "numHeads must be a multiple of numKvHeads, got " + numHeads + " and " + numKvHeads);
    if (headDim % 2 != 0) throw new IllegalArgumentException("headDim must be even (RoPE pairs), got " + headDim);
    if (numExperts < 0) throw new IllegalArgumentException("numExperts must be >= 0, got " + numExperts);
    if (numExperts > 0 && (expertsPerToken < 1 || expertsPerToken > numExperts))
      throw new IllegalArgumentException(
          "expertsPerToken must be in [1, numExperts=" + numExperts + "], got " + expertsPerToken);
    if (numExperts > 0) positive("moeIntermediateSize", moeIntermediateSize);
    if (!(capacityFactor >= 0) || !Float.isFinite(capacityFactor))
      throw new IllegalArgumentException("capacityFactor must be finite and >= 0, got " + capacityFactor);
    if (routing == Routing.EXPERT_CHOICE && !(capacityFactor > 0))
      throw new IllegalArgumentException("expert-choice routing needs capacityFactor > 0, got " + capacityFactor);
    if (numSharedExperts < 0) throw new IllegalArgumentException("numSharedExperts must be >= 0, got " + numSharedExperts);
    if (numSharedExperts > 0) positive("sharedExpertIntermediateSize", sharedExpertIntermediateSize);
    if (!(rmsNormEps > 0)) throw new IllegalArgumentException("rmsNormEps must be > 0, got " + rmsNormEps);
    if (!(ropeTheta > 0)) throw new IllegalArgumentException("ropeTheta must be > 0, got " + ropeTheta);
    if (!(initializerRange > 0)) throw new IllegalArgumentException("initializerRange must be > 0, got " + initializerRange);
    mlpOnlyLayers = mlpOnlyLayers == null ? List.of() : List.copyOf(mlpOnlyLayers);
    for (int layer : mlpOnlyLayers)
      if (layer < 0 || layer >= numLayers)
        throw new IllegalArgumentException("mlpOnlyLayers entry " + layer + " is not a layer index in [0, " + numLayers + ")");
    boolean anyDense = false;
    for (int i = 0; i < numLayers; i++)
      anyDense |= !(numExperts > 0 && !mlpOnlyLayers.contains(i) && (i + 1) % decoderSparseStep == 0);
    if (anyDense) positive("denseIntermediateSize (some layers are dense)", denseIntermediateSize);
  }

  private static void positive(String name, int value) {
    if (value <= 0) throw new IllegalArgumentException(name + " must be > 0, got " + value);
  }

  /** Whether layer {@code layer} has a routed MoE FFN (else a dense SwiGLU). */
  public boolean isMoeLayer(int layer) {
    return numExperts > 0 && !Set.copyOf(mlpOnlyLayers).contains(layer) && (layer + 1) % decoderSparseStep == 0;
  }

  /** The same model with {@code numExperts} experts (growing a trained model). */
  public ModelConfig withNumExperts(int experts) {
    return new ModelConfig(architecture, vocabSize, hiddenSize, numLayers, numHeads, numKvHeads, headDim,
        denseIntermediateSize, moeIntermediateSize, experts, expertsPerToken, normTopkProb, decoderSparseStep,
        mlpOnlyLayers, qkNorm, rmsNormEps, ropeTheta, maxPositionEmbeddings, tieWordEmbeddings,
        routerAuxLossCoef, routerZLossCoef, routing, capacityFactor, numSharedExperts,
        sharedExpertIntermediateSize, bosTokenId, eosTokenId, initializerRange);
  }

  /** The same model for another tokenizer: its vocabulary size and bos / eos ids (-1: none). */
  public ModelConfig withVocabulary(int vocab, int bosId, int eosId) {
    return new ModelConfig(architecture, vocab, hiddenSize, numLayers, numHeads, numKvHeads, headDim,
        denseIntermediateSize, moeIntermediateSize, numExperts, expertsPerToken, normTopkProb, decoderSparseStep,
        mlpOnlyLayers, qkNorm, rmsNormEps, ropeTheta, maxPositionEmbeddings, tieWordEmbeddings,
        routerAuxLossCoef, routerZLossCoef, routing, capacityFactor, numSharedExperts,
        sharedExpertIntermediateSize, bosId, eosId, initializerRange);
  }

  /** The same model with another routing kind and capacity factor. */
  public ModelConfig withRouting(Routing kind, float factor) {
    return new ModelConfig(architecture, vocabSize, hiddenSize, numLayers, numHeads, numKvHeads, headDim,
        denseIntermediateSize, moeIntermediateSize, numExperts, expertsPerToken, normTopkProb, decoderSparseStep,
        mlpOnlyLayers, qkNorm, rmsNormEps, ropeTheta, maxPositionEmbeddings, tieWordEmbeddings,
        routerAuxLossCoef, routerZLossCoef, kind, factor, numSharedExperts,
        sharedExpertIntermediateSize, bosTokenId, eosTokenId, initializerRange);
  }

  /**
   * A small Mixtral-shaped MoE for byte-level data (vocabulary 259): the demo's model, 4 layers,
   * d = 128, 8 experts of width 256, top-2, 4 heads of 32 (2 kv heads).
   */
  public static ModelConfig demo() {
    return new ModelConfig(Architecture.MIXTRAL, 259, 128, 4, 4, 2, 32, 0, 256, 8, 2, true, 1, List.of(),
        QkNorm.NONE, 1e-5f, 10000f, 256, false, 0.01f, 0.001f, Routing.TOKEN_CHOICE, 0f, 0, 0, 257, 258, 0.02f);
  }

  /** The names {@link #preset} accepts. */
  public static final java.util.List<String> PRESETS = java.util.List.of("demo", "moe-100m", "moe-1b");

  /**
   * A named model: {@code demo} ({@link #demo()}); {@code moe-100m}, ~100M parameters: 6 layers,
   * d 512, 8 heads (4 kv), 8 experts of width 1024, top-2, vocab 16000; {@code moe-1b}, ~1B
   * parameters: 16 layers, d 1024, 16 heads (4 kv), 8 experts of width 2816, top-2, vocab 32000.
   * All Mixtral-shaped; give them a tokenizer's vocabulary with {@link #withVocabulary}.
   */
  public static ModelConfig preset(String name) {
    return switch (name) {
      case "demo" -> demo();
      case "moe-100m" -> new ModelConfig(Architecture.MIXTRAL, 16000, 512, 6, 8, 4, 64, 0, 1024, 8, 2, true, 1, List.of(),
          QkNorm.NONE, 1e-5f, 10000f, 2048, false, 0.01f, 0.001f, Routing.TOKEN_CHOICE, 0f, 0, 0, 1, 2, 0.02f);
      case "moe-1b" -> new ModelConfig(Architecture.MIXTRAL, 32000, 1024, 16, 16, 4, 64, 0, 2816, 8, 2, true, 1, List.of(),
          QkNorm.NONE, 1e-5f, 10000f, 4096, false, 0.01f, 0.001f, Routing.TOKEN_CHOICE, 0f, 0, 0, 1, 2, 0.02f);
      default -> throw new IllegalArgumentException("preset must be one of " + PRESETS + ", got '" + name + "'");
    };
  }
}
