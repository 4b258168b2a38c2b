package io.moe4j.cli.bench;

import io.moe4j.nn.ModelConfig;
import io.moe4j.nn.MoeTransformer;
import io.moe4j.nn.OpTimes;
import io.moe4j.ops.AdamWConfig;
import io.moe4j.ops.Backend;
import io.moe4j.tensor.Device;
import io.moe4j.train.AdamW;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * {@code moe4j bench train}: training throughput of whole steps (forward, backward, AdamW) on random
 * tokens: tokens/s, achieved FLOP/s with the model's own count ({@link
 * MoeTransformer#trainingFlopsPerToken}: 6 × active matrix parameters + FlashAttention-convention
 * attention) as a fraction of the peak (CPU: the measured FMA peak; GPU: H100 bf16 989 TFLOP/s, i.e.
 * MFU), and the share of step time per op family (attention, routing, expert GEMM, other) from a
 * separate profiled step (profiling synchronizes around each family). CPU cases: the demo model and a
 * ~100M-parameter MoE; cuda adds a ~1B-parameter MoE in mixed precision.
 */
public final class TrainSuite {

  private record Case(String name, ModelConfig config, int batch, int seqLen, boolean mixedPrecision) {}

  private final Backend backend;
  private final boolean quick;
  private final PrintStream log;

  public TrainSuite(Backend backend, boolean quick, PrintStream log) {
    this.backend = backend;
    this.quick = quick;
    this.log = log;
  }

  private boolean onCpu() {
    return backend.device().kind() == Device.Kind.CPU;
  }

  private List<Case> cases() {
    if (quick) return List.of(new Case("demo", ModelConfig.demo(), 8, 32, false));
    List<Case> cases = new ArrayList<>(List.of(new Case("demo", ModelConfig.demo(), 32, 32, false),
        new Case("moe-100m", ModelConfig.preset("moe-100m"), 4, 256, false)));
    if (!onCpu()) {
      cases.add(new Case("moe-100m mixed", ModelConfig.preset("moe-100m"), 16, 1024, true));
      cases.add(new Case("moe-1b mixed", ModelConfig.preset("moe-1b"), 8, 2048, true));
    }
    return cases;
  }

  public List<BenchResult> run() {
    Peak peak = Peak.of(backend);
    double peakGflops = peak.gflops();
    String peakName = peak.name() + (onCpu() ? "" : " (MFU)");
    log.println("bench train on " + backend.name() + ", peak: " + peakName);
    List<BenchResult> results = new ArrayList<>();
    for (Case c : cases()) results.add(runCase(c, peakGflops, peakName));
    return results;
  }

  private BenchResult runCase(Case c, double peakGflops, String peakName) {
    ModelConfig config = c.config();
    int[] tokens = new int[c.batch() * c.seqLen()];
    int[] targets = new int[tokens.length];
    SplittableRandom r = new SplittableRandom(11);
    for (int i = 0; i < tokens.length; i++) {
      tokens[i] = r.nextInt(config.vocabSize());
      targets[i] = r.nextInt(config.vocabSize());
    }
    try (MoeTransformer model = new MoeTransformer(backend, config, 1);
        AdamW optimizer = new AdamW(backend, model.parameters(), AdamWConfig.defaults(1e-4f), 1f)) {
      model.setMixedPrecision(c.mixedPrecision());
      long params = 0;
      for (var p : model.parameters()) params += p.numel();
      Runnable step = () -> {
        model.zeroGrad();
        model.forward(tokens, targets, c.batch(), c.seqLen());
        model.backward(1f);
        optimizer.step(1e-4f);
        backend.synchronize();
      };
      Timing.Stats stats = Timing.measure(step, quick ? 0 : 2000, quick ? 2 : 3, 10, quick ? 0 : 5000);
      model.setProfiling(true);
      step.run();
      OpTimes times = model.opTimes();
      model.setProfiling(false);
      double tokensPerSecond = tokens.length / (stats.medianMs() / 1e3);
      double gflops = tokensPerSecond * model.trainingFlopsPerToken(c.seqLen()) / 1e9;
      double total = Math.max(1, times.totalNs());
      String shape = String.format(
          "%s: %.1fM params, %.0f tokens/s, %dL d%d %dx%d top-%d, batch %d x seq %d%s; step shares: attention %.0f%%, routing %.0f%%,"
              + " expert GEMM %.0f%%, other %.0f%%",
          c.name(), params / 1e6, tokensPerSecond, config.numLayers(), config.hiddenSize(), config.numExperts(),
          config.moeIntermediateSize(), config.expertsPerToken(), c.batch(), c.seqLen(),
          c.mixedPrecision() ? ", bf16 mixed precision" : ", f32", 100 * times.attentionNs() / total,
          100 * times.routingNs() / total, 100 * times.expertGemmNs() / total, 100 * times.otherNs() / total);
      log.printf("  %s; %.1f GFLOP/s%n", shape, gflops);
      return new BenchResult("train", c.name(), backend.name(), shape, stats, gflops, "GFLOP/s", gflops / peakGflops,
          peakName, Map.of(), Map.of());
    }
  }
}
