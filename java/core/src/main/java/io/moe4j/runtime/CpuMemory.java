package io.moe4j.runtime;

import com.sun.jna.Pointer;
import io.moe4j.tensor.Device;
import io.moe4j.tensor.RawMemory;

/** Host memory from libmoe4j_cpu (64-byte aligned), read and written through JNA. */
public final class CpuMemory implements RawMemory {

  @Override
  public Device device() {
    return Device.CPU;
  }

  @Override
  public long allocate(long bytes) {
    long[] out = {0};
    CpuNative.check(CpuNative.moe4j_cpu_alloc(bytes, out));
    return out[0];
  }

  @Override
  public void free(long address) {
    CpuNative.check(CpuNative.moe4j_cpu_free(address));
  }

  @Override
  public void zero(long address, long bytes) {
    CpuNative.check(CpuNative.moe4j_cpu_memset_zero(address, bytes));
  }

  @Override
  public void writeFloats(long address, float[] values) {
    if (values.length > 0) new Pointer(address).write(0, values, 0, values.length);
  }

  @Override
  public void readFloats(long address, float[] out) {
    if (out.length > 0) new Pointer(address).read(0, out, 0, out.length);
  }

  @Override
  public void writeInts(long address, int[] values) {
    if (values.length > 0) new Pointer(address).write(0, values, 0, values.length);
  }

  @Override
  public void readInts(long address, int[] out) {
    if (out.length > 0) new Pointer(address).read(0, out, 0, out.length);
  }

  @Override
  public void writeBytes(long address, byte[] values) {
    if (values.length > 0) new Pointer(address).write(0, values, 0, values.length);
  }

  @Override
  public void readBytes(long address, byte[] out) {
    if (out.length > 0) new Pointer(address).read(0, out, 0, out.length);
  }
}
