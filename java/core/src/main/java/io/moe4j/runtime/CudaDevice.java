package io.moe4j.runtime;

import io.moe4j.tensor.Device;
import io.moe4j.tensor.RawMemory;
import java.util.concurrent.ConcurrentHashMap;
import java.util.Map;
import jcuda.Pointer;
import jcuda.driver.CUcontext;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUstream;
import jcuda.driver.CUstream_flags;
import jcuda.driver.JCudaDriver;

/**
 * One CUDA device through JCuda's driver API: its primary context (retained once, made current on
 * every thread that touches the GPU — never cuCtxCreate, never a device reset, so JCuda and the
 * static cudart inside libmoe4j_cuda share one context), a non-blocking stream for our kernels, and
 * raw device memory. Host copies are queued on that stream (so they are ordered after the kernels
 * before them) and waited for.
 */
public final class CudaDevice implements RawMemory, AutoCloseable {

  /** A CUdeviceptr whose raw address can be read. */
  static final class DevicePointer extends CUdeviceptr {
    long address() {
      return getNativePointer() + getByteOffset();
    }
  }

  /** A CUstream whose raw handle can be passed to libmoe4j_cuda. */
  static final class RawStream extends CUstream {
    long handle() {
      return getNativePointer();
    }
  }

  private final Device device;
  private final CUdevice cuDevice = new CUdevice();
  private final CUcontext context = new CUcontext();
  private final RawStream stream = new RawStream();
  private final Map<Long, DevicePointer> allocations = new ConcurrentHashMap<>();
  private boolean closed;

  public CudaDevice(int index) {
    CudaSupport.Status status = CudaSupport.probe();
    if (!status.available()) throw new Moe4jException(Moe4jException.Status.NO_DEVICE, "cuda unavailable: " + status.reason());
    if (index >= status.devices().size())
      throw new IllegalArgumentException(
          "cuda:" + index + " does not exist: " + status.devices().size() + " device(s) visible");
    this.device = Device.cuda(index);
    JCudaDriver.setExceptionsEnabled(true);
    JCudaDriver.cuDeviceGet(cuDevice, index);
    JCudaDriver.cuDevicePrimaryCtxRetain(context, cuDevice);
    makeCurrent();
    JCudaDriver.cuStreamCreate(stream, CUstream_flags.CU_STREAM_NON_BLOCKING);
  }

  @Override
  public Device device() {
    return device;
  }

  /** Binds the primary context to the calling thread (cheap; done before every GPU call). */
  public void makeCurrent() {
    JCudaDriver.cuCtxSetCurrent(context);
  }

  /** The CUstream handle our kernels run on. */
  public long streamHandle() {
    return stream.handle();
  }

  public void synchronize() {
    makeCurrent();
    JCudaDriver.cuStreamSynchronize(stream);
  }

  @Override
  public long allocate(long bytes) {
    makeCurrent();
    DevicePointer p = new DevicePointer();
    try {
      JCudaDriver.cuMemAlloc(p, bytes);
    } catch (RuntimeException e) {
      throw new Moe4jException(Moe4jException.Status.OUT_OF_MEMORY, "cuMemAlloc of " + bytes + " bytes on " + device + " failed: " + e.getMessage());
    }
    allocations.put(p.address(), p);
    return p.address();
  }

  @Override
  public void free(long address) {
    DevicePointer p = allocations.remove(address);
    if (p == null) throw new IllegalStateException("0x" + Long.toHexString(address) + " is not a device allocation of " + device);
    makeCurrent();
    JCudaDriver.cuMemFree(p);
  }

  /** A driver-API pointer to any device address (block start or inside a block). */
  private static CUdeviceptr at(long address) {
    return new DevicePointer().withByteOffset(address);
  }

  @Override
  public void zero(long address, long bytes) {
    makeCurrent();
    JCudaDriver.cuMemsetD8Async(at(address), (byte) 0, bytes, stream);
  }

  private void toDevice(long address, Pointer host, long bytes) {
    if (bytes == 0) return;
    makeCurrent();
    JCudaDriver.cuMemcpyHtoDAsync(at(address), host, bytes, stream);
    JCudaDriver.cuStreamSynchronize(stream); // the Java array must stay valid until the copy is done
  }

  private void toHost(Pointer host, long address, long bytes) {
    if (bytes == 0) return;
    makeCurrent();
    JCudaDriver.cuMemcpyDtoHAsync(host, at(address), bytes, stream);
    JCudaDriver.cuStreamSynchronize(stream);
  }

  @Override
  public void writeFloats(long address, float[] values) {
    toDevice(address, Pointer.to(values), 4L * values.length);
  }

  @Override
  public void readFloats(long address, float[] out) {
    toHost(Pointer.to(out), address, 4L * out.length);
  }

  @Override
  public void writeInts(long address, int[] values) {
    toDevice(address, Pointer.to(values), 4L * values.length);
  }

  @Override
  public void readInts(long address, int[] out) {
    toHost(Pointer.to(out), address, 4L * out.length);
  }

  @Override
  public void writeBytes(long address, byte[] values) {
    toDevice(address, Pointer.to(values), values.length);
  }

  @Override
  public void readBytes(long address, byte[] out) {
    toHost(Pointer.to(out), address, out.length);
  }

  /** Destroys the stream and releases the primary context (never resets the device). */
  @Override
  public synchronized void close() {
    if (closed) return;
    closed = true;
    makeCurrent();
    JCudaDriver.cuStreamSynchronize(stream);
    JCudaDriver.cuStreamDestroy(stream);
    JCudaDriver.cuDevicePrimaryCtxRelease(cuDevice);
  }
}
