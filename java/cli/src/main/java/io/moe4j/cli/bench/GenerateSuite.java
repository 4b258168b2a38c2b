package io.moe4j.cli.bench;

import io.moe4j.infer.LoadedModel;
import io.moe4j.infer.MemoryBandwidth;
import io.moe4j.nn.KvCache;
import io.moe4j.nn.ModelConfig;
import io.moe4j.nn.MoeTransformer;
import io.moe4j.nn.Parameter;
import io.moe4j.nn.ParameterSource;
import io.moe4j.ops.Backend;
import io.moe4j.runtime.CpuNative;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Device;
import io.moe4j.tensor.Tensor;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * {@code moe4j bench generate}: prefill and decode tokens/s of a random ~1B-parameter Mixtral-shaped
 * MoE (11 layers, hidden 1024, 8 experts of width 3584, top-2, GQA 16/4 heads of 64, vocabulary
 * 32000; BF16 matrices as an HF bf16 checkpoint loads them), at batch 1 and 8, prompts of 128
 * tokens then greedy decode steps with the KV cache.
 *
 * <p>The model is built directly in memory from random BF16 values ({@link RandomBf16Weights}):
 * writing and re-loading a 2 GB safetensors file would measure the disk and the loader, not the
 * generation. Decode is memory-bound, so its yardstick is the bandwidth bound: the backend's copy
 * bandwidth ({@link MemoryBandwidth}, measured in the same run) over the weight bytes a step must
 * read; prefill is compute-bound and is compared with the FMA peak (CPU, measured) through 2 FLOPs
 * per active parameter per token.
 */
public final class GenerateSuite {

  /** One measured configuration: sequences, prompt length, decode steps (after warm-up ones). */
  record Plan(int batch, int promptTokens, int warmupSteps, int decodeSteps, int repetitions) {}

  private static final long BF16_BYTES = 2;

  private final Backend backend;
  private final boolean quick;
  private final PrintStream log;

  public GenerateSuite(Backend backend, boolean quick, PrintStream log) {
    this.backend = backend;
    this.quick = quick;
    this.log = log;
  }

  /** The ~1B model (1.06e9 parameters), or a small one for {@code --quick}. */
  ModelConfig config() {
    if (quick)
      return new ModelConfig(ModelConfig.Architecture.MIXTRAL, 1000, 256, 2, 4, 2, 64, 0, 512, 8, 2, true, 1, List.of(),
          ModelConfig.QkNorm.NONE, 1e-5f, 1e6f, 4096, false, 0f, 0f, ModelConfig.Routing.TOKEN_CHOICE, 0f, 0, 0, 1, 2,
          0.02f);
    return new ModelConfig(ModelConfig.Architecture.MIXTRAL, 32000, 1024, 11, 16, 4, 64, 0, 3584, 8, 2, true, 1,
        List.of(), ModelConfig.QkNorm.NONE, 1e-5f, 1e6f, 4096, false, 0f, 0f, ModelConfig.Routing.TOKEN_CHOICE, 0f, 0, 0,
        1, 2, 0.02f);
  }

  List<Plan> plans() {
    if (quick) return List.of(new Plan(1, 16, 1, 4, 1), new Plan(2, 16, 1, 4, 1));
    return List.of(new Plan(1, 128, 4, 32, 3), new Plan(8, 128, 4, 32, 3));
  }

  public List<BenchResult> run() {
    ModelConfig c = config();
    double copyGbs = MemoryBandwidth.copyGigabytesPerSecond(backend);
    double peakGflops = 0;
    if (backend.device().kind() == Device.Kind.CPU) {
      double[] g = {0};
      CpuNative.check(CpuNative.moe4j_cpu_measure_fma_peak(0.5, g));
      peakGflops = g[0];
    }
    long total = totalParameters(c);
    String shape = String.format("%s %dL h%d %dx%d top-%d, heads %d/%d x %d, vocab %d, bf16, %.2fB params",
        c.architecture().modelType(), c.numLayers(), c.hiddenSize(), c.numExperts(), c.moeIntermediateSize(),
        c.expertsPerToken(), c.numHeads(), c.numKvHeads(), c.headDim(), c.vocabSize(), total / 1e9);
    log.printf("bench generate on %s: %s; copy bandwidth %.2f GB/s%s%n", backend.name(), shape, copyGbs,
        peakGflops > 0 ? String.format(", FMA peak %.0f GFLOP/s", peakGflops) : "");
    long t0 = System.nanoTime();
    List<Measured> measured = new ArrayList<>();
    try (MoeTransformer model = new MoeTransformer(backend, c, new RandomBf16Weights(backend, 42, c.initializerRange()))) {
      log.printf("  random bf16 weights built in memory in %.1f s%n", (System.nanoTime() - t0) / 1e9);
      for (Plan plan : plans()) measured.add(measure(model, plan));
    }
    // On a shared machine one copy measurement can land in a busy moment and make the bound too
    // low; the better of a measurement before and one after the runs is the conservative bound.
    double copyAfter = MemoryBandwidth.copyGigabytesPerSecond(backend);
    log.printf("  copy bandwidth after the runs %.2f GB/s; the bound uses %.2f GB/s%n", copyAfter,
        Math.max(copyGbs, copyAfter));
    copyGbs = Math.max(copyGbs, copyAfter);
    List<BenchResult> results = new ArrayList<>();
    for (Measured m : measured) results.addAll(results(m, c, shape, copyGbs, peakGflops));
    return results;
  }

  /** Prefill and decode milliseconds of each repetition of a plan. */
  record Measured(Plan plan, double[] prefillMs, double[] decodeMs) {}

  private Measured measure(MoeTransformer model, Plan plan) {
    ModelConfig c = model.config();
    int b = plan.batch();
    int[][] prompts = new int[b][plan.promptTokens()];
    SplittableRandom r = new SplittableRandom(7 + b);
    for (int[] p : prompts)
      for (int i = 0; i < p.length; i++) p[i] = r.nextInt(c.vocabSize());
    double[] prefillMs = new double[plan.repetitions()], decodeMs = new double[plan.repetitions()];
    int maxSeq = plan.promptTokens() + plan.warmupSteps() + plan.decodeSteps();
    for (int rep = 0; rep < plan.repetitions(); rep++) {
      try (KvCache cache = model.newKvCache(b, maxSeq)) {
        long t0 = System.nanoTime();
        float[] logits = model.prefill(prompts, cache);
        backend.synchronize();
        prefillMs[rep] = (System.nanoTime() - t0) / 1e6;
        for (int s = 0; s < plan.warmupSteps(); s++) logits = model.decode(greedy(logits, b, c.vocabSize()), cache);
        backend.synchronize();
        long t1 = System.nanoTime();
        for (int s = 0; s < plan.decodeSteps(); s++) logits = model.decode(greedy(logits, b, c.vocabSize()), cache);
        backend.synchronize();
        decodeMs[rep] = (System.nanoTime() - t1) / 1e6;
      }
    }
    return new Measured(plan, prefillMs, decodeMs);
  }

  private List<BenchResult> results(Measured m, ModelConfig c, String shape, double copyGbs, double peakGflops) {
    Plan plan = m.plan();
    int b = plan.batch();
    double[] prefillMs = m.prefillMs(), decodeMs = m.decodeMs();
    String where = String.format("%s; batch %d, prompt %d", shape, b, plan.promptTokens());
    List<BenchResult> out = new ArrayList<>();
    // prefill: tokens of all prompts over the prefill time, against 2 FLOPs per active parameter
    // (without the LM head: prefill computes logits for each prompt's last token only)
    Timing.Stats prefill = stats(prefillMs);
    double prefillTps = (double) b * plan.promptTokens() / (prefill.medianMs() / 1e3);
    double flopsPerToken = 2.0 * (LoadedModel.activeWeightBytesPerToken(c, 1) - (long) c.vocabSize() * c.hiddenSize());
    String computePeak;
    double prefillBoundTps;
    if (peakGflops > 0) {
      prefillBoundTps = peakGflops * 1e9 / flopsPerToken;
      computePeak = String.format("FMA peak %.0f GFLOP/s / %.2f GFLOP per token (2 x active params without the LM head;"
          + " attention scores not counted) = %.0f tokens/s", peakGflops, flopsPerToken / 1e9, prefillBoundTps);
    } else {
      prefillBoundTps = Double.NaN;
      computePeak = "no compute peak on " + backend.name();
    }
    out.add(result("prefill b" + b, where, prefill, prefillTps, prefillBoundTps, computePeak));
    // decode: sequences x steps over the decode time, against copy bandwidth / bytes per step
    Timing.Stats decode = stats(decodeMs);
    double decodeTps = (double) b * plan.decodeSteps() / (decode.medianMs() / 1e3);
    double stepBytes = weightBytesPerDecodeStep(c, b, BF16_BYTES);
    double boundTps = b * copyGbs * 1e9 / stepBytes;
    String bandwidth = String.format("copy %.2f GB/s / %.3f GB of weights per step (batch %d%s) x %d tokens per step"
            + " = %.1f tokens/s", copyGbs, stepBytes / 1e9, b,
        b > 1 ? String.format(", %.2f distinct experts per MoE layer expected", distinctExperts(c, b)) : "", b,
        boundTps);
    out.add(result("decode b" + b, where + ", " + plan.decodeSteps() + " steps", decode, decodeTps, boundTps,
        bandwidth));
    for (BenchResult res : out)
      log.printf("  %-12s %10.1f tokens/s  %5.1f%% of the bound (%s)%n", res.caseName(), res.throughput(),
          100 * res.fractionOfPeak(), res.peak());
    return out;
  }

  private BenchResult result(String name, String shape, Timing.Stats t, double tps, double boundTps, String bound) {
    double boundMs = t.medianMs() * tps / boundTps;
    BenchResult.Baseline b = new BenchResult.Baseline(new Timing.Stats(boundMs, boundMs, boundMs, 1), boundTps);
    return new BenchResult("generate", name, backend.name(), shape, t, tps, "tokens/s", tps / boundTps, bound,
        Map.of("bound", b), Map.of("bound", boundMs / t.medianMs()));
  }

  /**
   * Weight bytes one decode step of {@code batch} sequences reads: the per-token active bytes
   * ({@link LoadedModel#activeWeightBytesPerToken}: k experts per MoE layer) plus the experts the
   * other sequences add, taking the expected number of distinct experts under uniform routing
   * (a random router is close to uniform), plus one embedding row per extra sequence.
   */
  static double weightBytesPerDecodeStep(ModelConfig c, int batch, long element) {
    double bytes = LoadedModel.activeWeightBytesPerToken(c, element);
    double extraExperts = distinctExperts(c, batch) - c.expertsPerToken();
    long moeLayers = 0;
    for (int i = 0; i < c.numLayers(); i++)
      if (c.isMoeLayer(i)) moeLayers++;
    bytes += extraExperts * moeLayers * 3.0 * c.hiddenSize() * c.moeIntermediateSize() * element;
    bytes += (batch - 1.0) * c.hiddenSize() * element;
    return bytes;
  }

  /**
   * Expected distinct experts when each of {@code batch} tokens picks k of E uniformly: an expert is
   * missed by one token with probability (E − k) / E, so E · (1 − ((E − k) / E)^batch).
   */
  static double distinctExperts(ModelConfig c, int batch) {
    double e = c.numExperts(), k = c.expertsPerToken();
    return e * (1 - Math.pow((e - k) / e, batch));
  }

  static long totalParameters(ModelConfig c) {
    long h = c.hiddenSize();
    long attention = h * (2L * c.numHeads() * c.headDim() + 2L * c.numKvHeads() * c.headDim());
    long moe = h * c.numExperts() + 3L * h * c.moeIntermediateSize() * c.numExperts();
    long perLayer = attention + moe + 2 * h;
    return c.numLayers() * perLayer + (c.tieWordEmbeddings() ? 1 : 2) * (long) c.vocabSize() * h + h;
  }

  private static int[] greedy(float[] logits, int batch, int vocab) {
    int[] next = new int[batch];
    for (int b = 0; b < batch; b++) {
      int best = 0;
      for (int v = 1; v < vocab; v++)
        if (logits[b * vocab + v] > logits[b * vocab + best]) best = v;
      next[b] = best;
    }
    return next;
  }

  private static Timing.Stats stats(double[] ms) {
    double[] s = ms.clone();
    Arrays.sort(s);
    int n = s.length;
    double median = n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    return new Timing.Stats(median, s[0], s[n - 1], n);
  }

  /**
   * Random inference-only parameters: matrices BF16, uniform in ±√3·std (the std of the training
   * init), norm scales F32 ones; no gradients. Values are drawn per slice of at most one expert
   * (a few MiB of floats) and converted by the backend.
   */
  static final class RandomBf16Weights implements ParameterSource {

    private final Backend backend;
    private final SplittableRandom random;
    private final float halfWidth;

    RandomBf16Weights(Backend backend, long seed, float std) {
      this.backend = backend;
      this.random = new SplittableRandom(seed);
      this.halfWidth = (float) (Math.sqrt(3) * std);
    }

    @Override
    public Parameter create(String name, Kind kind, long... shape) {
      if (kind == Kind.NORM) {
        float[] ones = new float[Math.toIntExact(product(shape))];
        Arrays.fill(ones, 1f);
        return new Parameter(name, backend.fromFloats(ones, DType.F32, shape), null, false);
      }
      Tensor value = backend.empty(DType.BF16, shape);
      try {
        long slices = name.contains(Parameter.EXPERT_INDEX) ? shape[0] : 1;
        long sliceSize = value.numel() / slices;
        float[] values = new float[Math.toIntExact(sliceSize)];
        for (long j = 0; j < slices; j++) {
          fill(values);
          backend.copyFromFloats(values, value.view(j * sliceSize, sliceSize));
        }
        return new Parameter(name, value, null, true);
      } catch (RuntimeException e) {
        value.close();
        throw e;
      }
    }

    /** Uniform in [−halfWidth, halfWidth): two values from the halves of each random long. */
    private void fill(float[] values) {
      float scale = halfWidth * 0x1p-31f;
      int i = 0;
      for (; i + 1 < values.length; i += 2) {
        long bits = random.nextLong();
        values[i] = scale * (int) bits;
        values[i + 1] = scale * (int) (bits >>> 32);
      }
      if (i < values.length) values[i] = scale * (int) random.nextLong();
    }

    private static long product(long[] shape) {
      long n = 1;
      for (long d : shape) n *= d;
      return n;
    }
  }
}
