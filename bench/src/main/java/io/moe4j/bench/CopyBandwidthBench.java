package io.moe4j.bench;

import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import io.moe4j.runtime.CpuNative;
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
 * STREAM-like copy: {@code moe4j_cpu_copy(src, dst, bytes)} (OpenMP-parallel memcpy in 16 KiB
 * pieces) on buffers far larger than the caches. This is the memory-bandwidth ceiling the other
 * benchmarks are compared with. Bytes moved per op: {@link #bytesMoved(long)} = read + write =
 * 2 x buffer (STREAM convention; the write-allocate read of dst that ordinary stores cause is not
 * counted, so the DRAM traffic is really about 3 x buffer).
 *
 * <p>lscpu reports a 480 MiB L3 on this VM, but a copy sweep shows the effective last-level
 * cache for these 2 vCPUs is well below 128 MiB (bandwidth flat from 128 MiB per buffer up); 256
 * MiB and 1 GiB per buffer are both measured.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(1)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
public class CopyBandwidthBench {

  /** Size of each buffer (src and dst) in MiB. */
  @Param({"256", "1024"})
  public int mibPerBuffer;

  private Backend backend;
  private Tensor src;
  private Tensor dst;
  private long bytes;

  /** Bytes read + written by one copy of {@code bytesPerBuffer}. */
  public static long bytesMoved(long bytesPerBuffer) {
    return 2 * bytesPerBuffer;
  }

  @Setup(Level.Trial)
  public void setup() {
    bytes = (long) mibPerBuffer << 20;
    backend = Backends.cpu();
    // F32 so the source can hold non-trivial data; the copy itself is byte-wise.
    src = backend.empty(DType.F32, bytes / 4);
    dst = backend.zeros(DType.F32, bytes / 4); // zeros: fault the pages in before measuring
    Fill.uniform(backend, src, 1, 1f);
  }

  @Benchmark
  public void copy() {
    CpuNative.check(CpuNative.moe4j_cpu_copy(src.address(), dst.address(), bytes));
  }

  /**
   * Second reference: in-place read-modify-write of one buffer ({@code moe4j_cpu_scale} F32 with
   * alpha = 1, x == out), bytes {@link #bytesMoved(long)} = read + write of the buffer. Unlike the
   * copy, the written lines are already in cache when stored, so there is no write-allocate read:
   * this is the ceiling for in-place kernels such as AdamW (param, m, v updated in place), whose
   * counted bytes can exceed the copy's.
   */
  @Benchmark
  public void scaleInPlace() {
    CpuNative.check(CpuNative.moe4j_cpu_scale(DType.F32.code(), src.address(), src.address(), bytes / 4, 1.0f));
  }

  @TearDown(Level.Trial)
  public void tearDown() {
    Fill.closeAll(backend, src, dst);
  }
}
