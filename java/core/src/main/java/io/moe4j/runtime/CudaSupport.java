package io.moe4j.runtime;

import com.sun.jna.NativeLibrary;
import java.util.ArrayList;
import java.util.List;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdevice_attribute;
import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;

/**
 * Decides whether the cuda backend can work here and, if not, says exactly why: library not built,
 * libcuda.so.1 missing, JCuda natives not loadable, driver too old, or no device. The probe runs
 * once per process and never throws.
 */
public final class CudaSupport {

  /** CUDA version our static runtime needs from the driver (cudart 12.4 minimum). */
  public static final int MIN_DRIVER_CUDA_VERSION = 12040;

  /** What the probe found. {@code reason} is null exactly when {@code available}. */
  public record Status(
      boolean available,
      String reason,
      String libraryPath,
      int driverVersion,
      int runtimeVersion,
      String cublasLibrary,
      List<GpuInfo> devices) {}

  /** One visible GPU. */
  public record GpuInfo(
      int index,
      String name,
      int multiprocessors,
      long totalMemoryBytes,
      int computeCapabilityMajor,
      int computeCapabilityMinor) {}

  private static Status status;

  private CudaSupport() {}

  public static synchronized Status probe() {
    if (status == null) status = runProbe();
    return status;
  }

  private static Status unavailable(String reason, String lib, int driver, int runtime) {
    return new Status(false, reason, lib, driver, runtime, "", List.of());
  }

  private static Status runProbe() {
    String lib = NativeLibraries.locate(NativeLibraries.CUDA_LIBRARY).map(Object::toString).orElse(null);
    if (lib == null)
      return unavailable(
          "library not built: libmoe4j_cuda.so is not in this build (no CUDA toolkit was found"
              + " when it was built)",
          null, 0, 0);
    try {
      NativeLibrary.getInstance("libcuda.so.1");
    } catch (UnsatisfiedLinkError e) {
      return unavailable(
          "libcuda.so.1 missing: no NVIDIA driver is installed (or it is not on the library path)",
          lib, 0, 0);
    }
    int[] driver = {0};
    int[] runtime = {0};
    try {
      CudaNative.check(CudaNative.moe4j_cuda_versions(driver, runtime));
    } catch (Moe4jException | LinkageError e) {
      return unavailable("cannot query the CUDA driver: " + e.getMessage(), lib, 0, 0);
    }
    if (driver[0] < runtime[0] && driver[0] < MIN_DRIVER_CUDA_VERSION)
      return unavailable(
          "driver too old: it supports CUDA " + version(driver[0]) + ", libmoe4j_cuda needs "
              + version(runtime[0]),
          lib, driver[0], runtime[0]);
    int[] count = {0};
    int rc = CudaNative.moe4j_cuda_device_count(count);
    if (rc != Moe4jException.Status.OK)
      return unavailable(CudaNative.moe4j_cuda_last_error(), lib, driver[0], runtime[0]);
    List<GpuInfo> devices;
    try {
      devices = queryDevices();
    } catch (LinkageError | RuntimeException e) {
      return unavailable(
          "JCuda driver natives cannot be loaded: " + e.getMessage(), lib, driver[0], runtime[0]);
    }
    if (devices.isEmpty()) return unavailable("no device: no CUDA GPU is visible", lib, driver[0], runtime[0]);
    return new Status(
        true, null, lib, driver[0], runtime[0], CudaNative.moe4j_cuda_cublas_library(), devices);
  }

  private static List<GpuInfo> queryDevices() {
    JCudaDriver.setExceptionsEnabled(true);
    JCudaDriver.cuInit(0);
    int[] count = {0};
    JCudaDriver.cuDeviceGetCount(count);
    List<GpuInfo> out = new ArrayList<>();
    for (int i = 0; i < count[0]; i++) {
      CUdevice dev = new CUdevice();
      JCudaDriver.cuDeviceGet(dev, i);
      byte[] name = new byte[256];
      JCudaDriver.cuDeviceGetName(name, name.length, dev);
      long[] mem = {0};
      JCudaDriver.cuDeviceTotalMem(mem, dev);
      out.add(
          new GpuInfo(
              i,
              cString(name),
              attribute(dev, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
              mem[0],
              attribute(dev, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
              attribute(dev, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)));
    }
    return out;
  }

  private static int attribute(CUdevice dev, int attr) {
    int[] v = {0};
    int rc = JCudaDriver.cuDeviceGetAttribute(v, attr, dev);
    if (rc != CUresult.CUDA_SUCCESS) throw new IllegalStateException(CUresult.stringFor(rc));
    return v[0];
  }

  private static String cString(byte[] bytes) {
    int n = 0;
    while (n < bytes.length && bytes[n] != 0) n++;
    return new String(bytes, 0, n, java.nio.charset.StandardCharsets.UTF_8);
  }

  /** 13000 → "13.0". */
  public static String version(int cudaVersion) {
    return (cudaVersion / 1000) + "." + (cudaVersion % 1000) / 10;
  }
}
