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
 * RMSNorm forward and backward on the CPU backend through the Java API
 * ({@link Backend#rmsNormForward}, {@link Backend#rmsNormBackward}), F32 and BF16.
 *
 * <p>Bytes moved per op (each tensor counted once, as the kernel's minimum traffic):
 *
 * <ul>
 *   <li>forward: read x [rows, cols] + weight [cols] (dtype), write y [rows, cols] (dtype) + rstd
 *       [rows] (F32) &mdash; {@link #forwardBytes};
 *   <li>backward: read dy, x [rows, cols] + weight [cols] (dtype) + rstd [rows] (F32), write dx
 *       [rows, cols] (dtype) + dWeight [cols] (F32, overwritten) &mdash; {@link #backwardBytes}.
 * </ul>
 *
 * <p>8192x4096 is the reference shape; BF16 at that shape is 64 MiB per tensor, close to the
 * effective cache of this VM, so 32768x4096 is measured too.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(1)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
public class RmsNormBench {

  @Param({"F32", "BF16"})
  public String dtype;

  /** rows x cols. */
  @Param({"8192x4096", "32768x4096"})
  public String shape;

  private static final float EPS = 1e-6f;

  private Backend backend;
  private Tensor x;
  private Tensor weight;
  private Tensor y;
  private Tensor rstd;
  private Tensor dy;
  private Tensor dx;
  private Tensor dWeight;

  static long[] parseShape(String shape) {
    String[] parts = shape.split("x");
    return new long[] {Long.parseLong(parts[0]), Long.parseLong(parts[1])};
  }

  /** Bytes read + written by one forward: x, w read; y, rstd written. */
  public static long forwardBytes(long rows, long cols, int elementSize) {
    return rows * cols * elementSize // x
        + cols * elementSize // weight
        + rows * cols * elementSize // y
        + rows * 4L; // rstd (F32)
  }

  /** Bytes read + written by one backward: dy, x, w, rstd read; dx, dWeight written. */
  public static long backwardBytes(long rows, long cols, int elementSize) {
    return 2 * rows * cols * elementSize // dy, x
        + cols * elementSize // weight
        + rows * 4L // rstd (F32)
        + rows * cols * elementSize // dx
        + cols * 4L; // dWeight (F32)
  }

  @Setup(Level.Trial)
  public void setup() {
    long[] s = parseShape(shape);
    long rows = s[0];
    long cols = s[1];
    DType dt = DType.valueOf(dtype);
    backend = Backends.cpu();
    x = backend.empty(dt, rows, cols);
    Fill.uniform(backend, x, 11, 2f);
    weight = backend.empty(dt, cols);
    Fill.range(backend, weight, 12, 0.5f, 1.5f);
    dy = backend.empty(dt, rows, cols);
    Fill.uniform(backend, dy, 13, 1f);
    // Outputs zero-filled so their pages are faulted in before measuring.
    y = backend.zeros(dt, rows, cols);
    dx = backend.zeros(dt, rows, cols);
    rstd = backend.zeros(DType.F32, rows);
    dWeight = backend.zeros(DType.F32, cols);
    backend.rmsNormForward(x, weight, EPS, y, rstd); // a valid rstd for backward
  }

  @Benchmark
  public void forward() {
    backend.rmsNormForward(x, weight, EPS, y, rstd);
  }

  @Benchmark
  public void backward() {
    backend.rmsNormBackward(dy, x, weight, rstd, dx, dWeight, false);
  }

  @TearDown(Level.Trial)
  public void tearDown() {
    Fill.closeAll(backend, x, weight, y, rstd, dy, dx, dWeight);
  }
}
