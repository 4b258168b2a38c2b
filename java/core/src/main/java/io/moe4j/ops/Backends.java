package io.moe4j.ops;

import io.moe4j.runtime.CpuMemory;
import io.moe4j.runtime.CudaDevice;
import io.moe4j.runtime.CudaSupport;
import io.moe4j.runtime.Moe4jException;
import io.moe4j.tensor.CachingAllocator;

/**
 * Opens backends by name: {@code auto} (cuda:0 when a GPU and libmoe4j_cuda are usable, else cpu),
 * {@code cpu}, {@code cuda} or {@code cuda:N}. Each backend owns its allocator; close it when done.
 */
public final class Backends {

  private Backends() {}

  public static Backend cpu() {
    return new NativeBackend("cpu", new CpuKernels(), new CachingAllocator(new CpuMemory()), () -> {}, () -> {});
  }

  /** Opens cuda:index, or throws naming why CUDA cannot work here. */
  public static Backend cuda(int index) {
    CudaSupport.Status status = CudaSupport.probe();
    if (!status.available())
      throw new Moe4jException(Moe4jException.Status.NO_DEVICE, "--device cuda:" + index + " is unavailable: " + status.reason());
    CudaDevice device = new CudaDevice(index);
    return new NativeBackend(
        "cuda:" + index, new CudaKernels(device), new CachingAllocator(device), device::synchronize, device);
  }

  /** Parses {@code auto | cpu | cuda | cuda:N}. */
  public static Backend open(String spec) {
    if (spec == null) throw new IllegalArgumentException("--device must be auto, cpu, cuda or cuda:N, got null");
    String s = spec.trim().toLowerCase(java.util.Locale.ROOT);
    if (s.equals("cpu")) return cpu();
    if (s.equals("auto")) return CudaSupport.probe().available() ? cuda(0) : cpu();
    if (s.equals("cuda")) return cuda(0);
    if (s.startsWith("cuda:")) {
      try {
        int index = Integer.parseInt(s.substring(5));
        if (index >= 0) return cuda(index);
      } catch (NumberFormatException ignored) {
        // fall through to the error below
      }
    }
    throw new IllegalArgumentException("--device must be auto, cpu, cuda or cuda:N (N >= 0), got '" + spec + "'");
  }
}
