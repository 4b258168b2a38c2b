package io.moe4j.infer;

import io.moe4j.io.CheckpointWeights;
import io.moe4j.io.GenerationConfig;
import io.moe4j.io.HfConfig;
import io.moe4j.io.TensorStore;
import io.moe4j.nn.ModelConfig;
import io.moe4j.nn.MoeTransformer;
import io.moe4j.ops.Backend;
import io.moe4j.tensor.DType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;

/**
 * A Hugging Face model directory loaded for inference: config.json, the weights (single file or
 * sharded; matrices kept in {@code weights} dtype), and the eos ids from generation_config.json and
 * config.json. The tokenizer is loaded separately (it does not depend on the backend).
 */
public final class LoadedModel implements AutoCloseable {

  private final Path directory;
  private final MoeTransformer model;
  private final Set<Integer> eosIds;

  private LoadedModel(Path directory, MoeTransformer model, Set<Integer> eosIds) {
    this.directory = directory;
    this.model = model;
    this.eosIds = Set.copyOf(eosIds);
  }

  public static LoadedModel load(Path directory, Backend backend, DType weights) {
    ModelConfig config = HfConfig.read(directory.resolve(HfConfig.FILE_NAME));
    MoeTransformer model;
    try (TensorStore store = TensorStore.open(directory)) {
      model = new MoeTransformer(backend, config, new CheckpointWeights(backend, store, weights));
    }
    Set<Integer> eos = new HashSet<>();
    if (config.eosTokenId() >= 0) eos.add(config.eosTokenId());
    Path generation = directory.resolve(GenerationConfig.FILE_NAME);
    if (Files.exists(generation)) {
      eos.addAll(GenerationConfig.read(generation).eosTokenIds()); // a list stops on any of them (Qwen3)
    }
    return new LoadedModel(directory, model, eos);
  }

  public Path directory() {
    return directory;
  }

  public MoeTransformer model() {
    return model;
  }

  public ModelConfig config() {
    return model.config();
  }

  public Set<Integer> eosIds() {
    return eosIds;
  }

  /**
   * Bytes of weights one token reads in a decode step: attention and dense projections, the router,
   * k experts per MoE layer (the active ones), the shared experts, the LM head, one embedding row.
   * Decode is memory-bound, so bandwidth / this is the tokens/s ceiling at batch 1.
   */
  public long activeWeightBytesPerToken() {
    return activeWeightBytesPerToken(config(), model.parameter("model.embed_tokens.weight").value().dtype().size());
  }

  /** {@link #activeWeightBytesPerToken()} for any config whose matrices take {@code element} bytes each. */
  public static long activeWeightBytesPerToken(ModelConfig c, long element) {
    long h = c.hiddenSize();
    long qWidth = (long) c.numHeads() * c.headDim();
    long kvWidth = (long) c.numKvHeads() * c.headDim();
    long params = h + (long) c.vocabSize() * h;
    for (int i = 0; i < c.numLayers(); i++) {
      params += h * (2 * qWidth + 2 * kvWidth);
      if (c.isMoeLayer(i)) {
        int k = c.routing() == ModelConfig.Routing.TOKEN_CHOICE ? c.expertsPerToken()
            : Math.max(1, Math.round(c.capacityFactor()));
        params += h * c.numExperts() + 3L * h * c.moeIntermediateSize() * k
            + 3L * h * c.numSharedExperts() * c.sharedExpertIntermediateSize();
      } else {
        params += 3L * h * c.denseIntermediateSize();
      }
    }
    return params * element;
  }

  @Override
  public void close() {
    model.close();
  }
}
