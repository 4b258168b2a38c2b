package io.moe4j.runtime;

import io.moe4j.tensor.Device;
import io.moe4j.tensor.RawMemory;
import java.util.concurrent.ConcurrentHashMap;
import java.util.Map;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import jcuda.Pointer;
import jcuda.driver.CUevent;
import jcuda.driver.CUevent_flags;
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
 * raw device memory. Host copies go through a pinned staging buffer, queued on that stream (so
 * they are ordered after the kernels before them) and waited for.
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
  private static final int STAGING_BYTES = 4 << 20;
  private final Pointer staging = new Pointer();
  private final ByteBuffer stagingBuffer;
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
    JCudaDriver.cuMemHostAlloc(staging, STAGING_BYTES, 0);
    stagingBuffer = staging.getByteBuffer(0, STAGING_BYTES).order(ByteOrder.nativeOrder());
  }

  /** Times work on this device's stream with CUDA events. */
  public final class Timer implements AutoCloseable {
    private final CUevent start = new CUevent();
    private final CUevent stop = new CUevent();

    private Timer() {
      makeCurrent();
      JCudaDriver.cuEventCreate(start, CUevent_flags.CU_EVENT_DEFAULT);
      JCudaDriver.cuEventCreate(stop, CUevent_flags.CU_EVENT_DEFAULT);
    }

    public void start() {
      makeCurrent();
      JCudaDriver.cuEventRecord(start, stream);
    }

    /** Records the stop event, waits for it, and returns the milliseconds since {@link #start()}. */
    public float stopMillis() {
      makeCurrent();
      JCudaDriver.cuEventRecord(stop, stream);
      JCudaDriver.cuEventSynchronize(stop);
      float[] ms = {0};
      JCudaDriver.cuEventElapsedTime(ms, start, stop);
      return ms[0];
    }

    @Override
    public void close() {
      JCudaDriver.cuEventDestroy(start);
      JCudaDriver.cuEventDestroy(stop);
    }
  }

  public Timer timer() {
    return new Timer();
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

  /** Fills the staging buffer from a Java array (elements [from, from + count)). */
  private interface StageIn {
    void fill(ByteBuffer staging, int from, int count);
  }

  /** Drains the staging buffer into a Java array. */
  private interface StageOut {
    void drain(ByteBuffer staging, int from, int count);
  }

  private synchronized void toDevice(long address, int elements, int elementSize, StageIn in) {
    makeCurrent();
    int perChunk = STAGING_BYTES / elementSize;
    for (int from = 0; from < elements; from += perChunk) {
      int count = Math.min(perChunk, elements - from);
      stagingBuffer.clear();
      in.fill(stagingBuffer, from, count);
      JCudaDriver.cuMemcpyHtoDAsync(at(address + (long) from * elementSize), staging, (long) count * elementSize, stream);
      JCudaDriver.cuStreamSynchronize(stream); // staging is reused by the next chunk
    }
  }

  private synchronized void toHost(long address, int elements, int elementSize, StageOut out) {
    makeCurrent();
    int perChunk = STAGING_BYTES / elementSize;
    for (int from = 0; from < elements; from += perChunk) {
      int count = Math.min(perChunk, elements - from);
      JCudaDriver.cuMemcpyDtoHAsync(staging, at(address + (long) from * elementSize), (long) count * elementSize, stream);
      JCudaDriver.cuStreamSynchronize(stream);
      stagingBuffer.clear();
      out.drain(stagingBuffer, from, count);
    }
  }

  @Override
  public void writeFloats(long address, float[] values) {
    toDevice(address, values.length, 4, (b, from, n) -> b.asFloatBuffer().put(values, from, n));
  }

  @Override
  public void readFloats(long address, float[] out) {
    toHost(address, out.length, 4, (b, from, n) -> b.asFloatBuffer().get(out, from, n));
  }

  @Override
  public void writeInts(long address, int[] values) {
    toDevice(address, values.length, 4, (b, from, n) -> b.asIntBuffer().put(values, from, n));
  }

  @Override
  public void readInts(long address, int[] out) {
    toHost(address, out.length, 4, (b, from, n) -> b.asIntBuffer().get(out, from, n));
  }

  @Override
  public void writeBytes(long address, byte[] values) {
    toDevice(address, values.length, 1, (b, from, n) -> b.put(values, from, n));
  }

  @Override
  public void readBytes(long address, byte[] out) {
    toHost(address, out.length, 1, (b, from, n) -> b.get(out, from, n));
  }

  /** Destroys the stream and releases the primary context (never resets the device). */
  @Override
  public synchronized void close() {
    if (closed) return;
    closed = true;
    makeCurrent();
    JCudaDriver.cuStreamSynchronize(stream);
    JCudaDriver.cuStreamDestroy(stream);
    JCudaDriver.cuMemFreeHost(staging);
    JCudaDriver.cuDevicePrimaryCtxRelease(cuDevice);
  }
}
