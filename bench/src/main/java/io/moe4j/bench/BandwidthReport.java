package io.moe4j.bench;

import io.moe4j.runtime.CpuNative;
import io.moe4j.tensor.DType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.OptionalLong;
import org.openjdk.jmh.infra.BenchmarkParams;
import org.openjdk.jmh.results.Result;
import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.results.format.ResultFormatType;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.RunnerException;
import org.openjdk.jmh.runner.options.ChainedOptionsBuilder;
import org.openjdk.jmh.runner.options.OptionsBuilder;
import org.openjdk.jmh.util.Statistics;

/**
 * Runs the moe4j JMH benchmarks programmatically and prints a bandwidth table: per benchmark the
 * median and mean time, the JMH score error (99.9% confidence half-width), min..max over the
 * measurement iterations, the achieved GB/s (bytes moved per op / median time, bytes counted as
 * in each benchmark's {@code bytesMoved}-style method) and the fraction of the copy bandwidth
 * measured in the same run ("of copy", best median over the copy sizes) and of the in-place
 * read-modify-write bandwidth ("of rmw", best median of {@code scaleInPlace}); for the JNA benchmarks, ns per call.
 *
 * <pre>
 * java -cp bench/target/benchmarks.jar io.moe4j.bench.BandwidthReport [options] [regex ...]
 *   regex ...        JMH include patterns (default: every benchmark in io.moe4j.bench);
 *                    the copy benchmarks (copy, scaleInPlace) are added when no pattern
 *                    selects the copy
 *   --no-copy        do not add them
 *   -p name=v1,v2    override a @Param (e.g. -p shape=8192x4096)
 *   --quick          1 warmup + 2 measurement iterations of 1 s (smoke test, not for reporting)
 *   --json FILE      also write JMH's JSON results to FILE
 * </pre>
 */
public final class BandwidthReport {

  private static final String COPY = "io.moe4j.bench.CopyBandwidthBench.copy";
  private static final String IN_PLACE = "io.moe4j.bench.CopyBandwidthBench.scaleInPlace";

  private BandwidthReport() {}

  public static void main(String[] args) throws RunnerException, IOException {
    List<String> includes = new ArrayList<>();
    List<String[]> params = new ArrayList<>();
    boolean quick = false;
    boolean addCopy = true;
    String json = null;
    for (int i = 0; i < args.length; i++) {
      String a = args[i];
      switch (a) {
        case "--quick" -> quick = true;
        case "--no-copy" -> addCopy = false;
        case "--json" -> json = requireValue(args, ++i, a);
        case "-p" -> {
          String kv = requireValue(args, ++i, a);
          int eq = kv.indexOf('=');
          if (eq <= 0) throw new IllegalArgumentException("-p expects name=v1,v2, got " + kv);
          params.add(new String[] {kv.substring(0, eq), kv.substring(eq + 1)});
        }
        case "-h", "--help" -> {
          System.out.println(
              "usage: BandwidthReport [--quick] [--no-copy] [--json FILE] [-p name=v1,v2] [regex ...]");
          return;
        }
        default -> includes.add(a);
      }
    }
    if (includes.isEmpty()) includes.add("io\\.moe4j\\.bench\\..*");
    if (addCopy && includes.stream().noneMatch(r -> java.util.regex.Pattern.compile(r).matcher(COPY).find()))
      includes.add("io\\.moe4j\\.bench\\.CopyBandwidthBench\\.");

    ChainedOptionsBuilder options = new OptionsBuilder();
    for (String r : includes) options.include(r);
    for (String[] p : params) options.param(p[0], p[1].split(","));
    if (quick)
      options
          .warmupIterations(1)
          .warmupTime(org.openjdk.jmh.runner.options.TimeValue.seconds(1))
          .measurementIterations(2)
          .measurementTime(org.openjdk.jmh.runner.options.TimeValue.seconds(1));
    if (json != null) options.resultFormat(ResultFormatType.JSON).result(json);

    printMachine();
    Collection<RunResult> results = new Runner(options.build()).run();
    System.out.println();
    System.out.print(table(results));
  }

  private static String requireValue(String[] args, int i, String flag) {
    if (i >= args.length) throw new IllegalArgumentException(flag + " needs a value");
    return args[i];
  }

  private static void printMachine() {
    String model = "?";
    try {
      for (String line : Files.readAllLines(Path.of("/proc/cpuinfo")))
        if (line.startsWith("model name")) {
          model = line.substring(line.indexOf(':') + 1).trim();
          break;
        }
    } catch (IOException | RuntimeException ignored) {
      // not Linux: leave "?"
    }
    String simd = "?";
    int threads = -1;
    try {
      simd = CpuNative.moe4j_cpu_simd_level();
      threads = CpuNative.moe4j_cpu_num_threads();
    } catch (Throwable t) {
      simd = "unavailable (" + t.getClass().getSimpleName() + ": " + t.getMessage() + ")";
    }
    System.out.printf(
        Locale.ROOT,
        "machine: %s, %d logical CPUs, %.1f GiB max heap; libmoe4j_cpu simd=%s, omp threads=%d%n",
        model,
        Runtime.getRuntime().availableProcessors(),
        Runtime.getRuntime().maxMemory() / (double) (1L << 30),
        simd,
        threads);
  }

  /** Bytes moved per op of a benchmark, when it is a bandwidth benchmark. */
  static OptionalLong bytesPerOp(BenchmarkParams p) {
    String b = p.getBenchmark();
    String method = b.substring(b.lastIndexOf('.') + 1);
    String cls = b.substring(0, b.lastIndexOf('.'));
    cls = cls.substring(cls.lastIndexOf('.') + 1);
    switch (cls) {
      case "CopyBandwidthBench":
        return OptionalLong.of(CopyBandwidthBench.bytesMoved((long) Integer.parseInt(p.getParam("mibPerBuffer")) << 20));
      case "RmsNormBench": {
        long[] s = RmsNormBench.parseShape(p.getParam("shape"));
        int size = DType.valueOf(p.getParam("dtype")).size();
        return OptionalLong.of(
            method.equals("forward")
                ? RmsNormBench.forwardBytes(s[0], s[1], size)
                : RmsNormBench.backwardBytes(s[0], s[1], size));
      }
      case "AdamWBench": {
        int g = DType.valueOf(p.getParam("grad")).size();
        String c = p.getParam("copy");
        int cs = c.equals("none") ? 0 : DType.valueOf(c).size();
        return OptionalLong.of(AdamWBench.bytesMoved(AdamWBench.N, g, cs));
      }
      default:
        return OptionalLong.empty();
    }
  }

  /** Seconds per unit of a JMH AverageTime score unit such as "ms/op". */
  static double secondsPerUnit(String unit) {
    String u = unit.substring(0, unit.indexOf('/'));
    return switch (u) {
      case "s" -> 1;
      case "ms" -> 1e-3;
      case "us" -> 1e-6;
      case "ns" -> 1e-9;
      default -> throw new IllegalArgumentException("unexpected unit " + unit);
    };
  }

  static String label(BenchmarkParams p) {
    String b = p.getBenchmark();
    String shortName = b.substring(b.lastIndexOf('.', b.lastIndexOf('.') - 1) + 1);
    StringBuilder sb = new StringBuilder(shortName);
    List<String> keys = new ArrayList<>(p.getParamsKeys());
    if (!keys.isEmpty()) {
      sb.append(" [");
      for (int i = 0; i < keys.size(); i++) {
        if (i > 0) sb.append(", ");
        sb.append(keys.get(i)).append('=').append(p.getParam(keys.get(i)));
      }
      sb.append(']');
    }
    return sb.toString();
  }

  static String table(Collection<RunResult> results) {
    // References: the best median GB/s over the sizes of the copy (and of the in-place scale);
    // every size is far beyond the effective cache, and the best is the conservative choice.
    double[] copy = reference(results, COPY);
    double[] inPlace = reference(results, IN_PLACE);
    double copyGbps = copy[1];
    double inPlaceGbps = inPlace[1];

    StringBuilder out = new StringBuilder();
    out.append(
        String.format(
            Locale.ROOT,
            "| %-58s | %-6s | %10s | %10s | %10s | %-21s | %8s | %8s | %8s |%n",
            "benchmark", "unit", "median", "mean", "error", "min..max", "GB/s", "of copy", "of rmw"));
    out.append("|").append("-".repeat(60)).append("|--------|------------|------------|------------|-----------------------|----------|----------|----------|\n");
    double javaNs = Double.NaN;
    double jnaNs = Double.NaN;
    for (RunResult r : results) {
      BenchmarkParams p = r.getParams();
      Result<?> res = r.getPrimaryResult();
      Statistics st = res.getStatistics();
      double median = st.getPercentile(50);
      String unit = res.getScoreUnit();
      OptionalLong bytes = bytesPerOp(p);
      String gbps = "-";
      String frac = "-";
      String fracRmw = "-";
      if (bytes.isPresent()) {
        double g = bytes.getAsLong() / (median * secondsPerUnit(unit)) / 1e9;
        gbps = String.format(Locale.ROOT, "%.2f", g);
        if (!Double.isNaN(copyGbps)) frac = String.format(Locale.ROOT, "%.2f", g / copyGbps);
        if (!Double.isNaN(inPlaceGbps)) fracRmw = String.format(Locale.ROOT, "%.2f", g / inPlaceGbps);
      }
      if (p.getBenchmark().endsWith("JnaOverheadBench.jnaNoop")) jnaNs = median * secondsPerUnit(unit) * 1e9;
      if (p.getBenchmark().endsWith("JnaOverheadBench.javaStaticEmpty")) javaNs = median * secondsPerUnit(unit) * 1e9;
      out.append(
          String.format(
              Locale.ROOT,
              "| %-58s | %-6s | %10s | %10s | %10s | %-21s | %8s | %8s | %8s |%n",
              label(p),
              unit,
              fmt(median),
              fmt(res.getScore()),
              "±" + fmt(res.getScoreError()),
              fmt(st.getMin()) + ".." + fmt(st.getMax()),
              gbps,
              frac,
              fracRmw));
    }
    out.append('\n');
    out.append("GB/s = bytes moved per op (read + written, see each benchmark's bytes method) / median time.\n");
    if (!Double.isNaN(copyGbps))
      out.append(
          String.format(
              Locale.ROOT,
              "copy bandwidth reference (best copy median, %d MiB per buffer): %.2f GB/s%n",
              (long) copy[0] / 2 >> 20,
              copyGbps));
    if (!Double.isNaN(inPlaceGbps))
      out.append(
          String.format(
              Locale.ROOT,
              "in-place (rmw) reference (best scaleInPlace median, %d MiB): %.2f GB/s%n",
              (long) inPlace[0] / 2 >> 20,
              inPlaceGbps));
    if (!Double.isNaN(jnaNs))
      out.append(
          String.format(
              Locale.ROOT,
              "JNA direct call (moe4j_cpu_noop): %.2f ns/call%s%n",
              jnaNs,
              Double.isNaN(javaNs)
                  ? ""
                  : String.format(Locale.ROOT, "; empty non-inlined Java static call: %.2f ns; overhead %.2f ns/call", javaNs, jnaNs - javaNs)));
    return out.toString();
  }

  /** {bytes per op, GB/s at the median} of the fastest (by median GB/s) run of {@code benchmark}. */
  private static double[] reference(Collection<RunResult> results, String benchmark) {
    double[] best = {-1, Double.NaN};
    for (RunResult r : results) {
      BenchmarkParams p = r.getParams();
      if (!p.getBenchmark().equals(benchmark)) continue;
      Result<?> res = r.getPrimaryResult();
      long bytes = bytesPerOp(p).getAsLong();
      double gbps = bytes / (res.getStatistics().getPercentile(50) * secondsPerUnit(res.getScoreUnit())) / 1e9;
      if (Double.isNaN(best[1]) || gbps > best[1]) {
        best[0] = bytes;
        best[1] = gbps;
      }
    }
    return best;
  }

  private static String fmt(double v) {
    if (Double.isNaN(v)) return "NaN";
    double a = Math.abs(v);
    if (a >= 100) return String.format(Locale.ROOT, "%.1f", v);
    if (a >= 10) return String.format(Locale.ROOT, "%.2f", v);
    return String.format(Locale.ROOT, "%.3f", v);
  }
}
