package io.moe4j.ops;

import static io.moe4j.ops.Checks.dtype;
import static io.moe4j.ops.Checks.numel;
import static io.moe4j.ops.Checks.onDevice;
import static io.moe4j.ops.Checks.rankAtLeast;
import static io.moe4j.ops.Checks.rows;
import static io.moe4j.ops.Checks.sameDtype;
import static io.moe4j.ops.Checks.shape;

import io.moe4j.tensor.CachingAllocator;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Device;
import io.moe4j.tensor.MemoryStats;
import io.moe4j.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;

/**
 * The one {@link Backend} implementation: shape checks in Java, then a call into the native
 * library behind {@link Kernels} (CPU twin or CUDA). Memory comes from the device's
 * {@link CachingAllocator}. Dtype support is left to the native side so its message surfaces.
 */
final class NativeBackend implements Backend {

  private final String name;
  private final Kernels kernels;
  private final CachingAllocator allocator;
  private final Runnable synchronizer;
  private final AutoCloseable onClose;

  NativeBackend(String name, Kernels kernels, CachingAllocator allocator, Runnable synchronizer, AutoCloseable onClose) {
    this.name = name;
    this.kernels = kernels;
    this.allocator = allocator;
    this.synchronizer = synchronizer;
    this.onClose = onClose;
  }

  @Override
  public String name() {
    return name;
  }

  @Override
  public Device device() {
    return allocator.memory().device();
  }

  private void on(String op, String argument, Tensor t) {
    onDevice(op, device(), argument, t);
  }

  /** t is on this device, has dtype dt and n elements (any shape). */
  private void vector(String op, String argument, Tensor t, DType dt, long n) {
    on(op, argument, t);
    dtype(op, argument, t, dt);
    numel(op, argument, t, n);
  }

  private static long addr(Tensor t) {
    return t == null ? 0 : t.address();
  }

  // ---- memory -------------------------------------------------------------------------------

  @Override
  public Tensor empty(DType dtype, long... shape) {
    return Tensor.allocate(allocator, dtype, shape);
  }

  @Override
  public Tensor zeros(DType dtype, long... shape) {
    Tensor t = empty(dtype, shape);
    allocator.memory().zero(t.address(), t.byteSize());
    return t;
  }

  @Override
  public Tensor fromFloats(float[] values, DType dtype, long... shape) {
    Tensor t = empty(dtype, shape);
    try {
      copyFromFloats(values, t);
      return t;
    } catch (RuntimeException e) {
      t.close();
      throw e;
    }
  }

  @Override
  public Tensor fromInts(int[] values, long... shape) {
    Tensor t = empty(DType.I32, shape);
    if (t.numel() != values.length) {
      t.close();
      throw Checks.error("fromInts", "values has " + values.length + " elements, shape needs " + t.numel());
    }
    allocator.memory().writeInts(t.address(), values);
    return t;
  }

  @Override
  public Tensor fromLongs(long[] values, long... shape) {
    Tensor t = empty(DType.I64, shape);
    if (t.numel() != values.length) {
      t.close();
      throw Checks.error("fromLongs", "values has " + values.length + " elements, shape needs " + t.numel());
    }
    byte[] bytes = new byte[values.length * 8];
    ByteBuffer.wrap(bytes).order(ByteOrder.nativeOrder()).asLongBuffer().put(values);
    allocator.memory().writeBytes(t.address(), bytes);
    return t;
  }

  @Override
  public long[] toLongs(Tensor tensor) {
    on("toLongs", "tensor", tensor);
    dtype("toLongs", "tensor", tensor, DType.I64);
    byte[] bytes = new byte[Math.multiplyExact(Math.toIntExact(tensor.numel()), 8)];
    allocator.memory().readBytes(tensor.address(), bytes);
    long[] out = new long[bytes.length / 8];
    ByteBuffer.wrap(bytes).order(ByteOrder.nativeOrder()).asLongBuffer().get(out);
    return out;
  }

  @Override
  public void copyFromFloats(float[] values, Tensor destination) {
    on("copyFromFloats", "destination", destination);
    if (destination.numel() != values.length)
      throw Checks.error("copyFromFloats", "values has " + values.length + " elements, destination has " + destination.numel());
    if (destination.dtype() == DType.F32) {
      allocator.memory().writeFloats(destination.address(), values);
      return;
    }
    try (Tensor staging = empty(DType.F32, values.length)) {
      allocator.memory().writeFloats(staging.address(), values);
      kernels.cast(DType.F32.code(), staging.address(), destination.dtype().code(), destination.address(), values.length);
    }
  }

  @Override
  public float[] toFloats(Tensor tensor) {
    on("toFloats", "tensor", tensor);
    if (tensor.numel() > Integer.MAX_VALUE) throw Checks.error("toFloats", "tensor too large for a Java array: " + tensor);
    float[] out = new float[(int) tensor.numel()];
    if (tensor.dtype() == DType.F32) {
      allocator.memory().readFloats(tensor.address(), out);
      return out;
    }
    try (Tensor staging = empty(DType.F32, out.length)) {
      kernels.cast(tensor.dtype().code(), tensor.address(), DType.F32.code(), staging.address(), out.length);
      allocator.memory().readFloats(staging.address(), out);
    }
    return out;
  }

  @Override
  public int[] toInts(Tensor tensor) {
    on("toInts", "tensor", tensor);
    dtype("toInts", "tensor", tensor, DType.I32);
    int[] out = new int[Math.toIntExact(tensor.numel())];
    allocator.memory().readInts(tensor.address(), out);
    return out;
  }

  @Override
  public MemoryStats memoryStats() {
    return allocator.stats();
  }

  @Override
  public void synchronize() {
    synchronizer.run();
  }

  // ---- element-wise -------------------------------------------------------------------------

  @Override
  public void add(Tensor a, Tensor b, Tensor out) {
    on("add", "a", a);
    on("add", "b", b);
    on("add", "out", out);
    shape("add", "b", b, a.shape());
    shape("add", "out", out, a.shape());
    sameDtype("add", "b", b, "a", a);
    sameDtype("add", "out", out, "a", a);
    kernels.add(a.dtype().code(), a.address(), b.address(), out.address(), a.numel());
  }

  @Override
  public void scale(Tensor x, float alpha, Tensor out) {
    on("scale", "x", x);
    on("scale", "out", out);
    shape("scale", "out", out, x.shape());
    sameDtype("scale", "out", out, "x", x);
    kernels.scale(x.dtype().code(), x.address(), out.address(), x.numel(), alpha);
  }

  @Override
  public void copy(Tensor source, Tensor destination) {
    on("copy", "source", source);
    on("copy", "destination", destination);
    numel("copy", "destination", destination, source.numel());
    sameDtype("copy", "destination", destination, "source", source);
    kernels.copy(source.address(), destination.address(), source.byteSize());
  }

  @Override
  public void cast(Tensor source, Tensor destination) {
    on("cast", "source", source);
    on("cast", "destination", destination);
    numel("cast", "destination", destination, source.numel());
    kernels.cast(source.dtype().code(), source.address(), destination.dtype().code(), destination.address(), source.numel());
  }

  // ---- RMSNorm ------------------------------------------------------------------------------

  @Override
  public void rmsNormForward(Tensor x, Tensor weight, float eps, Tensor y, Tensor rstd) {
    String op = "rmsNormForward";
    on(op, "x", x);
    rankAtLeast(op, "x", x, 1);
    long cols = x.dim(-1);
    long rows = rows(x);
    on(op, "weight", weight);
    shape(op, "weight", weight, cols);
    sameDtype(op, "weight", weight, "x", x);
    on(op, "y", y);
    shape(op, "y", y, x.shape());
    sameDtype(op, "y", y, "x", x);
    if (rstd != null) vector(op, "rstd", rstd, DType.F32, rows);
    kernels.rmsNormForward(x.dtype().code(), x.address(), weight.address(), y.address(), addr(rstd), rows, cols, eps);
  }

  @Override
  public void rmsNormBackward(
      Tensor dy, Tensor x, Tensor weight, Tensor rstd, Tensor dx, Tensor dWeight, boolean accumulate) {
    String op = "rmsNormBackward";
    on(op, "x", x);
    rankAtLeast(op, "x", x, 1);
    long cols = x.dim(-1);
    long rows = rows(x);
    on(op, "dy", dy);
    shape(op, "dy", dy, x.shape());
    sameDtype(op, "dy", dy, "x", x);
    on(op, "weight", weight);
    shape(op, "weight", weight, cols);
    sameDtype(op, "weight", weight, "x", x);
    vector(op, "rstd", rstd, DType.F32, rows);
    on(op, "dx", dx);
    shape(op, "dx", dx, x.shape());
    sameDtype(op, "dx", dx, "x", x);
    on(op, "dWeight", dWeight);
    dtype(op, "dWeight", dWeight, DType.F32);
    shape(op, "dWeight", dWeight, cols);
    kernels.rmsNormBackward(
        x.dtype().code(), dy.address(), x.address(), weight.address(), rstd.address(), dx.address(),
        dWeight.address(), rows, cols, accumulate);
  }

  // ---- SwiGLU -------------------------------------------------------------------------------

  @Override
  public void swigluForward(Tensor gate, Tensor up, Tensor out) {
    String op = "swigluForward";
    on(op, "gate", gate);
    rankAtLeast(op, "gate", gate, 1);
    on(op, "up", up);
    shape(op, "up", up, gate.shape());
    sameDtype(op, "up", up, "gate", gate);
    on(op, "out", out);
    shape(op, "out", out, gate.shape());
    sameDtype(op, "out", out, "gate", gate);
    long cols = gate.dim(-1);
    kernels.swigluForward(gate.dtype().code(), gate.address(), up.address(), out.address(), rows(gate), cols, cols);
  }

  @Override
  public void swigluBackward(Tensor gate, Tensor up, Tensor dOut, Tensor dGate, Tensor dUp) {
    String op = "swigluBackward";
    on(op, "gate", gate);
    rankAtLeast(op, "gate", gate, 1);
    for (Object[] pair : new Object[][] {{"up", up}, {"dOut", dOut}, {"dGate", dGate}, {"dUp", dUp}}) {
      Tensor t = (Tensor) pair[1];
      on(op, (String) pair[0], t);
      shape(op, (String) pair[0], t, gate.shape());
      sameDtype(op, (String) pair[0], t, "gate", gate);
    }
    long cols = gate.dim(-1);
    kernels.swigluBackward(
        gate.dtype().code(), gate.address(), up.address(), dOut.address(), dGate.address(), dUp.address(),
        rows(gate), cols, cols);
  }

  @Override
  public void swigluForwardCombined(Tensor gateUp, Tensor out) {
    String op = "swigluForwardCombined";
    on(op, "gateUp", gateUp);
    rankAtLeast(op, "gateUp", gateUp, 1);
    long cols = combinedHalf(op, gateUp);
    on(op, "out", out);
    numel(op, "out", out, rows(gateUp) * cols);
    sameDtype(op, "out", out, "gateUp", gateUp);
    long gate = gateUp.address();
    long up = gate + cols * gateUp.dtype().size();
    kernels.swigluForward(gateUp.dtype().code(), gate, up, out.address(), rows(gateUp), cols, 2 * cols);
  }

  @Override
  public void swigluBackwardCombined(Tensor gateUp, Tensor dOut, Tensor dGateUp) {
    String op = "swigluBackwardCombined";
    on(op, "gateUp", gateUp);
    rankAtLeast(op, "gateUp", gateUp, 1);
    long cols = combinedHalf(op, gateUp);
    on(op, "dOut", dOut);
    numel(op, "dOut", dOut, rows(gateUp) * cols);
    sameDtype(op, "dOut", dOut, "gateUp", gateUp);
    on(op, "dGateUp", dGateUp);
    shape(op, "dGateUp", dGateUp, gateUp.shape());
    sameDtype(op, "dGateUp", dGateUp, "gateUp", gateUp);
    long half = cols * gateUp.dtype().size();
    kernels.swigluBackward(
        gateUp.dtype().code(), gateUp.address(), gateUp.address() + half, dOut.address(), dGateUp.address(),
        dGateUp.address() + half, rows(gateUp), cols, 2 * cols);
  }

  private static long combinedHalf(String op, Tensor gateUp) {
    long last = gateUp.dim(-1);
    if (last % 2 != 0) throw Checks.error(op, "gateUp's last dim must be even (gate|up), got " + last);
    return last / 2;
  }

  // ---- embedding ----------------------------------------------------------------------------

  @Override
  public void embeddingForward(Tensor table, Tensor ids, Tensor out) {
    String op = "embeddingForward";
    on(op, "table", table);
    Checks.rankAtLeast(op, "table", table, 2);
    if (table.rank() != 2) throw Checks.error(op, "table must be [vocab, dim], got rank " + table.rank());
    on(op, "ids", ids);
    dtype(op, "ids", ids, DType.I32);
    on(op, "out", out);
    shape(op, "out", out, ids.numel(), table.dim(1));
    sameDtype(op, "out", out, "table", table);
    kernels.embeddingForward(
        table.dtype().code(), table.address(), ids.address(), out.address(), ids.numel(), table.dim(0), table.dim(1));
  }

  @Override
  public void embeddingBackward(Tensor dOut, Tensor ids, Tensor dTable, boolean accumulate) {
    String op = "embeddingBackward";
    on(op, "dTable", dTable);
    dtype(op, "dTable", dTable, DType.F32);
    if (dTable.rank() != 2) throw Checks.error(op, "dTable must be [vocab, dim], got rank " + dTable.rank());
    on(op, "ids", ids);
    dtype(op, "ids", ids, DType.I32);
    on(op, "dOut", dOut);
    shape(op, "dOut", dOut, ids.numel(), dTable.dim(1));
    kernels.embeddingBackward(
        dOut.dtype().code(), dOut.address(), ids.address(), dTable.address(), ids.numel(), dTable.dim(0),
        dTable.dim(1), accumulate);
  }

  // ---- cross-entropy ------------------------------------------------------------------------

  @Override
  public void crossEntropyForward(Tensor logits, Tensor targets, int ignoreIndex, Tensor losses, Tensor logSumExp) {
    String op = "crossEntropyForward";
    on(op, "logits", logits);
    rankAtLeast(op, "logits", logits, 1);
    long rows = rows(logits);
    vector(op, "targets", targets, DType.I32, rows);
    vector(op, "losses", losses, DType.F32, rows);
    vector(op, "logSumExp", logSumExp, DType.F32, rows);
    kernels.crossEntropyForward(
        logits.dtype().code(), logits.address(), targets.address(), losses.address(), logSumExp.address(), rows,
        logits.dim(-1), ignoreIndex);
  }

  @Override
  public void crossEntropyBackward(
      Tensor logits, Tensor targets, Tensor logSumExp, int ignoreIndex, float gradScale, Tensor dLogits) {
    String op = "crossEntropyBackward";
    on(op, "logits", logits);
    rankAtLeast(op, "logits", logits, 1);
    long rows = rows(logits);
    vector(op, "targets", targets, DType.I32, rows);
    vector(op, "logSumExp", logSumExp, DType.F32, rows);
    on(op, "dLogits", dLogits);
    shape(op, "dLogits", dLogits, logits.shape());
    sameDtype(op, "dLogits", dLogits, "logits", logits);
    kernels.crossEntropyBackward(
        logits.dtype().code(), logits.address(), targets.address(), logSumExp.address(), dLogits.address(), rows,
        logits.dim(-1), ignoreIndex, gradScale);
  }

  // ---- optimizer ----------------------------------------------------------------------------

  @Override
  public void adamwStep(
      Tensor param, Tensor grad, Tensor m, Tensor v, Tensor paramCopy, AdamWConfig config, long step, Tensor gradScale) {
    String op = "adamwStep";
    on(op, "param", param);
    dtype(op, "param", param, DType.F32);
    for (Object[] pair : new Object[][] {{"grad", grad}, {"m", m}, {"v", v}}) {
      on(op, (String) pair[0], (Tensor) pair[1]);
      numel(op, (String) pair[0], (Tensor) pair[1], param.numel());
    }
    dtype(op, "m", m, DType.F32);
    dtype(op, "v", v, DType.F32);
    if (paramCopy != null) {
      on(op, "paramCopy", paramCopy);
      numel(op, "paramCopy", paramCopy, param.numel());
    }
    if (gradScale != null) {
      on(op, "gradScale", gradScale);
      dtype(op, "gradScale", gradScale, DType.F32);
      if (gradScale.numel() < 1) throw Checks.error(op, "gradScale must hold at least one element");
    }
    if (config == null) throw Checks.error(op, "config must not be null");
    kernels.adamwStep(
        param.address(), grad.dtype().code(), grad.address(), m.address(), v.address(),
        paramCopy == null ? DType.F32.code() : paramCopy.dtype().code(), addr(paramCopy), param.numel(), config,
        step, addr(gradScale));
  }

  @Override
  public Tensor gradNormAndClipCoefficient(List<Tensor> grads, float maxNorm) {
    String op = "gradNormAndClipCoefficient";
    if (grads == null || grads.isEmpty()) throw Checks.error(op, "grads must hold at least one tensor");
    Tensor result = empty(DType.F32, 2);
    try (Tensor partials = empty(DType.F32, grads.size())) {
      for (int i = 0; i < grads.size(); i++) {
        Tensor g = grads.get(i);
        on(op, "grads[" + i + "]", g);
        kernels.sumSquares(g.dtype().code(), g.address(), g.numel(), partials.address() + 4L * i);
      }
      // partials goes back to the cache while the GPU may still read it: safe, because every later
      // use of the block is queued on the same stream.
      kernels.clipCoefficient(partials.address(), grads.size(), maxNorm, result.address());
      return result;
    } catch (RuntimeException e) {
      result.close();
      throw e;
    }
  }

  // ---- grouped GEMM -------------------------------------------------------------------------

  /** Number of groups from offsets (null: 1), checking its dtype and device. */
  private long groups(String op, Tensor offsets) {
    if (offsets == null) return 1;
    on(op, "offsets", offsets);
    dtype(op, "offsets", offsets, DType.I64);
    if (offsets.rank() != 1 || offsets.numel() < 2)
      throw Checks.error(op, "offsets must be [E + 1] with E >= 1, got " + java.util.Arrays.toString(offsets.shape()));
    return offsets.numel() - 1;
  }

  /** Checks w is [E, N, K] (or [N, K] for one group without offsets) and returns {N, K}. */
  private static long[] weightDims(String op, String name, Tensor w, Tensor offsets, long groups) {
    if (offsets == null && w.rank() == 2) return new long[] {w.dim(0), w.dim(1)};
    if (w.rank() != 3 || w.dim(0) != groups)
      throw Checks.error(op, name + " must be [" + groups + ", N, K], got " + java.util.Arrays.toString(w.shape()));
    return new long[] {w.dim(1), w.dim(2)};
  }

  private static void matrix(String op, String name, Tensor t, long rows, long cols) {
    shape(op, name, t, rows, cols);
  }

  /** Rows T of a [T, cols] activation matrix. */
  private static long activationRows(String op, String name, Tensor t, long cols) {
    if (t.rank() != 2) throw Checks.error(op, name + " must be [T, " + cols + "], got " + java.util.Arrays.toString(t.shape()));
    matrix(op, name, t, t.dim(0), cols);
    return t.dim(0);
  }

  @Override
  public void groupedGemmForward(Tensor x, Tensor w, Tensor offsets, Tensor y, Tensor rowScale, boolean accumulate) {
    String op = "groupedGemmForward";
    on(op, "x", x);
    on(op, "w", w);
    on(op, "y", y);
    long groups = groups(op, offsets);
    long[] nk = weightDims(op, "w", w, offsets, groups);
    long rows = activationRows(op, "x", x, nk[1]);
    sameDtype(op, "w", w, "x", x);
    matrix(op, "y", y, rows, nk[0]);
    if (rowScale != null) vector(op, "rowScale", rowScale, DType.F32, rows);
    kernels.groupedGemmForward(
        x.dtype().code(), x.address(), w.address(), y.dtype().code(), y.address(), addr(offsets), groups, rows,
        nk[0], nk[1], addr(rowScale), accumulate);
  }

  @Override
  public void groupedGemmDgrad(Tensor dy, Tensor w, Tensor offsets, Tensor dx, boolean accumulate) {
    String op = "groupedGemmDgrad";
    on(op, "dy", dy);
    on(op, "w", w);
    on(op, "dx", dx);
    long groups = groups(op, offsets);
    long[] nk = weightDims(op, "w", w, offsets, groups);
    long rows = activationRows(op, "dy", dy, nk[0]);
    sameDtype(op, "w", w, "dy", dy);
    matrix(op, "dx", dx, rows, nk[1]);
    kernels.groupedGemmDgrad(
        dy.dtype().code(), dy.address(), w.address(), dx.dtype().code(), dx.address(), addr(offsets), groups, rows,
        nk[0], nk[1], accumulate);
  }

  @Override
  public void groupedGemmWgrad(Tensor dy, Tensor x, Tensor offsets, Tensor dw, boolean accumulate) {
    String op = "groupedGemmWgrad";
    on(op, "dy", dy);
    on(op, "x", x);
    on(op, "dw", dw);
    long groups = groups(op, offsets);
    long[] nk = weightDims(op, "dw", dw, offsets, groups);
    long rows = activationRows(op, "x", x, nk[1]);
    matrix(op, "dy", dy, rows, nk[0]);
    sameDtype(op, "dy", dy, "x", x);
    kernels.groupedGemmWgrad(
        x.dtype().code(), dy.address(), x.address(), dw.dtype().code(), dw.address(), addr(offsets), groups, rows,
        nk[0], nk[1], accumulate);
  }

  @Override
  public void groupedGemmSwigluForward(Tensor x, Tensor w13, Tensor offsets, Tensor h, Tensor gateUp) {
    String op = "groupedGemmSwigluForward";
    on(op, "x", x);
    on(op, "w13", w13);
    on(op, "h", h);
    long groups = groups(op, offsets);
    long[] nk = weightDims(op, "w13", w13, offsets, groups);
    if (nk[0] % 2 != 0) throw Checks.error(op, "w13 must have 2F rows per group (gate then up), got " + nk[0]);
    long f = nk[0] / 2;
    long rows = activationRows(op, "x", x, nk[1]);
    sameDtype(op, "w13", w13, "x", x);
    matrix(op, "h", h, rows, f);
    if (gateUp != null) {
      on(op, "gateUp", gateUp);
      matrix(op, "gateUp", gateUp, rows, 2 * f);
      sameDtype(op, "gateUp", gateUp, "h", h);
    }
    kernels.groupedGemmSwigluForward(
        x.dtype().code(), x.address(), w13.address(), h.dtype().code(), h.address(), addr(gateUp), addr(offsets),
        groups, rows, f, nk[1]);
  }

  @Override
  public void gemm(Tensor a, Tensor b, Tensor c, boolean accumulate) {
    if (!accumulate && a.dtype() == DType.BF16 && kernels.hasVendorGemm()) vendorGemm(a, b, c);
    else groupedGemmForward(a, b, null, c, null, accumulate);
  }

  @Override
  public void vendorGemm(Tensor a, Tensor b, Tensor c) {
    String op = "vendorGemm";
    on(op, "a", a);
    on(op, "b", b);
    on(op, "c", c);
    if (a.rank() != 2 || b.rank() != 2)
      throw Checks.error(op, "a and b must be matrices, got " + java.util.Arrays.toString(a.shape()) + " and "
          + java.util.Arrays.toString(b.shape()));
    matrix(op, "b", b, b.dim(0), a.dim(1));
    sameDtype(op, "b", b, "a", a);
    matrix(op, "c", c, a.dim(0), b.dim(0));
    kernels.vendorGemm(a.dtype().code(), a.address(), b.address(), c.dtype().code(), c.address(), a.dim(0), b.dim(0), a.dim(1));
  }

  @Override
  public void close() {
    try {
      allocator.close();
    } finally {
      try {
        onClose.close();
      } catch (Exception e) {
        throw new IllegalStateException("closing backend " + name + " failed", e);
      }
    }
  }
}
