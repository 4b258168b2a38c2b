package io.moe4j.bench;

import io.moe4j.ops.AdamWConfig;
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
 * One fused AdamW step on the CPU backend ({@link Backend#adamwStep}, {@link
 * AdamWConfig#defaults(float)} with lr 1e-3, no gradient scale) over n = 64M parameters.
 *
 * <p>Bytes moved per op ({@link #bytesMoved}): read param, grad, m, v; write param, m, v; plus
 * the optional low-precision param copy write. param, m, v are F32; grad is F32 or BF16.
 * Each step uses the next step number (bias corrections change), as in training.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(1)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
public class AdamWBench {

  /** Number of parameters. */
  public static final long N = 64L << 20;

  /** Gradient dtype. */
  @Param({"F32", "BF16"})
  public String grad;

  /** Dtype of the param copy written for the next forward, or "none". */
  @Param({"none", "BF16"})
  public String copy;

  private Backend backend;
  private Tensor param;
  private Tensor gradient;
  private Tensor m;
  private Tensor v;
  private Tensor paramCopy;
  private final AdamWConfig config = AdamWConfig.defaults(1e-3f);
  private long step;

  /** Bytes read + written by one step: p, g, m, v read; p, m, v (and the copy) written. */
  public static long bytesMoved(long n, int gradSize, int copySize) {
    return n * (4L /* p */ + gradSize + 4L /* m */ + 4L /* v */) // reads
        + n * (4L + 4L + 4L) // writes p, m, v
        + n * copySize; // optional param copy (0 when none)
  }

  @Setup(Level.Trial)
  public void setup() {
    backend = Backends.cpu();
    param = backend.empty(DType.F32, N);
    Fill.uniform(backend, param, 21, 0.02f);
    gradient = backend.empty(DType.valueOf(grad), N);
    Fill.uniform(backend, gradient, 22, 1e-3f);
    m = backend.zeros(DType.F32, N);
    v = backend.zeros(DType.F32, N);
    paramCopy = copy.equals("none") ? null : backend.zeros(DType.valueOf(copy), N);
    step = 0;
  }

  @Benchmark
  public void step() {
    backend.adamwStep(param, gradient, m, v, paramCopy, config, ++step, null);
  }

  @TearDown(Level.Trial)
  public void tearDown() {
    Fill.closeAll(backend, param, gradient, m, v, paramCopy);
  }
}
