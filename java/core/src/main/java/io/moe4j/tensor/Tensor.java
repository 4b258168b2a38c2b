package io.moe4j.tensor;

import java.util.Arrays;

/**
 * A contiguous row-major tensor: device, dtype, shape, and an address into memory owned by a
 * {@link CachingAllocator}. A tensor made by a backend owns its block and returns it on
 * {@link #close()}; views ({@link #view}, {@link #reshape}) share the block, own nothing, and must
 * not outlive their owner. Device memory is never left to the garbage collector: close tensors, or
 * create them in a {@link Scope}.
 */
public final class Tensor implements AutoCloseable {

  private final Device device;
  private final DType dtype;
  private final long[] shape;
  private final long numel;
  private final long address;
  private final CachingAllocator owner; // null for views
  private boolean closed;

  private Tensor(Device device, DType dtype, long[] shape, long address, CachingAllocator owner) {
    this.device = device;
    this.dtype = dtype;
    this.shape = shape;
    this.numel = numel(shape);
    this.address = address;
    this.owner = owner;
  }

  /** Allocates an uninitialized tensor from {@code allocator}. */
  public static Tensor allocate(CachingAllocator allocator, DType dtype, long... shape) {
    long[] s = checkShape(shape);
    long bytes = Math.multiplyExact(numel(s), (long) dtype.size());
    return new Tensor(allocator.memory().device(), dtype, s, allocator.allocate(bytes), allocator);
  }

  private static long[] checkShape(long[] shape) {
    if (shape == null) throw new IllegalArgumentException("shape must not be null");
    for (int i = 0; i < shape.length; i++)
      if (shape[i] < 0)
        throw new IllegalArgumentException("shape[" + i + "] must be >= 0, got " + Arrays.toString(shape));
    numel(shape);
    return shape.clone();
  }

  private static long numel(long[] shape) {
    long n = 1;
    for (long d : shape) n = Math.multiplyExact(n, d);
    return n;
  }

  public Device device() {
    return device;
  }

  public DType dtype() {
    return dtype;
  }

  /** A copy of the shape. */
  public long[] shape() {
    return shape.clone();
  }

  public int rank() {
    return shape.length;
  }

  /** Size of dimension {@code i}; negative counts from the end. */
  public long dim(int i) {
    int k = i < 0 ? shape.length + i : i;
    if (k < 0 || k >= shape.length)
      throw new IllegalArgumentException("dim " + i + " out of range for rank " + shape.length);
    return shape[k];
  }

  public long numel() {
    return numel;
  }

  public long byteSize() {
    return numel * dtype.size();
  }

  /** The address of element 0 (host or device pointer). */
  public long address() {
    if (closed) throw new IllegalStateException("tensor " + this + " is closed");
    return address;
  }

  public boolean isView() {
    return owner == null;
  }

  /** A view of {@code shape} starting {@code elementOffset} elements in; shares memory. */
  public Tensor view(long elementOffset, long... newShape) {
    long[] s = checkShape(newShape);
    long n = numel(s);
    if (elementOffset < 0 || elementOffset > numel || n > numel - elementOffset)
      throw new IllegalArgumentException(
          "view of " + Arrays.toString(s) + " at offset " + elementOffset + " exceeds tensor of " + numel + " elements");
    return new Tensor(device, dtype, s, address() + elementOffset * dtype.size(), null);
  }

  /** Same memory seen with another shape of equal element count. */
  public Tensor reshape(long... newShape) {
    long[] s = checkShape(newShape);
    if (numel(s) != numel)
      throw new IllegalArgumentException(
          "cannot reshape " + Arrays.toString(shape) + " to " + Arrays.toString(s) + ": element counts differ");
    return new Tensor(device, dtype, s, address(), null);
  }

  /** Returns an owned block to its allocator. Idempotent; a no-op for views. */
  @Override
  public void close() {
    if (closed) return;
    closed = true;
    if (owner != null) owner.free(address);
  }

  @Override
  public String toString() {
    return "Tensor(" + dtype + Arrays.toString(shape) + " on " + device + (isView() ? ", view" : "") + ")";
  }
}
