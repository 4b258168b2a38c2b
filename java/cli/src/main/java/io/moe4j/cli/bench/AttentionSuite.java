package io.moe4j.cli.bench;

import io.moe4j.ops.AttentionOptions;
import io.moe4j.ops.Backend;
import io.moe4j.runtime.CpuNative;
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
 * {@code moe4j bench attention}: flash attention forward against the naive materialized
 * implementation measured in the same run, the flash backward, and KV-cache decode bandwidth.
 *
 * <p>FLOPs follow FlashAttention's convention: forward 4·B·S²·H·D (halved when causal), backward
 * 2.5× the forward, fwd+bwd 3.5×. Decode counts the KV-cache bytes read per call,
 * B·(context + 1)·Hkv·D·2·element size, against a device copy measured in the same run (STREAM
 * convention: 2 × the bytes copied). cpu: f32, B = 1 and Hq = Hkv = max(2, threads) (scaled down
 * from the GPU shapes, which keep 16k tokens per batch and H·D = 2048), the flash and naive
 * forwards of a shape timed alternately (see {@link #interleaved}); cuda: bf16, no naive baseline
 * (cpu only).
 */
public final class AttentionSuite {

  /** A forward/backward shape. */
  public record Shape(long batch, long seq, long heads, long headDim, boolean causal) {
    double forwardFlops() {
      return 4.0 * batch * seq * seq * heads * headDim / (causal ? 2 : 1);
    }

    String label() {
      return "S=" + seq + " D=" + headDim + (causal ? " causal" : "");
    }

    String describe() {
      return String.format("B=%d S=%d Hq=Hkv=%d D=%d %s", batch, seq, heads, headDim, causal ? "causal" : "full");
    }
  }

  /**
   * Scratch bytes by construction (not measured): what each implementation allocates for itself
   * beyond its input and output tensors, computed from the buffer sizes in the native sources (see
   * {@link #flashForwardScratch}); null where it does not apply.
   */
  public record Scratch(long tensorBytes, Long flashBytes, Long naiveBytes, String how) {}

  /** One measured case: the common result fields plus its family and memory figures. */
  public record Case(String family, BenchResult result, Scratch scratch, Map<String, Double> extra) {}

  /** Tile sizes of the CPU flash twin (kernels/common/attention_tiles.h kAttnBlockQ / kAttnBlockK). */
  static final long BR = 64, BC = 64;

  private final Backend backend;
  private final boolean quick;
  private final PrintStream log;

  public AttentionSuite(Backend backend, boolean quick, PrintStream log) {
    this.backend = backend;
    this.quick = quick;
    this.log = log;
  }

  private boolean onCpu() {
    return backend.device().kind() == Device.Kind.CPU;
  }

  List<Shape> shapes() {
    List<Shape> shapes = new ArrayList<>();
    long[] seqs = quick ? new long[] {512} : new long[] {512, 1024, 2048, 4096, 8192};
    long[] dims = quick ? new long[] {64} : new long[] {64, 128};
    boolean[] causal = quick ? new boolean[] {true} : new boolean[] {false, true};
    for (long d : dims)
      for (boolean c : causal)
        for (long s : seqs)
          shapes.add(onCpu() ? new Shape(1, s, cpuHeads(), d, c) : new Shape(Math.max(1, 16384 / s), s, 2048 / d, d, c));
    return shapes;
  }

  /**
   * cpu: one head per thread (at least 2), so the naive baseline — parallel over (batch, head) —
   * has as many items as threads, like the flash twin has enough query tiles; B = 1 keeps the
   * 8k cases within the suite's time budget.
   */
  private long cpuHeads() {
    return Math.max(2, CpuNative.moe4j_cpu_num_threads());
  }

  long[] decodeContexts() {
    return quick ? new long[] {1024} : new long[] {1024, 2048, 4096, 8192, 16384, 32768};
  }

  public List<Case> run() {
    DType dtype = onCpu() ? DType.F32 : DType.BF16;
    int threads = onCpu() ? CpuNative.moe4j_cpu_num_threads() : 0;
    Peak peak = Peak.of(backend);
    double peakGflops = peak.gflops();
    String peakName = peak.name();
    log.println("bench attention on " + backend.name() + ", " + dtype + ", peak: " + peakName
        + (onCpu() ? "; cpu shapes scaled down to B=1, Hq=Hkv=" + cpuHeads() + " (GPU: 16k tokens, H·D=2048)" : ""));
    List<Case> cases = new ArrayList<>();
    for (Shape sh : shapes()) cases.addAll(runShape(sh, dtype, peakGflops, peakName, threads));
    BenchResult.Baseline copy = copyBandwidth();
    log.printf("  copy bandwidth (same run): %.1f GB/s%n", copy.throughput());
    for (long ctx : decodeContexts()) cases.add(runDecode(ctx, dtype, copy, threads));
    return cases;
  }

  /** Forward (flash vs naive) and backward (flash) of one shape. */
  private List<Case> runShape(Shape sh, DType dtype, double peakGflops, String peakName, int threads) {
    long b = sh.batch(), s = sh.seq(), h = sh.heads(), d = sh.headDim();
    AttentionOptions options = new AttentionOptions(sh.causal(), 0, (float) (1 / Math.sqrt(d)));
    String device = backend.name();
    try (Scope sc = new Scope()) {
      Tensor q = sc.add(random(dtype, 1, b, s, h, d)), k = sc.add(random(dtype, 2, b, s, h, d));
      Tensor v = sc.add(random(dtype, 3, b, s, h, d)), dOut = sc.add(random(dtype, 4, b, s, h, d));
      Tensor out = sc.add(backend.empty(dtype, b, s, h, d)), lse = sc.add(backend.empty(DType.F32, b * h * s));
      Tensor dq = sc.add(backend.empty(dtype, b, s, h, d)), dk = sc.add(backend.empty(dtype, b, s, h, d));
      Tensor dv = sc.add(backend.empty(dtype, b, s, h, d));
      long tensorBytes = 5 * q.byteSize() + lse.byteSize();
      double f = sh.forwardFlops();

      Runnable flash = () -> backend.attentionForward(q, k, v, options, out, lse);
      Timing.Stats fwd;
      Map<String, BenchResult.Baseline> baselines = new LinkedHashMap<>();
      Map<String, Double> ratios = new LinkedHashMap<>();
      Map<String, Double> extra = new LinkedHashMap<>();
      Long naiveScratch = null;
      if (onCpu()) {
        try (Tensor naiveOut = backend.empty(dtype, b, s, h, d); Tensor naiveLse = backend.empty(DType.F32, b * h * s)) {
          Timing.Stats[] both = interleaved(flash, () -> backend.attentionNaiveForward(q, k, v, options, naiveOut, naiveLse));
          fwd = both[0];
          Timing.Stats naive = both[1];
          baselines.put("naive_materialized", new BenchResult.Baseline(naive, f / (naive.medianMs() * 1e6)));
          ratios.put("vs_naive_materialized", naive.medianMs() / fwd.medianMs());
          extra.put("max_abs_diff_vs_naive", maxAbsDiff(backend.toFloats(out), backend.toFloats(naiveOut)));
        }
        naiveScratch = naiveScratch(sh, threads);
      } else {
        fwd = time(flash);
      }
      double fwdGflops = f / (fwd.medianMs() * 1e6);
      Scratch fwdScratch = new Scratch(tensorBytes, onCpu() ? flashForwardScratch(sh, threads) : null, naiveScratch,
          onCpu() ? "by construction: flash = cpu_attention.cpp threads × (2·Br·D + 2·D·Bc + Br·Bc) f32 tile buffers + "
              + "32·B + 16·2·B·⌈S/64⌉ bytes of tile plan; naive = cpu_attention_naive.cpp min(threads, B·Hq) × "
              + "(S² + 2·S·D + D) f32" : "not computed for cuda");
      BenchResult fr = new BenchResult("attention", "fwd " + sh.label(), device, sh.describe(), fwd, throughput(fwdGflops),
          unit(), fwdGflops / peakGflops, peakName, baselines, ratios);
      log.printf("  %-24s flash %9.3f ms %8.1f %s %5.1f%% peak", fr.caseName(), fwd.medianMs(), fr.throughput(), unit(),
          100 * fr.fractionOfPeak());
      if (onCpu())
        log.printf("  naive %9.3f ms: %.2fx  (max |diff| %.2g)", baselines.get("naive_materialized").timing().medianMs(),
            ratios.get("vs_naive_materialized"), extra.get("max_abs_diff_vs_naive"));
      log.println();

      backend.attentionForward(q, k, v, options, out, lse); // out and lse of the flash forward for the backward
      Timing.Stats bwd = time(() -> backend.attentionBackward(q, k, v, out, dOut, lse, options, dq, dk, dv));
      double bwdGflops = 2.5 * f / (bwd.medianMs() * 1e6);
      Map<String, BenchResult.Baseline> bwdBaselines = new LinkedHashMap<>();
      bwdBaselines.put("flash_forward", new BenchResult.Baseline(fwd, fwdGflops));
      Map<String, Double> bwdExtra = new LinkedHashMap<>();
      double fwdBwdGflops = 3.5 * f / ((fwd.medianMs() + bwd.medianMs()) * 1e6);
      bwdExtra.put("fwd_bwd_throughput", throughput(fwdBwdGflops));
      bwdExtra.put("fwd_bwd_fraction_of_peak", fwdBwdGflops / peakGflops);
      Scratch bwdScratch = new Scratch(tensorBytes + 4 * q.byteSize(), onCpu() ? flashBackwardScratch(sh, threads) : null, null,
          onCpu() ? "by construction: cpu_attention.cpp threads × (3·Br·D + 5·Bc·D + 2·Br·Bc) f32 tile buffers + tile "
              + "plan + the backend's workspace for the row sums D_i (B·Hq·S f32)" : "not computed for cuda");
      BenchResult br = new BenchResult("attention", "bwd " + sh.label(), device, sh.describe(), bwd, throughput(bwdGflops),
          unit(), bwdGflops / peakGflops, peakName, bwdBaselines, new LinkedHashMap<>());
      log.printf("  %-24s flash %9.3f ms %8.1f %s %5.1f%% peak  (fwd+bwd %.1f %s)%n", br.caseName(), bwd.medianMs(),
          br.throughput(), unit(), 100 * br.fractionOfPeak(), throughput(fwdBwdGflops), unit());
      return List.of(new Case("forward", fr, fwdScratch, extra), new Case("backward", br, bwdScratch, bwdExtra));
    }
  }

  /** Decode of one new token per sequence against a cache of {@code ctx} tokens. */
  private Case runDecode(long ctx, DType dtype, BenchResult.Baseline copy, int threads) {
    long b = 1, hq = 32, hkv = 8, d = 128, maxSeq = ctx + 1;
    int splitK = onCpu() ? (int) Math.max(1, (4L * threads + b * hkv - 1) / (b * hkv)) : (int) Math.min(64, Math.max(1, ctx / 512));
    AttentionOptions options = new AttentionOptions(true, 0, (float) (1 / Math.sqrt(d)));
    try (Scope sc = new Scope()) {
      Tensor q = sc.add(random(dtype, 5, b, 1, hq, d));
      Tensor kNew = sc.add(random(dtype, 6, b, 1, hkv, d)), vNew = sc.add(random(dtype, 7, b, 1, hkv, d));
      Tensor kCache = sc.add(random(dtype, 8, b, maxSeq, hkv, d)), vCache = sc.add(random(dtype, 9, b, maxSeq, hkv, d));
      Tensor lengths = sc.add(backend.fromInts(new int[] {Math.toIntExact(ctx)}, b));
      Tensor out = sc.add(backend.empty(dtype, b, 1, hq, d));
      // lengths are not advanced, so every call appends at the same position and reads ctx + 1 keys
      Timing.Stats t = time(() -> backend.attentionDecode(q, kNew, vNew, kCache, vCache, lengths, options, splitK, out));
      long kvBytes = 2 * b * (ctx + 1) * hkv * d * dtype.size();
      double gbs = kvBytes / (t.medianMs() * 1e6);
      Map<String, BenchResult.Baseline> baselines = new LinkedHashMap<>();
      double copyGbs = copy.throughput();
      baselines.put("copy_bandwidth", copy);
      Map<String, Double> ratios = new LinkedHashMap<>();
      ratios.put("of_copy_bandwidth", gbs / copyGbs);
      String shape = String.format("B=%d context=%d Hq=%d Hkv=%d D=%d new=1 split_k=%d KV=%.1f MiB", b, ctx, hq, hkv, d, splitK,
          kvBytes / 1048576.0);
      BenchResult r = new BenchResult("attention", "decode ctx=" + ctx, backend.name(), shape, t, gbs, "GB/s", gbs / copyGbs,
          String.format("copy bandwidth %.1f GB/s measured in the same run", copyGbs), baselines, ratios);
      log.printf("  %-24s %9.3f ms %8.1f GB/s = %5.1f%% of copy%n", r.caseName(), t.medianMs(), gbs, 100 * gbs / copyGbs);
      return new Case("decode", r, new Scratch(2 * kCache.byteSize() + 2 * q.byteSize(), null, null,
          "tensors only: the decode kernels' scratch is split_k partials per query head, independent of the context"),
          new LinkedHashMap<>());
    }
  }

  /**
   * GB/s of a device copy of 256 MiB (cpu; 1 GiB on cuda) counted as read + write (2 × bytes): the
   * reference the decode bandwidth is compared with.
   */
  private BenchResult.Baseline copyBandwidth() {
    long floats = (quick ? 16L : onCpu() ? 64L : 256L) << 20;
    try (Tensor a = backend.zeros(DType.F32, floats); Tensor c = backend.zeros(DType.F32, floats)) {
      Timing.Stats t = time(() -> backend.copy(a, c));
      return new BenchResult.Baseline(t, 2.0 * a.byteSize() / (t.medianMs() * 1e6));
    }
  }

  /**
   * What the flash forward allocates (cpu_attention.cpp): per-thread tile buffers of
   * forward_scratch_floats(D) = 2·Br·D + 2·D·Bc + Br·Bc f32 (rounded to 16) — independent of S —
   * plus its plan: one 32-byte Seq per sequence and one 16-byte entry per query tile and per key
   * tile (2·B·⌈S/64⌉·16 bytes: linear in S, 0.5 byte per token).
   */
  static long flashForwardScratch(Shape sh, int threads) {
    long d = sh.headDim();
    return threads * roundUp16(2 * BR * d + 2 * d * BC + BR * BC) * 4 + plan(sh);
  }

  /**
   * The flash backward: tile buffers of backward_scratch_floats(D) = 3·Br·D + 5·Bc·D + 2·Br·Bc f32
   * per thread, its plan, and the workspace the backend passes for the row sums D_i
   * (moe4j_cpu_attention_backward_workspace_bytes: B·Hq·S f32 rounded to 256 bytes).
   */
  static long flashBackwardScratch(Shape sh, int threads) {
    long d = sh.headDim();
    return threads * roundUp16(3 * BR * d + 5 * BC * d + 2 * BR * BC) * 4 + plan(sh)
        + (4 * sh.batch() * sh.heads() * sh.seq() + 255) / 256 * 256;
  }

  private static long plan(Shape sh) {
    long tiles = sh.batch() * ((sh.seq() + BR - 1) / BR) + sh.batch() * ((sh.seq() + BC - 1) / BC);
    return 32 * sh.batch() + 16 * tiles;
  }

  /** The naive forward's per-thread score matrix and K/V copies, for the threads that get an item. */
  static long naiveScratch(Shape sh, int threads) {
    long s = sh.seq(), d = sh.headDim();
    long perThread = ((s * s + 2 * s * d + d) * 4 + 63) / 64 * 64;
    return Math.min(threads, sh.batch() * sh.heads()) * perThread;
  }

  private static long roundUp16(long floats) {
    return (floats + 15) / 16 * 16;
  }

  private String unit() {
    return onCpu() ? "GFLOP/s" : "TFLOP/s";
  }

  private double throughput(double gflops) {
    return onCpu() ? gflops : gflops / 1000;
  }

  private static double maxAbsDiff(float[] a, float[] b) {
    double worst = 0;
    for (int i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((double) a[i] - b[i]));
    return worst;
  }

  private Timing.Stats time(Runnable body) {
    return Timing.measure(() -> {
      body.run();
      backend.synchronize();
    }, quick ? 20 : 200, 3, 50, quick ? 50 : 300);
  }

  /**
   * Times a and b alternately (a, b, a, b, ...) after one warm-up run each, so load from other
   * processes on a shared machine hits both about equally and their ratio stays meaningful:
   * at least 3 pairs, more for fast cases (up to about 0.6 s of measuring, 25 pairs).
   */
  private Timing.Stats[] interleaved(Runnable a, Runnable b) {
    double warmA = once(a), warmB = once(b);
    int pairs = (int) Math.max(3, Math.min(25, (quick ? 60 : 600) / (warmA + warmB)));
    double[] ta = new double[pairs], tb = new double[pairs];
    for (int i = 0; i < pairs; i++) {
      ta[i] = once(a);
      tb[i] = once(b);
    }
    return new Timing.Stats[] {stats(ta), stats(tb)};
  }

  private double once(Runnable body) {
    long t0 = System.nanoTime();
    body.run();
    backend.synchronize();
    return (System.nanoTime() - t0) / 1e6;
  }

  private static Timing.Stats stats(double[] ms) {
    double[] s = ms.clone();
    java.util.Arrays.sort(s);
    int n = s.length;
    return new Timing.Stats(n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2, s[0], s[n - 1], n);
  }

  private Tensor random(DType dtype, long seed, long... shape) {
    long count = 1;
    for (long d : shape) count *= d;
    float[] v = new float[Math.toIntExact(count)];
    SplittableRandom r = new SplittableRandom(seed);
    for (int i = 0; i < v.length; i++) v[i] = (float) (r.nextDouble() * 2 - 1);
    return backend.fromFloats(v, dtype, shape);
  }
}
