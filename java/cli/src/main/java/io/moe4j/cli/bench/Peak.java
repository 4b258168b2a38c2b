package io.moe4j.cli.bench;

import io.moe4j.ops.Backend;
import io.moe4j.runtime.CpuNative;
import io.moe4j.tensor.Device;

/**
 * The compute peak a suite reports fractions of: on the CPU the FMA peak measured now by this
 * process (a register-only loop on every thread), on a GPU the H100 SXM bf16 dense figure.
 */
record Peak(double gflops, String name) {

  static final double H100_BF16_PEAK_GFLOPS = 989_000;

  static Peak of(Backend backend) {
    if (backend.device().kind() != Device.Kind.CPU)
      return new Peak(H100_BF16_PEAK_GFLOPS, "H100 SXM bf16 dense 989 TFLOP/s");
    double[] g = {0};
    CpuNative.check(CpuNative.moe4j_cpu_measure_fma_peak(0.5, g));
    return new Peak(g[0], String.format("measured CPU FMA peak %.0f GFLOP/s (%d threads)", g[0],
        CpuNative.moe4j_cpu_num_threads()));
  }
}
