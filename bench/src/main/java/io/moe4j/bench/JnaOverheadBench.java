package io.moe4j.bench;

import io.moe4j.runtime.CpuNative;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.CompilerControl;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Cost of one JNA direct-mapped call into libmoe4j_cpu that does nothing
 * ({@code moe4j_cpu_noop}, returns MOE4J_OK), against an empty Java static method that the JIT
 * is told not to inline (so the baseline is a real call, not folded away). The difference is the
 * fixed per-kernel-launch cost every CPU op pays on top of its work. Return values go to JMH's
 * implicit blackhole.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(1)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class JnaOverheadBench {

  @Setup(Level.Trial)
  public void setup() {
    // Loads and registers libmoe4j_cpu outside the measurement; fails fast if a symbol is missing.
    CpuNative.check(CpuNative.moe4j_cpu_noop());
  }

  @CompilerControl(CompilerControl.Mode.DONT_INLINE)
  static int emptyJava() {
    return 0;
  }

  /** Baseline: an empty, non-inlined Java static call. */
  @Benchmark
  public int javaStaticEmpty() {
    return emptyJava();
  }

  /** One JNA direct-mapped native call that does nothing. */
  @Benchmark
  public int jnaNoop() {
    return CpuNative.moe4j_cpu_noop();
  }
}
