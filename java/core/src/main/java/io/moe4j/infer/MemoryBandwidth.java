package io.moe4j.infer;

import io.moe4j.ops.Backend;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Tensor;

/** The backend's copy bandwidth, measured: the yardstick for memory-bound decoding. */
public final class MemoryBandwidth {

  private MemoryBandwidth() {}

  /** Median of 5 copies of 256 MiB (read + write bytes counted) in GB/s. */
  public static double copyGigabytesPerSecond(Backend backend) {
    long n = 64L << 20; // F32 elements: 256 MiB
    try (Tensor a = backend.zeros(DType.F32, n); Tensor b = backend.zeros(DType.F32, n)) {
      backend.copy(a, b);
      backend.synchronize();
      double[] seconds = new double[5];
      for (int i = 0; i < seconds.length; i++) {
        long t0 = System.nanoTime();
        backend.copy(a, b);
        backend.synchronize();
        seconds[i] = (System.nanoTime() - t0) / 1e9;
      }
      java.util.Arrays.sort(seconds);
      return 2.0 * n * 4 / seconds[seconds.length / 2] / 1e9;
    }
  }
}
