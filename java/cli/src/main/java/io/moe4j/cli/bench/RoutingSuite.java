package io.moe4j.cli.bench;

import io.moe4j.ops.Backend;
import io.moe4j.ops.ScoreFunction;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Device;
import io.moe4j.tensor.Scope;
import io.moe4j.tensor.Tensor;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * {@code moe4j bench routing}: token-choice routing of one MoE layer — scores, top-k, dispatch plan,
 * gather, combine (forward) and combine, gather, top-k, scores (backward) — next to the expert FFN
 * of the same layer measured in the same run (grouped SwiGLU up-projection + down-projection
 * forward, and their dgrad + wgrad + SwiGLU backward). The figure of merit is routing time as a
 * fraction of expert time (targets: < 15% on CPU, < 10% on GPU). CPU: f32, scaled-down layers
 * (named "/4", "/2"), T ≤ 4096; cuda: bf16 activations, real shapes, T up to 65536.
 */
public final class RoutingSuite {

  private final Backend backend;
  private final boolean quick;
  private final PrintStream log;

  public RoutingSuite(Backend backend, boolean quick, PrintStream log) {
    this.backend = backend;
    this.quick = quick;
    this.log = log;
  }

  private boolean onCpu() {
    return backend.device().kind() == Device.Kind.CPU;
  }

  public List<BenchResult> run() {
    DType dtype = onCpu() ? DType.F32 : DType.BF16;
    List<GemmSuite.Layer> layers = onCpu()
        ? (quick ? List.of(new GemmSuite.Layer("olmoe/2", 1024, 512, 64, 8))
            : List.of(new GemmSuite.Layer("mixtral/4", 1024, 3584, 8, 2), new GemmSuite.Layer("olmoe/2", 1024, 512, 64, 8)))
        : List.of(new GemmSuite.Layer("mixtral", 4096, 14336, 8, 2), new GemmSuite.Layer("olmoe", 2048, 1024, 64, 8));
    long[] tokenCounts = quick ? new long[] {1024} : onCpu() ? new long[] {1024, 4096} : new long[] {1024, 8192, 65536};
    log.println("bench routing on " + backend.name() + ", activations " + dtype);
    List<BenchResult> results = new ArrayList<>();
    for (GemmSuite.Layer layer : layers)
      for (long tokens : tokenCounts) results.add(runCase(layer, tokens, dtype));
    return results;
  }

  private BenchResult runCase(GemmSuite.Layer layer, long tokens, DType dtype) {
    int e = layer.experts(), k = layer.topK();
    long h = layer.hidden(), f = layer.ffn(), rows = tokens * k;
    try (Scope s = new Scope()) {
      Tensor logits = s.add(random(DType.F32, 1, tokens, e));
      Tensor x = s.add(random(dtype, 2, tokens, h));
      Tensor scores = s.add(backend.empty(DType.F32, tokens, e));
      Tensor ids = s.add(backend.empty(DType.I32, tokens, k)), weights = s.add(backend.empty(DType.F32, tokens, k));
      Tensor offsets = s.add(backend.empty(DType.I64, e + 1)), sorted = s.add(backend.empty(DType.I32, rows));
      Tensor slotOf = s.add(backend.empty(DType.I32, tokens, k)), counts = s.add(backend.empty(DType.I64, e));
      Tensor xs = s.add(backend.empty(dtype, rows, h)), ys = s.add(random(dtype, 3, rows, h));
      Tensor y = s.add(backend.empty(dtype, tokens, h)), dy = s.add(random(dtype, 4, tokens, h));
      Tensor dYs = s.add(backend.empty(dtype, rows, h)), dW = s.add(backend.empty(DType.F32, tokens, k));
      Tensor dx = s.add(backend.empty(dtype, tokens, h)), dScores = s.add(backend.empty(DType.F32, tokens, e));
      Tensor dLogits = s.add(backend.empty(DType.F32, tokens, e));
      // expert FFN of the same layer
      Tensor w13 = s.add(random(dtype, 5, e, 2 * f, h)), w2 = s.add(random(dtype, 6, e, h, f));
      Tensor gateUp = s.add(backend.empty(dtype, rows, 2 * f)), act = s.add(backend.empty(dtype, rows, f));
      Tensor dAct = s.add(backend.empty(dtype, rows, f)), dGateUp = s.add(backend.empty(dtype, rows, 2 * f));
      Tensor dxs = s.add(backend.empty(dtype, rows, h));
      Tensor dW13 = s.add(backend.empty(dtype, e, 2 * f, h)), dW2 = s.add(backend.empty(dtype, e, h, f));

      Runnable routeForward = () -> {
        backend.routerScores(logits, ScoreFunction.SOFTMAX, scores);
        backend.routeTopK(scores, null, k, true, ids, weights);
        backend.routePlan(ids, weights, 0, offsets, sorted, slotOf, counts);
        backend.routeGather(x, sorted, xs);
        backend.routeCombine(ys, slotOf, weights, y);
      };
      Runnable routeBackward = () -> {
        backend.routeCombineBackward(dy, ys, slotOf, weights, dYs, dW);
        backend.routeGatherBackward(dxs, slotOf, dx, false);
        backend.routeTopKBackward(scores, ids, dW, true, dScores);
        backend.routerScoresBackward(scores, dScores, ScoreFunction.SOFTMAX, dLogits);
      };
      routeForward.run(); // a real plan for the expert timings
      Runnable expertsForward = () -> {
        backend.groupedGemmSwigluForward(xs, w13, offsets, act, gateUp);
        backend.groupedGemmForward(act, w2, offsets, ys, null, false);
      };
      Runnable expertsBackward = () -> {
        backend.groupedGemmDgrad(dYs, w2, offsets, dAct, false);
        backend.groupedGemmWgrad(dYs, act, offsets, dW2, false);
        backend.swigluBackwardCombined(gateUp, dAct, dGateUp);
        backend.groupedGemmDgrad(dGateUp, w13, offsets, dxs, false);
        backend.groupedGemmWgrad(dGateUp, xs, offsets, dW13, false);
      };
      Timing.Stats rf = time(routeForward), rb = time(routeBackward);
      Timing.Stats ef = time(expertsForward), eb = time(expertsBackward);
      double routeMs = rf.medianMs() + rb.medianMs(), expertMs = ef.medianMs() + eb.medianMs();
      Map<String, BenchResult.Baseline> baselines = new LinkedHashMap<>();
      baselines.put("route_forward", new BenchResult.Baseline(rf, tokens / (rf.medianMs() * 1e3)));
      baselines.put("route_backward", new BenchResult.Baseline(rb, tokens / (rb.medianMs() * 1e3)));
      baselines.put("experts_forward", new BenchResult.Baseline(ef, tokens / (ef.medianMs() * 1e3)));
      baselines.put("experts_backward", new BenchResult.Baseline(eb, tokens / (eb.medianMs() * 1e3)));
      Map<String, Double> ratios = new LinkedHashMap<>();
      ratios.put("vs_experts_forward", ef.medianMs() / rf.medianMs());
      ratios.put("vs_experts_backward", eb.medianMs() / rb.medianMs());
      ratios.put("vs_experts_total", expertMs / routeMs);
      double fraction = routeMs / expertMs;
      String shape = String.format("T=%d H=%d F=%d E=%d k=%d", tokens, h, f, e, k);
      Timing.Stats total = new Timing.Stats(routeMs, rf.minMs() + rb.minMs(), rf.maxMs() + rb.maxMs(), Math.min(rf.repetitions(), rb.repetitions()));
      BenchResult r = new BenchResult("routing", layer.name() + " T=" + tokens, backend.name(), shape, total,
          tokens / (routeMs * 1e3), "Mtokens/s", fraction, "fraction: routing time / expert FFN time (fwd + bwd)",
          baselines, ratios);
      log.printf("  %-18s route fwd %.3f + bwd %.3f ms, experts fwd %.3f + bwd %.3f ms: routing = %.1f%% of expert time%n",
          r.caseName(), rf.medianMs(), rb.medianMs(), ef.medianMs(), eb.medianMs(), 100 * fraction);
      return r;
    }
  }

  private Timing.Stats time(Runnable body) {
    return Timing.measure(() -> {
      body.run();
      backend.synchronize();
    }, quick ? 50 : 200, 3, 100, quick ? 100 : 300);
  }

  private Tensor random(DType dtype, long seed, long... shape) {
    long count = 1;
    for (long d : shape) count *= d;
    float[] v = new float[Math.toIntExact(count)];
    SplittableRandom r = new SplittableRandom(seed);
    for (int i = 0; i < v.length; i++) v[i] = (float) (r.nextDouble() * 0.2 - 0.1);
    return backend.fromFloats(v, dtype, shape);
  }
}
