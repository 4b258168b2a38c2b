package io.moe4j.train;

import io.moe4j.nn.ForwardResult;
import io.moe4j.nn.LayerRouting;
import io.moe4j.nn.ModelConfig;
import io.moe4j.nn.MoeTransformer;
import io.moe4j.ops.AdamWConfig;
import io.moe4j.ops.Backend;
import io.moe4j.text.ByteTokenizer;
import io.moe4j.text.Tokenizer;
import io.moe4j.train.data.Batch;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A training loop over {@link MoeTransformer}: gradient accumulation, AdamW with global clipping, a
 * learning-rate schedule, periodic evaluation and atomic checkpoints, callbacks with
 * {@link StepMetrics}, and the NaN/Inf policy (a non-finite loss or gradient norm skips the step;
 * {@code maxConsecutiveSkips} in a row stop training with {@link TrainingStoppedException}, leaving
 * the last checkpoint as it was).
 *
 * <p>Deterministic: the same seed, data and backend give a bitwise-identical loss curve, and a run
 * resumed from a checkpoint continues it exactly (the data position, optimizer moments and step
 * counts are in the checkpoint; nothing else is random).
 *
 * <p>Users who want their own loop call {@code model.forward}, {@code model.backward} and
 * {@link AdamW#step} directly, as {@link #runStep} does.
 */
public final class Trainer implements AutoCloseable {

  private final Backend backend;
  private final MoeTransformer model;
  private final boolean ownsModel;
  private final AdamW optimizer;
  private final TrainingData data;
  private final LrSchedule schedule;
  private final long steps;
  private final int batchSize;
  private final int gradAccumulation;
  private final long seed;
  private final Evaluator evaluator;
  private final long evalInterval;
  private final Path checkpointDir;
  private final long checkpointInterval;
  private final Tokenizer tokenizer;
  private final List<TrainingCallback> callbacks;
  private final double peakFlops;
  private final int maxConsecutiveSkips;
  private long step;
  private long skippedSteps;
  private int consecutiveSkips;
  private int frozenExperts;
  private EvalResult lastEval;
  private long lastCheckpointStep = -1;

  private Trainer(Builder b, MoeTransformer model, boolean ownsModel, AdamW optimizer, long step, long skipped, int frozen) {
    this.backend = b.backend;
    this.model = model;
    this.ownsModel = ownsModel;
    this.optimizer = optimizer;
    this.data = b.data;
    this.schedule = b.schedule;
    this.steps = b.steps;
    this.batchSize = b.batchSize;
    this.gradAccumulation = b.gradAccumulation;
    this.seed = b.seed;
    this.evaluator = b.evaluator;
    this.evalInterval = b.evalInterval;
    this.checkpointDir = b.checkpointDir;
    this.checkpointInterval = b.checkpointInterval;
    this.tokenizer = b.tokenizer;
    this.callbacks = new ArrayList<>(b.callbacks);
    this.peakFlops = b.peakFlops;
    this.maxConsecutiveSkips = b.maxConsecutiveSkips;
    this.step = step;
    this.skippedSteps = skipped;
    this.frozenExperts = frozen;
  }

  public static Builder builder(Backend backend) {
    return new Builder(backend);
  }

  public MoeTransformer model() {
    return model;
  }

  public AdamW optimizer() {
    return optimizer;
  }

  /** Adds a callback after building (e.g. one that needs {@link #step()} of a resumed run). */
  public void addCallback(TrainingCallback callback) {
    if (callback == null) throw new IllegalArgumentException("callback must not be null");
    callbacks.add(callback);
  }

  /** Steps run so far (skipped ones included). */
  public long step() {
    return step;
  }

  public long steps() {
    return steps;
  }

  public long skippedSteps() {
    return skippedSteps;
  }

  /** The most recent evaluation, or null. */
  public EvalResult lastEval() {
    return lastEval;
  }

  /**
   * Runs until {@code steps} steps are done, evaluating and checkpointing at their intervals and
   * at the end. Returns the final evaluation (null without an evaluator).
   */
  public EvalResult run() {
    while (step < steps) {
      StepMetrics m = runStep();
      if (consecutiveSkips >= maxConsecutiveSkips) {
        String last = lastCheckpointStep >= 0
            ? "the last good checkpoint is " + checkpointDir + " (step " + lastCheckpointStep + ")"
            : "no checkpoint was written in this run" + (checkpointDir == null ? "" : " (" + checkpointDir + " is as it was)");
        throw new TrainingStoppedException(step, "training stopped at step " + step + ": " + consecutiveSkips
            + " consecutive steps had a non-finite loss or gradient norm (last loss " + m.loss() + ", grad norm "
            + m.gradNorm() + "); " + last);
      }
      if (evaluator != null && evalInterval > 0 && step % evalInterval == 0 && step < steps) evaluate();
      // Not after a skipped step: if the run is diverging, the checkpoint to keep is the one before.
      if (checkpointDir != null && checkpointInterval > 0 && step % checkpointInterval == 0 && step < steps && consecutiveSkips == 0)
        checkpoint();
    }
    if (evaluator != null) evaluate();
    if (checkpointDir != null && lastCheckpointStep != step) checkpoint();
    return lastEval;
  }

  /** Evaluates now and tells the callbacks. */
  public EvalResult evaluate() {
    if (evaluator == null) throw new IllegalStateException("no evaluator was configured");
    lastEval = evaluator.evaluate(model, step);
    for (TrainingCallback c : callbacks) c.onEval(lastEval);
    return lastEval;
  }

  /** Writes the checkpoint directory now (atomically replacing the previous one). */
  public void checkpoint() {
    if (checkpointDir == null) throw new IllegalStateException("no checkpoint directory was configured");
    TrainingCheckpoint.save(checkpointDir, model, optimizer, state(), tokenizer);
    lastCheckpointStep = step;
    for (TrainingCallback c : callbacks) c.onCheckpoint(step, checkpointDir);
  }

  /** What a checkpoint records about this trainer now. */
  public TrainerState state() {
    AdamWConfig c = optimizer.config();
    return new TrainerState(step, optimizer.stepCount(), skippedSteps, seed, data.position(), batchSize, data.seqLen(),
        gradAccumulation, model.config().numExperts(), frozenExperts, schedule, c.beta1(), c.beta2(), c.eps(),
        c.weightDecay(), optimizer.maxGradNorm(), model.mixedPrecision(), data.trainedTasks());
  }

  /** One optimizer step over {@code gradAccumulation} micro-batches; tells the callbacks. */
  public StepMetrics runStep() {
    long start = System.nanoTime();
    float lr = schedule.lr(step);
    model.zeroGrad();
    int seqLen = data.seqLen();
    int tasks = data.taskNames().size();
    long[][] taskExpert = null;
    List<long[]> layerTokens = new ArrayList<>();
    List<Integer> layerIds = new ArrayList<>();
    double[] dropped = null;
    double loss = 0, aux = 0, z = 0;
    boolean finite = true;
    int micro = 0;
    for (; micro < gradAccumulation; micro++) {
      Batch batch = data.nextBatch(batchSize);
      ForwardResult r = model.forward(batch.tokens(), batch.targets(), batch.batchSize(), batch.seqLen());
      loss += r.loss();
      aux += r.auxLoss();
      z += r.zLoss();
      if (!Float.isFinite(r.totalLoss())) {
        model.discardActivations();
        finite = false;
        micro++;
        break;
      }
      model.backward(1f / gradAccumulation);
      if (dropped == null) {
        dropped = new double[r.routing().size()];
        for (LayerRouting lr0 : r.routing()) {
          layerIds.add(lr0.layer());
          layerTokens.add(new long[lr0.expertTokens().length]);
        }
        if (tasks > 0 && !r.routing().isEmpty()) taskExpert = new long[tasks][r.routing().get(0).expertTokens().length];
      }
      for (int i = 0; i < r.routing().size(); i++) {
        LayerRouting routing = r.routing().get(i);
        long[] sum = layerTokens.get(i);
        long[] counts = routing.expertTokens();
        for (int e = 0; e < counts.length; e++) sum[e] += counts[e];
        dropped[i] += routing.droppedFraction() / gradAccumulation;
        if (taskExpert != null) countTaskExperts(routing, batch.taskIds(), seqLen, taskExpert);
      }
    }
    float gradNorm = Float.NaN;
    boolean skipped = !finite;
    if (finite) {
      AdamW.StepResult s = optimizer.step(lr);
      gradNorm = s.gradNorm();
      skipped = s.skipped();
    }
    if (skipped) {
      // Whatever the bad step accumulated must not leak into the next one.
      model.zeroGrad();
      skippedSteps++;
      consecutiveSkips++;
    } else {
      consecutiveSkips = 0;
    }
    step++;
    double seconds = (System.nanoTime() - start) * 1e-9;
    long tokens = (long) batchSize * seqLen * micro;
    double tokensPerSecond = tokens / seconds;
    double mfu = peakFlops > 0 ? tokensPerSecond * model.trainingFlopsPerToken(seqLen) / peakFlops : Double.NaN;
    List<ExpertLoad> load = new ArrayList<>();
    for (int i = 0; i < layerIds.size(); i++) load.add(new ExpertLoad(layerIds.get(i), layerTokens.get(i), dropped[i]));
    StepMetrics m = new StepMetrics(step, (float) (loss / micro), (float) (aux / micro), (float) (z / micro), lr, gradNorm,
        skipped, skippedSteps, tokens, seconds, tokensPerSecond, mfu, load, taskExpert);
    for (TrainingCallback c : callbacks) c.onStep(m);
    return m;
  }

  private static void countTaskExperts(LayerRouting routing, int[] taskIds, int seqLen, long[][] taskExpert) {
    int[] experts = routing.tokenExperts();
    int k = routing.k();
    for (int slot = 0; slot < experts.length; slot++) {
      int e = experts[slot];
      if (e < 0) continue;
      int task = taskIds[slot / k / seqLen];
      if (task >= 0 && task < taskExpert.length && e < taskExpert[task].length) taskExpert[task][e]++;
    }
  }

  @Override
  public void close() {
    optimizer.close();
    if (ownsModel) model.close();
  }

  /** Configures a {@link Trainer}; {@link #build()} checks everything and names what is wrong. */
  public static final class Builder {
    private final Backend backend;
    private ModelConfig config;
    private MoeTransformer model;
    private TrainingData data;
    private AdamWConfig adamw = new AdamWConfig(1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f);
    private float maxGradNorm = 1f;
    private LrSchedule schedule;
    private long steps = -1;
    private int batchSize = 0; // 0: not set (a resumed run takes the checkpoint's)
    private int gradAccumulation = 0; // 0: not set (1, or the checkpoint's when resuming)
    private Boolean mixedPrecision; // null: not set (off, or the checkpoint's when resuming)
    private long seed = 0;
    private Evaluator evaluator;
    private long evalInterval = 0;
    private Path checkpointDir;
    private long checkpointInterval = 0;
    private Tokenizer tokenizer = new ByteTokenizer();
    private final List<TrainingCallback> callbacks = new ArrayList<>();
    private double peakFlops = 0;
    private int maxConsecutiveSkips = 3;
    private Path resumeFrom;
    private int addExperts = 0;
    private boolean freezeOld = false;

    private Builder(Backend backend) {
      if (backend == null) throw new IllegalArgumentException("backend must not be null");
      this.backend = backend;
    }

    /** A fresh model of this config, initialized from the seed (owned and closed by the trainer). */
    public Builder model(ModelConfig config) {
      this.config = config;
      this.model = null;
      return this;
    }

    /** An existing model (the caller keeps ownership). */
    public Builder model(MoeTransformer model) {
      this.model = model;
      this.config = null;
      return this;
    }

    public Builder data(TrainingData data) {
      this.data = data;
      return this;
    }

    /** AdamW betas, eps and weight decay (its lr is ignored: the schedule gives the rate). */
    public Builder optimizer(AdamWConfig config, float maxGradNorm) {
      this.adamw = config;
      this.maxGradNorm = maxGradNorm;
      return this;
    }

    public Builder schedule(LrSchedule schedule) {
      this.schedule = schedule;
      return this;
    }

    /** Total optimizer steps (a resumed run continues up to this count). */
    public Builder steps(long steps) {
      this.steps = steps;
      return this;
    }

    /** Rows per micro-batch (required for a fresh run; a resumed run keeps the checkpoint's unless set). */
    public Builder batchSize(int batchSize) {
      if (batchSize <= 0) throw new IllegalArgumentException("batchSize must be > 0, got " + batchSize);
      this.batchSize = batchSize;
      return this;
    }

    /** Micro-batches per optimizer step (default 1; a resumed run keeps the checkpoint's unless set). */
    public Builder gradAccumulation(int microBatches) {
      if (microBatches <= 0) throw new IllegalArgumentException("gradAccumulation must be > 0, got " + microBatches);
      this.gradAccumulation = microBatches;
      return this;
    }

    /**
     * BF16 compute copies of the matrices with F32 master weights and moments
     * ({@link MoeTransformer#setMixedPrecision}); default off, a resumed run keeps the checkpoint's
     * unless set.
     */
    public Builder mixedPrecision(boolean on) {
      this.mixedPrecision = on;
      return this;
    }

    public Builder seed(long seed) {
      this.seed = seed;
      return this;
    }

    /** Evaluates every {@code interval} steps (0 = only at the end). */
    public Builder evaluator(Evaluator evaluator, long interval) {
      this.evaluator = evaluator;
      this.evalInterval = interval;
      return this;
    }

    /** Checkpoints into {@code directory} every {@code interval} steps (0 = only at the end). */
    public Builder checkpoints(Path directory, long interval) {
      this.checkpointDir = directory;
      this.checkpointInterval = interval;
      return this;
    }

    /** The tokenizer saved with checkpoints (default: {@link ByteTokenizer}). */
    public Builder tokenizer(Tokenizer tokenizer) {
      this.tokenizer = tokenizer;
      return this;
    }

    public Builder callback(TrainingCallback callback) {
      if (callback == null) throw new IllegalArgumentException("callback must not be null");
      callbacks.add(callback);
      return this;
    }

    /** Peak FLOP/s of the device, for the MFU estimate (0 = no MFU). */
    public Builder peakFlops(double flopsPerSecond) {
      this.peakFlops = flopsPerSecond;
      return this;
    }

    public Builder maxConsecutiveSkips(int k) {
      this.maxConsecutiveSkips = k;
      return this;
    }

    /**
     * Continues from a checkpoint directory: model config and weights, optimizer moments, step
     * counts, data position and seed come from it (a model given to {@link #model} is ignored; the
     * schedule too unless one is set).
     */
    public Builder resume(Path checkpointDirectory) {
      this.resumeFrom = checkpointDirectory;
      return this;
    }

    /**
     * On resume: grow every MoE layer by {@code n} fresh experts; with {@code freezeOld} train only
     * the new experts and their router rows.
     */
    public Builder grow(int n, boolean freezeOld) {
      this.addExperts = n;
      this.freezeOld = freezeOld;
      return this;
    }

    public Trainer build() {
      if (data == null) throw new IllegalArgumentException("data must be set (synthetic tasks or a text dataset)");
      if (steps <= 0) throw new IllegalArgumentException("steps must be > 0, got " + steps);
      if (adamw == null) throw new IllegalArgumentException("optimizer config must not be null");
      if (evalInterval < 0) throw new IllegalArgumentException("eval interval must be >= 0, got " + evalInterval);
      if (checkpointInterval < 0) throw new IllegalArgumentException("checkpoint interval must be >= 0, got " + checkpointInterval);
      if (maxConsecutiveSkips <= 0) throw new IllegalArgumentException("maxConsecutiveSkips must be > 0, got " + maxConsecutiveSkips);
      if (addExperts < 0) throw new IllegalArgumentException("addExperts must be >= 0, got " + addExperts);
      if ((addExperts > 0 || freezeOld) && resumeFrom == null)
        throw new IllegalArgumentException("adding experts and freezing old ones need a checkpoint to resume from");
      if (freezeOld && addExperts == 0) throw new IllegalArgumentException("freezeOld needs addExperts > 0 (nothing new to train)");
      if (tokenizer == null) throw new IllegalArgumentException("tokenizer must not be null");
      if (resumeFrom != null) return resumed();
      if (batchSize == 0) throw new IllegalArgumentException("batchSize must be set");
      if (gradAccumulation == 0) gradAccumulation = 1;
      if (schedule == null) throw new IllegalArgumentException("schedule must be set");
      if (config == null && model == null) throw new IllegalArgumentException("model must be set (a ModelConfig or a MoeTransformer)");
      checkSeqLen(config != null ? config : model.config());
      boolean owns = model == null;
      MoeTransformer m = owns ? new MoeTransformer(backend, config, seed) : model;
      try {
        if (mixedPrecision != null) m.setMixedPrecision(mixedPrecision); // else: off, or as the given model is
        return new Trainer(this, m, owns, new AdamW(backend, m.parameters(), adamw, maxGradNorm), 0, 0, 0);
      } catch (RuntimeException e) {
        if (owns) m.close();
        throw e;
      }
    }

    private void checkSeqLen(ModelConfig c) {
      if (data.seqLen() > c.maxPositionEmbeddings())
        throw new IllegalArgumentException("seqLen " + data.seqLen() + " exceeds the model's maxPositionEmbeddings "
            + c.maxPositionEmbeddings());
      if (data.seqLen() <= 0) throw new IllegalArgumentException("seqLen must be > 0, got " + data.seqLen());
    }

    private Trainer resumed() {
      TrainingCheckpoint.Contents saved = TrainingCheckpoint.read(resumeFrom);
      TrainerState st = saved.state();
      if (st.step() >= steps)
        throw new IllegalArgumentException("steps (" + steps + ") must exceed the checkpoint's step " + st.step()
            + " to train further (steps is the total count, not the number of additional steps)");
      ModelConfig c = saved.config();
      checkSeqLen(c);
      if (schedule == null) schedule = st.schedule();
      if (batchSize == 0) batchSize = st.batchSize();
      if (gradAccumulation == 0) gradAccumulation = st.gradAccumulation();
      if (mixedPrecision == null) mixedPrecision = st.mixedPrecision();
      seed = st.seed();
      MoeTransformer m = new MoeTransformer(backend, c, st.seed());
      AdamW opt = null;
      try {
        TrainingCheckpoint.loadWeights(resumeFrom, m);
        opt = new AdamW(backend, m.parameters(),
            new AdamWConfig(schedule.peak(), st.beta1(), st.beta2(), st.eps(), st.weightDecay()), st.maxGradNorm());
        TrainingCheckpoint.loadOptimizer(resumeFrom, opt, m);
        opt.setStepCount(st.optimizerSteps());
        data.restore(st.dataPosition());
        int frozen = st.frozenExperts();
        if (frozen > 0) m.freezeAllBut(frozen);
        if (addExperts > 0) {
          int old = c.numExperts();
          if (old == 0) throw new IllegalArgumentException("the checkpoint's model has no MoE layers to add experts to");
          // A seed of its own per growth, so that growing twice does not repeat the same init.
          m.addExperts(addExperts, seed ^ (0x9E3779B97F4A7C15L * (st.step() + 1)));
          opt.grow(m.parameters());
          if (freezeOld) {
            m.freezeAllBut(old);
            frozen = old;
          }
        }
        m.setMixedPrecision(mixedPrecision); // after loading and growing: the copies round the final weights
        return new Trainer(this, m, true, opt, st.step(), st.skippedSteps(), frozen);
      } catch (RuntimeException e) {
        if (opt != null) opt.close();
        m.close();
        throw e;
      }
    }
  }
}
