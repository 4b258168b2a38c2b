package io.moe4j.cli.bench;

import io.moe4j.ops.Backend;
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
 * {@code moe4j bench gemm}: the expert up-projection of an MoE layer (x [T·k, hidden] times the
 * experts' [ffn, hidden] weights) as one grouped GEMM, against, in the same run: (a) a loop of
 * per-expert dense GEMMs, (b) one dense GEMM with the same FLOPs, and on cuda (c) cuBLAS dense and a
 * loop of cuBLAS calls. CPU runs fp32 on shapes scaled down (named "/4" etc.); cuda runs bf16 on the
 * real shapes.
 */
public final class GemmSuite {

  /** An MoE layer shape. */
  public record Layer(String name, long hidden, long ffn, int experts, int topK) {}


  private final Backend backend;
  private final boolean quick;
  private final PrintStream log;

  public GemmSuite(Backend backend, boolean quick, PrintStream log) {
    this.backend = backend;
    this.quick = quick;
    this.log = log;
  }

  boolean onCpu() {
    return backend.device().kind() == Device.Kind.CPU;
  }

  List<Layer> layers() {
    if (onCpu())
      return quick
          ? List.of(new Layer("olmoe/2", 1024, 512, 64, 8))
          : List.of(
              new Layer("mixtral/4", 1024, 3584, 8, 2),
              new Layer("olmoe/2", 1024, 512, 64, 8),
              new Layer("fine128/2", 1024, 256, 128, 8),
              new Layer("fine256/2", 1024, 128, 256, 8));
    return List.of(
        new Layer("mixtral", 4096, 14336, 8, 2),
        new Layer("olmoe", 2048, 1024, 64, 8),
        new Layer("fine128", 2048, 512, 128, 8),
        new Layer("fine256", 2048, 256, 256, 8));
  }

  long[] tokenCounts() {
    if (quick) return new long[] {128};
    return onCpu() ? new long[] {1, 16, 128, 1024} : new long[] {1, 16, 128, 1024, 8192};
  }

  public List<BenchResult> run() {
    DType dtype = onCpu() ? DType.F32 : DType.BF16;
    Peak peak = Peak.of(backend);
    double peakGflops = peak.gflops();
    String peakName = peak.name();
    log.println("bench gemm on " + backend.name() + ", " + dtype + ", peak: " + peakName);
    List<BenchResult> results = new ArrayList<>();
    for (Layer layer : layers())
      for (long tokens : tokenCounts())
        for (String routing : new String[] {"balanced", "zipf"})
          results.add(runCase(layer, tokens, routing, dtype, peakGflops, peakName));
    return results;
  }

  private BenchResult runCase(Layer layer, long tokens, String routing, DType dtype, double peakGflops, String peakName) {
    long rows = tokens * layer.topK();
    long n = layer.ffn(), k = layer.hidden();
    long[] sizes = Routing.groupSizes(routing, rows, layer.experts());
    long[] offsets = Routing.offsets(sizes);
    double flops = 2.0 * rows * n * k;
    try (Scope s = new Scope()) {
      Tensor x = s.add(random(dtype, 1, rows, k));
      Tensor w = s.add(random(dtype, 2, layer.experts(), n, k));
      Tensor y = s.add(backend.empty(dtype, rows, n));
      Tensor off = s.add(offsetsTensor(offsets));
      Tensor wDense = w.view(0, n, k);

      Timing.Stats grouped = time(() -> backend.groupedGemmForward(x, w, off, y, null, false));
      Map<String, BenchResult.Baseline> baselines = new LinkedHashMap<>();
      baselines.put("expert_loop", baseline(flops, () -> {
        for (int e = 0; e < sizes.length; e++) {
          if (sizes[e] == 0) continue;
          backend.groupedGemmForward(
              x.view(offsets[e] * k, sizes[e], k), w.view(e * n * k, n, k), null, y.view(offsets[e] * n, sizes[e], n), null, false);
        }
      }));
      // our kernel as a dense GEMM (not backend.gemm, which may hand dense work to cuBLAS)
      baselines.put("dense_equal_flops", baseline(flops, () -> backend.groupedGemmForward(x, wDense, null, y, null, false)));
      if (!onCpu()) {
        baselines.put("cublas_dense", baseline(flops, () -> backend.vendorGemm(x, wDense, y)));
        baselines.put("cublas_loop", baseline(flops, () -> {
          for (int e = 0; e < sizes.length; e++) {
            if (sizes[e] == 0) continue;
            backend.vendorGemm(x.view(offsets[e] * k, sizes[e], k), w.view(e * n * k, n, k), y.view(offsets[e] * n, sizes[e], n));
          }
        }));
      }
      double gflops = flops / (grouped.medianMs() * 1e6);
      Map<String, Double> ratios = new LinkedHashMap<>();
      baselines.forEach((name, b) -> ratios.put("vs_" + name, b.timing().medianMs() / grouped.medianMs()));
      String shape = String.format("T=%d k=%d rows=%d N=%d K=%d E=%d", tokens, layer.topK(), rows, n, k, layer.experts());
      BenchResult r = new BenchResult("gemm", layer.name() + " T=" + tokens + " " + routing, backend.name(), shape,
          grouped, gflops, "GFLOP/s", gflops / peakGflops, peakName, baselines, ratios);
      log.printf("  %-28s %9.3f ms %9.1f GFLOP/s %5.1f%% peak  %s%n", r.caseName(), grouped.medianMs(), gflops,
          100 * r.fractionOfPeak(), ratios);
      return r;
    }
  }

  private BenchResult.Baseline baseline(double flops, Runnable body) {
    Timing.Stats t = time(body);
    return new BenchResult.Baseline(t, flops / (t.medianMs() * 1e6));
  }

  private Timing.Stats time(Runnable body) {
    return Timing.measure(() -> {
      body.run();
      backend.synchronize();
    }, quick ? 50 : 200, quick ? 3 : 5, 200, quick ? 100 : 400);
  }

  private Tensor random(DType dtype, long seed, long... shape) {
    long count = 1;
    for (long d : shape) count *= d;
    float[] v = new float[Math.toIntExact(count)];
    SplittableRandom r = new SplittableRandom(seed);
    for (int i = 0; i < v.length; i++) v[i] = (float) (r.nextDouble() * 2 - 1);
    return backend.fromFloats(v, dtype, shape);
  }

  private Tensor offsetsTensor(long[] offsets) {
    return backend.fromLongs(offsets, offsets.length);
  }
}
