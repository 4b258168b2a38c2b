package io.moe4j.bench;

import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Tensor;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * CPU GEMM through the Java API, f32: a dense 2048³ GEMM, the same FLOPs as a grouped GEMM over 8
 * balanced experts (256 rows each), and 64 experts of 64 rows (N 512, K 1024) as one grouped call
 * versus a loop of 64 per-expert dense calls. FLOPs per op: {@link #flops} (2·M·N·K); GFLOP/s =
 * flops / time.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(1)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
public class GemmBench {

  /** dense2048 | grouped8x256 | grouped64x64 | loop64x64 */
  @Param({"dense2048", "grouped8x256", "grouped64x64", "loop64x64"})
  public String shape;

  private Backend backend;
  private Tensor x;
  private Tensor w;
  private Tensor y;
  private Tensor offsets;
  private int experts;
  private long rowsPerExpert;
  private long n;
  private long k;

  /** 2·M·N·K of each case. */
  public static double flops(String shape) {
    return switch (shape) {
      case "dense2048", "grouped8x256" -> 2.0 * 2048 * 2048 * 2048;
      default -> 2.0 * 64 * 64 * 512 * 1024;
    };
  }

  @Setup(Level.Trial)
  public void setup() {
    backend = Backends.cpu();
    boolean big = shape.equals("dense2048") || shape.equals("grouped8x256");
    experts = shape.equals("dense2048") ? 1 : big ? 8 : 64;
    rowsPerExpert = big ? 2048 / experts : 64;
    n = big ? 2048 : 512;
    k = big ? 2048 : 1024;
    long rows = experts * rowsPerExpert;
    x = backend.empty(DType.F32, rows, k);
    w = backend.empty(DType.F32, experts, n, k);
    y = backend.empty(DType.F32, rows, n);
    Fill.uniform(backend, x, 1, 1f);
    Fill.uniform(backend, w, 2, 1f);
    long[] off = new long[experts + 1];
    for (int e = 0; e < experts; e++) off[e + 1] = off[e] + rowsPerExpert;
    offsets = backend.fromLongs(off, experts + 1);
  }

  @Benchmark
  public void run() {
    switch (shape) {
      case "dense2048" -> backend.gemm(x, w.view(0, n, k), y, false);
      case "loop64x64" -> {
        for (int e = 0; e < experts; e++)
          backend.gemm(x.view(e * rowsPerExpert * k, rowsPerExpert, k), w.view(e * n * k, n, k),
              y.view(e * rowsPerExpert * n, rowsPerExpert, n), false);
      }
      default -> backend.groupedGemmForward(x, w, offsets, y, null, false);
    }
  }

  @TearDown(Level.Trial)
  public void tearDown() {
    offsets.close();
    y.close();
    w.close();
    x.close();
    backend.close();
  }
}
