package io.moe4j.nn;

import io.moe4j.ops.Backend;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Scope;
import io.moe4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Decoder-only MoE transformer (DESIGN.md §5): embedding → blocks → final RMSNorm → LM head (tied or
 * not) → softmax cross-entropy. All parameters and activations are F32 on the model's backend.
 *
 * <p>One step is {@link #forward} (activations for backward are kept in a per-step scope) then
 * {@link #backward} (gradients accumulated into each {@link Parameter#grad()}, activations freed),
 * so a user's own loop can drive it with any optimizer; {@link #zeroGrad} between optimizer steps.
 */
public final class MoeTransformer implements AutoCloseable {

  /** Targets equal to this are not predicted (prompt positions, padding). */
  public static final int IGNORE_INDEX = -100;

  private final Backend backend;
  private ModelConfig config;
  private final Parameter embedding;
  private final List<DecoderBlock> blocks = new ArrayList<>();
  private final RmsNorm finalNorm;
  private final Parameter lmHead; // the embedding when tied
  private final OpTimer timer;
  private final List<Parameter> retired = new ArrayList<>();

  // the step in flight
  private Scope saved;
  private int batch;
  private int seq;
  private Tensor ids;
  private Tensor finalHidden;
  private Tensor logits;
  private Tensor targets;
  private Tensor logSumExp;
  private long targetCount;
  private Tensor losses;
  private Tensor positions;
  private boolean causalRouting;
  private final List<Tensor> blockInputs = new ArrayList<>();
  private boolean recompute;
  private boolean mixedPrecision;
  private Tensor zeroSource;

  /** A freshly initialized model (seeded: the same seed gives the same values). */
  public MoeTransformer(Backend backend, ModelConfig config, long seed) {
    this(backend, config, new RandomInit(backend, seed, config.initializerRange()));
  }

  /** A model whose parameters come from {@code params} (e.g. {@code io.moe4j.io.CheckpointWeights}). */
  public MoeTransformer(Backend backend, ModelConfig config, ParameterSource source) {
    this.backend = backend;
    this.config = config;
    this.timer = new OpTimer(backend);
    List<Parameter> created = new ArrayList<>();
    ParameterSource params = (name, kind, shape) -> {
      Parameter p = source.create(name, kind, shape);
      created.add(p);
      return p;
    };
    try {
      embedding = params.create("model.embed_tokens.weight", ParameterSource.Kind.EMBEDDING, config.vocabSize(),
          config.hiddenSize());
      for (int i = 0; i < config.numLayers(); i++) blocks.add(new DecoderBlock(backend, config, i, params, timer));
      finalNorm = new RmsNorm(backend, params.create("model.norm.weight", ParameterSource.Kind.NORM, config.hiddenSize()),
          config.rmsNormEps());
      lmHead = config.tieWordEmbeddings() ? embedding
          : params.create("lm_head.weight", ParameterSource.Kind.MATRIX, config.vocabSize(), config.hiddenSize());
    } catch (RuntimeException e) {
      created.forEach(Parameter::close); // a failed load (missing or mis-shaped tensor) leaks nothing
      throw e;
    }
  }

  public ModelConfig config() {
    return config;
  }

  public Backend backend() {
    return backend;
  }

  /** Every parameter once (a tied LM head is the embedding), in a stable order. */
  public List<Parameter> parameters() {
    List<Parameter> list = new ArrayList<>();
    list.add(embedding);
    for (DecoderBlock block : blocks) list.addAll(block.parameters());
    list.add(finalNorm.weight());
    if (lmHead != embedding) list.add(lmHead);
    return Collections.unmodifiableList(list);
  }

  public Parameter parameter(String name) {
    for (Parameter p : parameters()) if (p.name().equals(name)) return p;
    throw new IllegalArgumentException("no parameter named '" + name + "'");
  }

  /**
   * Forward over tokens [B·S] (row-major [B, S]); targets [B·S] ({@link #IGNORE_INDEX} = not
   * predicted) or null (no loss). Keeps the activations for {@link #backward}.
   */
  public ForwardResult forward(int[] tokens, int[] targets, int batchSize, int seqLen) {
    return forward(tokens, targets, batchSize, seqLen, false);
  }

  /** causalRouting: Expert-Choice layers use their causal fallback (scoring, generation). */
  private ForwardResult forward(int[] tokens, int[] targets, int batchSize, int seqLen, boolean causalRouting) {
    checkBatch(tokens, targets, batchSize, seqLen);
    discardActivations();
    long t0 = timer.start();
    saved = new Scope();
    batch = batchSize;
    seq = seqLen;
    long rows = (long) batchSize * seqLen;
    ids = saved.add(backend.fromInts(tokens, rows));
    int[] positionValues = new int[tokens.length];
    for (int i = 0; i < positionValues.length; i++) positionValues[i] = i % seqLen;
    Tensor positions = saved.add(backend.fromInts(positionValues, rows));
    Tensor x = embed(ids, saved);
    float[] routerLosses = new float[2];
    List<LayerRouting> routing = new ArrayList<>();
    blockInputs.clear();
    this.positions = positions;
    this.causalRouting = causalRouting;
    for (DecoderBlock block : blocks) {
      blockInputs.add(x);
      if (!recompute) {
        x = block.forward(x, batchSize, seqLen, positions, saved, routerLosses, routing, causalRouting);
        continue;
      }
      try (Scope blockScope = new Scope()) { // only the block's input stays; backward runs it again
        Tensor out = block.forward(x, batchSize, seqLen, positions, blockScope, routerLosses, routing, causalRouting);
        x = saved.add(backend.empty(DType.F32, out.shape()));
        backend.copy(out, x);
      }
    }
    finalHidden = finalNorm.forward(x, saved);
    logits = saved.add(backend.empty(DType.F32, rows, config.vocabSize()));
    Linear.gemm(backend, finalHidden, lmHead.computeValue(), logits, false);
    float loss = Float.NaN;
    this.targets = null;
    if (targets != null) {
      this.targets = saved.add(backend.fromInts(targets, rows));
      losses = saved.add(backend.empty(DType.F32, rows));
      logSumExp = saved.add(backend.empty(DType.F32, rows));
      backend.crossEntropyForward(logits, this.targets, IGNORE_INDEX, losses, logSumExp);
      targetCount = 0;
      for (int t : targets) if (t != IGNORE_INDEX) targetCount++;
      double sum = 0;
      for (float l : backend.toFloats(losses)) sum += l;
      loss = targetCount == 0 ? 0f : (float) (sum / targetCount);
    }
    timer.stop(OpTimer.Family.TOTAL, t0);
    return new ForwardResult(loss, routerLosses[0], routerLosses[1], targets == null ? 0 : targetCount,
        List.copyOf(routing));
  }

  /** x F32 [rows, hidden] = embedding rows of ids (a BF16 table is looked up, then widened). */
  private Tensor embed(Tensor ids, Scope scope) {
    Tensor x = scope.add(backend.empty(DType.F32, ids.numel(), config.hiddenSize()));
    if (embedding.value().dtype() == DType.F32) {
      backend.embeddingForward(embedding.value(), ids, x);
    } else {
      try (Tensor narrow = backend.empty(embedding.value().dtype(), x.shape())) {
        backend.embeddingForward(embedding.value(), ids, narrow);
        backend.cast(narrow, x);
      }
    }
    return x;
  }

  private void checkBatch(int[] tokens, int[] targets, int batchSize, int seqLen) {
    if (batchSize <= 0) throw new IllegalArgumentException("batchSize must be > 0, got " + batchSize);
    if (seqLen <= 0) throw new IllegalArgumentException("seqLen must be > 0, got " + seqLen);
    long n = (long) batchSize * seqLen;
    if (tokens == null || tokens.length != n)
      throw new IllegalArgumentException("tokens must hold batchSize*seqLen = " + n + " ids, got "
          + (tokens == null ? "null" : tokens.length));
    if (targets != null && targets.length != n)
      throw new IllegalArgumentException("targets must hold batchSize*seqLen = " + n + " ids, got " + targets.length);
    for (int i = 0; i < tokens.length; i++)
      if (tokens[i] < 0 || tokens[i] >= config.vocabSize())
        throw new IllegalArgumentException("tokens[" + i + "] must be in [0, " + config.vocabSize() + "), got " + tokens[i]);
    if (targets != null)
      for (int i = 0; i < targets.length; i++)
        if (targets[i] != IGNORE_INDEX && (targets[i] < 0 || targets[i] >= config.vocabSize()))
          throw new IllegalArgumentException("targets[" + i + "] must be in [0, " + config.vocabSize() + ") or "
              + IGNORE_INDEX + ", got " + targets[i]);
  }

  /**
   * Accumulates the gradient of lossScale · (loss + auxLoss + zLoss) of the last forward into the
   * parameters' gradients, then frees the step's activations.
   */
  public void backward(float lossScale) {
    if (saved == null || targets == null)
      throw new IllegalStateException("backward needs a forward with targets first");
    if (!embedding.hasGrad()) throw new IllegalStateException("this model was loaded for inference: it has no gradients");
    long t0 = timer.start();
    long rows = (long) batch * seq;
    try (Scope tmp = new Scope()) {
      float gradScale = targetCount == 0 ? 0f : lossScale / targetCount;
      backend.crossEntropyBackward(logits, targets, logSumExp, IGNORE_INDEX, gradScale, logits);
      Tensor dLogits = logits;
      Tensor dHidden = tmp.add(backend.empty(DType.F32, rows, config.hiddenSize()));
      Linear.weightGradients(backend, lmHead, null, dLogits, finalHidden, dHidden, false);
      Tensor dx = tmp.add(backend.empty(DType.F32, rows, config.hiddenSize()));
      finalNorm.backward(dHidden, dx);
      Tensor dIn = dHidden; // reused as the other ping-pong buffer
      for (int i = blocks.size() - 1; i >= 0; i--) {
        if (recompute) {
          try (Scope blockScope = new Scope()) {
            blocks.get(i).forward(blockInputs.get(i), batch, seq, positions, blockScope, null, null, causalRouting);
            blocks.get(i).backward(dx, dIn, lossScale);
          }
        } else {
          blocks.get(i).backward(dx, dIn, lossScale);
        }
        Tensor swap = dx;
        dx = dIn;
        dIn = swap;
      }
      backend.embeddingBackward(dx, ids, embedding.grad(), true);
    } finally {
      timer.stop(OpTimer.Family.TOTAL, t0);
      discardActivations();
    }
  }

  /** Frees the activations of a forward that will not be followed by backward. */
  public void discardActivations() {
    if (saved != null) {
      Scope s = saved;
      saved = null;
      s.close();
    }
  }

  /** Sets every gradient to zero. */
  public void zeroGrad() {
    if (!embedding.hasGrad()) throw new IllegalStateException("this model was loaded for inference: it has no gradients");
    long largest = 0;
    for (Parameter p : parameters()) largest = Math.max(largest, p.numel());
    if (zeroSource == null || zeroSource.numel() < largest) {
      if (zeroSource != null) zeroSource.close();
      zeroSource = backend.zeros(DType.F32, largest);
    }
    for (Parameter p : parameters()) backend.copy(zeroSource.view(0, p.grad().shape()), p.grad());
  }

  /**
   * Inference forward with nothing kept: logits [B·S·vocab] on the host. Expert-Choice layers route
   * causally (their token-choice fallback), as in generation.
   */
  public float[] logits(int[] tokens, int batchSize, int seqLen) {
    forward(tokens, null, batchSize, seqLen, true);
    try {
      return backend.toFloats(logits);
    } finally {
      discardActivations();
    }
  }

  /**
   * Per-position negative log-likelihood of targets (0 where ignored), computed in one forward with
   * causal routing: scoring a text.
   */
  public float[] tokenLosses(int[] tokens, int[] targets, int batchSize, int seqLen) {
    if (targets == null) throw new IllegalArgumentException("targets must not be null");
    forward(tokens, targets, batchSize, seqLen, true);
    try {
      return backend.toFloats(losses);
    } finally {
      discardActivations();
    }
  }

  /** An empty KV cache for {@code batch} sequences of up to {@code maxSeq} tokens. */
  public KvCache newKvCache(int batch, int maxSeq) {
    return new KvCache(backend, config, batch, maxSeq);
  }

  /**
   * Runs one prompt per cache sequence through the model (right-padded to the longest, flash
   * attention), fills the empty cache, and returns the logits [B·vocab] after each prompt's last token.
   */
  public float[] prefill(int[][] prompts, KvCache cache) {
    if (prompts.length != cache.batch())
      throw new IllegalArgumentException("prompts must hold one prompt per cache sequence (" + cache.batch() + "), got "
          + prompts.length);
    int longest = 0;
    for (int b = 0; b < prompts.length; b++) {
      if (cache.length(b) != 0) throw new IllegalStateException("prefill needs an empty cache, " + cache);
      if (prompts[b].length == 0) throw new IllegalArgumentException("prompt " + b + " is empty (add a bos token)");
      longest = Math.max(longest, prompts[b].length);
    }
    if (longest > cache.maxSeq())
      throw new IllegalArgumentException("the longest prompt has " + longest + " tokens, the cache holds " + cache.maxSeq());
    int batch = prompts.length;
    int[] tokens = new int[batch * longest];
    int[] positions = new int[batch * longest];
    int[] lastRows = new int[batch];
    int[] lengths = new int[batch];
    for (int b = 0; b < batch; b++) {
      System.arraycopy(prompts[b], 0, tokens, b * longest, prompts[b].length);
      for (int i = 0; i < longest; i++) positions[b * longest + i] = i;
      lastRows[b] = b * longest + prompts[b].length - 1;
      lengths[b] = prompts[b].length;
    }
    checkBatch(tokens, null, batch, longest);
    float[] result = runCached(tokens, positions, lastRows, batch, longest, cache, true);
    cache.setLengths(lengths);
    return result;
  }

  /** Appends one token per sequence and returns the next-token logits [B·vocab]. */
  public float[] decode(int[] tokens, KvCache cache) {
    int batch = cache.batch();
    if (tokens.length != batch)
      throw new IllegalArgumentException("tokens must hold one token per cache sequence (" + batch + "), got " + tokens.length);
    checkBatch(tokens, null, batch, 1);
    int[] lengths = cache.lengths();
    int[] rows = new int[batch];
    for (int b = 0; b < batch; b++) {
      if (lengths[b] >= cache.maxSeq())
        throw new IllegalStateException("sequence " + b + " fills the cache (" + cache.maxSeq() + " tokens)");
      rows[b] = b;
    }
    float[] result = runCached(tokens, lengths, rows, batch, 1, cache, false);
    for (int b = 0; b < batch; b++) lengths[b]++;
    cache.setLengths(lengths);
    return result;
  }

  private float[] runCached(int[] tokens, int[] positionValues, int[] outputRows, int batch, int n, KvCache cache,
      boolean fresh) {
    discardActivations();
    long t0 = timer.start();
    try (Scope tmp = new Scope()) {
      Tensor ids = tmp.add(backend.fromInts(tokens, tokens.length));
      Tensor positions = tmp.add(backend.fromInts(positionValues, positionValues.length));
      Tensor x = embed(ids, tmp);
      for (DecoderBlock block : blocks) x = block.forwardCached(x, batch, n, positions, cache, fresh, tmp);
      Tensor picked = x;
      if (outputRows.length != x.dim(0)) {
        picked = tmp.add(backend.empty(DType.F32, outputRows.length, config.hiddenSize()));
        backend.routeGather(x, tmp.add(backend.fromInts(outputRows, outputRows.length)), picked);
      }
      Tensor normed = finalNorm.forward(picked, tmp);
      Tensor out = tmp.add(backend.empty(DType.F32, outputRows.length, config.vocabSize()));
      Linear.gemm(backend, normed, lmHead.computeValue(), out, false);
      return backend.toFloats(out);
    } finally {
      timer.stop(OpTimer.Family.TOTAL, t0);
    }
  }

  /**
   * Grows every MoE layer by {@code added} experts (router rows and expert weights appended at the
   * end of dimension 0, freshly initialized from {@code seed}); existing values are kept bitwise. The
   * grown tensors are new {@link Parameter} objects: fetch {@link #parameters()} again.
   */
  public void addExperts(int added, long seed) {
    if (added <= 0) throw new IllegalArgumentException("added experts must be > 0, got " + added);
    if (config.numExperts() == 0) throw new IllegalStateException("the model has no MoE layers to grow");
    discardActivations();
    for (DecoderBlock block : blocks) if (block.moe() != null) retired.addAll(block.moe().addExperts(added, seed));
    config = config.withNumExperts(config.numExperts() + added);
    if (mixedPrecision) setMixedPrecision(true); // compute copies for the grown tensors
    for (Parameter p : retired) p.close();
    retired.clear();
  }

  /**
   * Freezes every parameter except the experts with index >= {@code oldExperts} and their router
   * rows (lifelong learning: new experts learn a new task, the rest keeps what it knew).
   */
  public void freezeAllBut(int oldExperts) {
    if (oldExperts < 0 || oldExperts > config.numExperts())
      throw new IllegalArgumentException("oldExperts must be in [0, " + config.numExperts() + "], got " + oldExperts);
    for (Parameter p : parameters()) p.setTrainableFrom(p.numel());
    for (DecoderBlock block : blocks) if (block.moe() != null) block.moe().freezeExpertsBelow(oldExperts);
  }

  /**
   * Training FLOPs per token: 6 × the parameters a token uses in matrix products (attention
   * projections, k of E experts, shared experts, dense FFNs, LM head) plus attention scores with the
   * FlashAttention convention (forward 2·S·Hq·D per token when causal, backward 2.5×).
   */
  public double trainingFlopsPerToken(int seqLen) {
    double h = config.hiddenSize();
    double qWidth = (double) config.numHeads() * config.headDim();
    double kvWidth = (double) config.numKvHeads() * config.headDim();
    double matmul = config.vocabSize() * h;
    for (int i = 0; i < config.numLayers(); i++) {
      matmul += h * (2 * qWidth + 2 * kvWidth);
      if (config.isMoeLayer(i)) {
        int active = config.routing() == ModelConfig.Routing.TOKEN_CHOICE ? config.expertsPerToken()
            : Math.max(1, Math.round(config.capacityFactor()));
        matmul += h * config.numExperts() + 3.0 * h * config.moeIntermediateSize() * active
            + 3.0 * h * config.numSharedExperts() * config.sharedExpertIntermediateSize();
      } else {
        matmul += 3.0 * h * config.denseIntermediateSize();
      }
    }
    double attention = config.numLayers() * 2.0 * seqLen * qWidth * 3.5;
    return 6 * matmul + attention;
  }

  /**
   * Mixed precision: every matrix (projections, experts, router, LM head) gets a BF16 compute copy
   * that the GEMMs read, with activations and output gradients rounded to BF16 at the GEMM inputs
   * and f32 accumulation; norms, softmax, attention, losses and the optimizer stay in F32 on the F32
   * master weights. After each optimizer step the copies must be refreshed: the fused AdamW writes
   * them when given {@link Parameter#computeCopy()}, or call {@link #refreshComputeCopies()}.
   */
  public void setMixedPrecision(boolean on) {
    mixedPrecision = on;
    for (Parameter p : parameters()) {
      boolean matrix = p.value().rank() >= 2 && p != embedding || p == lmHead;
      if (on && matrix) {
        p.setComputeCopy(backend.empty(DType.BF16, p.value().shape()));
      } else {
        p.setComputeCopy(null);
      }
    }
    refreshComputeCopies();
  }

  /** Whether {@link #setMixedPrecision} turned BF16 compute copies on. */
  public boolean mixedPrecision() {
    return mixedPrecision;
  }

  /** Rounds every master weight into its BF16 compute copy. */
  public void refreshComputeCopies() {
    for (Parameter p : parameters()) if (p.computeCopy() != null) backend.cast(p.value(), p.computeCopy());
  }

  /**
   * Activation recomputation: keep only each block's input during forward and run the block's
   * forward again just before its backward (less memory, ~1/3 more compute; same gradients bitwise,
   * since every op is deterministic).
   */
  public void setRecompute(boolean on) {
    recompute = on;
  }

  /** Times per op family since profiling was last enabled. */
  public OpTimes opTimes() {
    return timer.times();
  }

  /** Profiling synchronizes the backend around op families to time them (slower); resets the times. */
  public void setProfiling(boolean on) {
    timer.setEnabled(on);
  }

  @Override
  public void close() {
    discardActivations();
    if (zeroSource != null) zeroSource.close();
    for (Parameter p : parameters()) p.close();
  }
}
