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

  /** t is on this device with the shape and dtype of ref. */
  private void like(String op, String argument, Tensor t, String refName, Tensor ref) {
    on(op, argument, t);
    shape(op, argument, t, ref.shape());
    sameDtype(op, argument, t, refName, ref);
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
    like(op, "y", y, "x", x);
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
    like(op, "dy", dy, "x", x);
    on(op, "weight", weight);
    shape(op, "weight", weight, cols);
    sameDtype(op, "weight", weight, "x", x);
    vector(op, "rstd", rstd, DType.F32, rows);
    like(op, "dx", dx, "x", x);
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
    like(op, "up", up, "gate", gate);
    like(op, "out", out, "gate", gate);
    long cols = gate.dim(-1);
    kernels.swigluForward(gate.dtype().code(), gate.address(), up.address(), out.address(), rows(gate), cols, cols);
  }

  @Override
  public void swigluBackward(Tensor gate, Tensor up, Tensor dOut, Tensor dGate, Tensor dUp) {
    String op = "swigluBackward";
    on(op, "gate", gate);
    rankAtLeast(op, "gate", gate, 1);
    like(op, "up", up, "gate", gate);
    like(op, "dOut", dOut, "gate", gate);
    like(op, "dGate", dGate, "gate", gate);
    like(op, "dUp", dUp, "gate", gate);
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
    like(op, "dGateUp", dGateUp, "gateUp", gateUp);
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
    like(op, "dLogits", dLogits, "logits", logits);
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

  // ---- routing ------------------------------------------------------------------------------

  /** [T, E] F32 matrix on this device; returns {T, E}. */
  private long[] tokenExpertMatrix(String op, String name, Tensor t) {
    on(op, name, t);
    dtype(op, name, t, DType.F32);
    if (t.rank() != 2) throw Checks.error(op, name + " must be [T, E], got " + java.util.Arrays.toString(t.shape()));
    return new long[] {t.dim(0), t.dim(1)};
  }

  /** I32 [T, k] on this device; returns k. */
  private int perTokenSlots(String op, String name, Tensor t, long tokens) {
    on(op, name, t);
    dtype(op, name, t, DType.I32);
    if (t.rank() != 2 || t.dim(0) != tokens)
      throw Checks.error(op, name + " must be [" + tokens + ", k], got " + java.util.Arrays.toString(t.shape()));
    return Math.toIntExact(t.dim(1));
  }

  @Override
  public void routerScores(Tensor logits, ScoreFunction fn, Tensor scores) {
    String op = "routerScores";
    long[] te = tokenExpertMatrix(op, "logits", logits);
    tokenExpertMatrix(op, "scores", scores);
    shape(op, "scores", scores, te);
    kernels.routerScores(logits.address(), scores.address(), te[0], te[1], fn.code());
  }

  @Override
  public void routerScoresBackward(Tensor scores, Tensor dScores, ScoreFunction fn, Tensor dLogits) {
    String op = "routerScoresBackward";
    long[] te = tokenExpertMatrix(op, "scores", scores);
    tokenExpertMatrix(op, "dScores", dScores);
    shape(op, "dScores", dScores, te);
    tokenExpertMatrix(op, "dLogits", dLogits);
    shape(op, "dLogits", dLogits, te);
    kernels.routerScoresBackward(scores.address(), dScores.address(), dLogits.address(), te[0], te[1], fn.code());
  }

  @Override
  public void routeTopK(Tensor scores, Tensor bias, int k, boolean renormalize, Tensor expertIds, Tensor weights) {
    String op = "routeTopK";
    long[] te = tokenExpertMatrix(op, "scores", scores);
    if (bias != null) vector(op, "bias", bias, DType.F32, te[1]);
    on(op, "expertIds", expertIds);
    dtype(op, "expertIds", expertIds, DType.I32);
    shape(op, "expertIds", expertIds, te[0], k);
    on(op, "weights", weights);
    dtype(op, "weights", weights, DType.F32);
    shape(op, "weights", weights, te[0], k);
    kernels.routeTopK(scores.address(), addr(bias), te[0], te[1], k, renormalize, expertIds.address(), weights.address());
  }

  @Override
  public void routeTopKBackward(Tensor scores, Tensor expertIds, Tensor dWeights, boolean renormalize, Tensor dScores) {
    String op = "routeTopKBackward";
    long[] te = tokenExpertMatrix(op, "scores", scores);
    int k = perTokenSlots(op, "expertIds", expertIds, te[0]);
    on(op, "dWeights", dWeights);
    dtype(op, "dWeights", dWeights, DType.F32);
    shape(op, "dWeights", dWeights, te[0], k);
    tokenExpertMatrix(op, "dScores", dScores);
    shape(op, "dScores", dScores, te);
    kernels.routeTopKBackward(
        scores.address(), expertIds.address(), dWeights.address(), dScores.address(), te[0], te[1], k, renormalize);
  }

  @Override
  public void routePlan(
      Tensor expertIds, Tensor weights, long capacity, Tensor offsets, Tensor sortedToken, Tensor slotOf, Tensor counts) {
    String op = "routePlan";
    on(op, "expertIds", expertIds);
    if (expertIds.rank() != 2) throw Checks.error(op, "expertIds must be [T, k], got " + java.util.Arrays.toString(expertIds.shape()));
    long tokens = expertIds.dim(0);
    int k = perTokenSlots(op, "expertIds", expertIds, tokens);
    on(op, "weights", weights);
    dtype(op, "weights", weights, DType.F32);
    shape(op, "weights", weights, tokens, k);
    on(op, "offsets", offsets);
    dtype(op, "offsets", offsets, DType.I64);
    if (offsets.rank() != 1 || offsets.numel() < 2)
      throw Checks.error(op, "offsets must be [E + 1], got " + java.util.Arrays.toString(offsets.shape()));
    long experts = offsets.numel() - 1;
    vector(op, "sortedToken", sortedToken, DType.I32, tokens * k);
    perTokenSlots(op, "slotOf", slotOf, tokens);
    shape(op, "slotOf", slotOf, tokens, k);
    if (counts != null) vector(op, "counts", counts, DType.I64, experts);
    kernels.routePlan(
        expertIds.address(), weights.address(), tokens, experts, k, capacity, offsets.address(), sortedToken.address(),
        slotOf.address(), addr(counts));
  }

  @Override
  public void routeGather(Tensor x, Tensor sortedToken, Tensor rows) {
    String op = "routeGather";
    on(op, "x", x);
    if (x.rank() != 2) throw Checks.error(op, "x must be [T, H], got " + java.util.Arrays.toString(x.shape()));
    on(op, "sortedToken", sortedToken);
    dtype(op, "sortedToken", sortedToken, DType.I32);
    on(op, "rows", rows);
    long numRows = activationRows(op, "rows", rows, x.dim(1));
    sameDtype(op, "rows", rows, "x", x);
    if (sortedToken.numel() < numRows)
      throw Checks.error(op, "sortedToken has " + sortedToken.numel() + " entries, rows needs " + numRows);
    kernels.routeGather(x.dtype().code(), x.address(), sortedToken.address(), rows.address(), numRows, x.dim(0), x.dim(1));
  }

  @Override
  public void routeGatherBackward(Tensor dRows, Tensor slotOf, Tensor dx, boolean accumulate) {
    String op = "routeGatherBackward";
    on(op, "dx", dx);
    if (dx.rank() != 2) throw Checks.error(op, "dx must be [T, H], got " + java.util.Arrays.toString(dx.shape()));
    int k = perTokenSlots(op, "slotOf", slotOf, dx.dim(0));
    on(op, "dRows", dRows);
    long numRows = activationRows(op, "dRows", dRows, dx.dim(1));
    sameDtype(op, "dRows", dRows, "dx", dx);
    kernels.routeGatherBackward(
        dx.dtype().code(), dRows.address(), slotOf.address(), dx.address(), dx.dim(0), k, numRows, dx.dim(1), accumulate);
  }

  @Override
  public void routeCombine(Tensor rows, Tensor slotOf, Tensor weights, Tensor y) {
    String op = "routeCombine";
    on(op, "y", y);
    if (y.rank() != 2) throw Checks.error(op, "y must be [T, H], got " + java.util.Arrays.toString(y.shape()));
    int k = perTokenSlots(op, "slotOf", slotOf, y.dim(0));
    on(op, "rows", rows);
    long numRows = activationRows(op, "rows", rows, y.dim(1));
    sameDtype(op, "rows", rows, "y", y);
    if (weights != null) {
      on(op, "weights", weights);
      dtype(op, "weights", weights, DType.F32);
      shape(op, "weights", weights, y.dim(0), k);
    }
    kernels.routeCombine(
        y.dtype().code(), rows.address(), slotOf.address(), addr(weights), y.address(), y.dim(0), k, numRows, y.dim(1));
  }

  @Override
  public void routeCombineBackward(Tensor dy, Tensor rows, Tensor slotOf, Tensor weights, Tensor dRows, Tensor dWeights) {
    String op = "routeCombineBackward";
    on(op, "dy", dy);
    if (dy.rank() != 2) throw Checks.error(op, "dy must be [T, H], got " + java.util.Arrays.toString(dy.shape()));
    int k = perTokenSlots(op, "slotOf", slotOf, dy.dim(0));
    on(op, "rows", rows);
    long numRows = activationRows(op, "rows", rows, dy.dim(1));
    sameDtype(op, "rows", rows, "dy", dy);
    on(op, "dRows", dRows);
    shape(op, "dRows", dRows, rows.shape());
    sameDtype(op, "dRows", dRows, "dy", dy);
    if (weights != null) {
      on(op, "weights", weights);
      dtype(op, "weights", weights, DType.F32);
      shape(op, "weights", weights, dy.dim(0), k);
    }
    if (dWeights != null) {
      on(op, "dWeights", dWeights);
      dtype(op, "dWeights", dWeights, DType.F32);
      shape(op, "dWeights", dWeights, dy.dim(0), k);
    }
    kernels.routeCombineBackward(
        dy.dtype().code(), dy.address(), rows.address(), slotOf.address(), addr(weights), dRows.address(),
        addr(dWeights), dy.dim(0), k, numRows, dy.dim(1));
  }

  @Override
  public void routeExpertChoice(
      Tensor scores, long groupSize, long capacity, Tensor offsets, Tensor sortedToken, Tensor slotOf, Tensor weights,
      Tensor uncovered) {
    String op = "routeExpertChoice";
    long[] te = tokenExpertMatrix(op, "scores", scores);
    vector(op, "offsets", offsets, DType.I64, te[1] + 1);
    on(op, "sortedToken", sortedToken);
    dtype(op, "sortedToken", sortedToken, DType.I32);
    perTokenSlots(op, "slotOf", slotOf, te[0]);
    shape(op, "slotOf", slotOf, te);
    tokenExpertMatrix(op, "weights", weights);
    shape(op, "weights", weights, te);
    if (uncovered != null) vector(op, "uncovered", uncovered, DType.I64, 1);
    kernels.routeExpertChoice(
        scores.address(), te[0], te[1], groupSize, capacity, offsets.address(), sortedToken.address(), slotOf.address(),
        weights.address(), addr(uncovered));
  }

  @Override
  public void routerBalanceLoss(Tensor scores, Tensor expertIds, float coef, Tensor out, Tensor dScores) {
    String op = "routerBalanceLoss";
    long[] te = tokenExpertMatrix(op, "scores", scores);
    int k = perTokenSlots(op, "expertIds", expertIds, te[0]);
    vector(op, "out", out, DType.F32, 1);
    if (dScores != null) {
      tokenExpertMatrix(op, "dScores", dScores);
      shape(op, "dScores", dScores, te);
    }
    kernels.routerBalanceLoss(scores.address(), expertIds.address(), te[0], te[1], k, coef, out.address(), addr(dScores));
  }

  @Override
  public void routerZLoss(Tensor logits, float coef, Tensor out, Tensor dLogits) {
    String op = "routerZLoss";
    long[] te = tokenExpertMatrix(op, "logits", logits);
    vector(op, "out", out, DType.F32, 1);
    if (dLogits != null) {
      tokenExpertMatrix(op, "dLogits", dLogits);
      shape(op, "dLogits", dLogits, te);
    }
    kernels.routerZLoss(logits.address(), te[0], te[1], coef, out.address(), addr(dLogits));
  }

  @Override
  public void routerBiasUpdate(Tensor bias, Tensor counts, float rate) {
    String op = "routerBiasUpdate";
    on(op, "bias", bias);
    dtype(op, "bias", bias, DType.F32);
    vector(op, "counts", counts, DType.I64, bias.numel());
    kernels.routerBiasUpdate(bias.address(), counts.address(), bias.numel(), rate);
  }

  @Override
  public void ropeForward(Tensor x, Tensor positions, float theta, Tensor out) {
    rope("ropeForward", false, x, positions, theta, out);
  }

  @Override
  public void ropeBackward(Tensor dOut, Tensor positions, float theta, Tensor dx) {
    rope("ropeBackward", true, dOut, positions, theta, dx);
  }

  private void rope(String op, boolean backward, Tensor in, Tensor positions, float theta, Tensor out) {
    on(op, "input", in);
    if (in.rank() < 2) throw Checks.error(op, "input must be [..., heads, headDim], got " + java.util.Arrays.toString(in.shape()));
    long heads = in.dim(-2), headDim = in.dim(-1);
    long tokens = heads * headDim == 0 ? 0 : in.numel() / (heads * headDim);
    vector(op, "positions", positions, DType.I32, tokens);
    like(op, "output", out, "input", in);
    kernels.rope(backward, in.dtype().code(), in.address(), out.address(), positions.address(), tokens, heads, headDim, theta);
  }

  /** [B, S, H, D] with the given B, S, D; returns H. */
  private static long heads(String op, String name, Tensor t, long batch, long seq, long headDim) {
    if (t.rank() != 4 || t.dim(0) != batch || t.dim(1) != seq || t.dim(3) != headDim)
      throw Checks.error(op, name + " must be [" + batch + ", " + seq + ", H, " + headDim + "], got "
          + java.util.Arrays.toString(t.shape()));
    return t.dim(2);
  }

  /** [T, H, D] with the given T, D; returns H. */
  private static long packedHeads(String op, String name, Tensor t, long tokens, long headDim) {
    if (t.rank() != 3 || t.dim(0) != tokens || t.dim(2) != headDim)
      throw Checks.error(op, name + " must be [" + tokens + ", H, " + headDim + "], got "
          + java.util.Arrays.toString(t.shape()));
    return t.dim(1);
  }

  /** cuSeqlens I32 [B + 1] on this device; returns B. */
  private long sequences(String op, Tensor cuSeqlens) {
    on(op, "cuSeqlens", cuSeqlens);
    dtype(op, "cuSeqlens", cuSeqlens, DType.I32);
    if (cuSeqlens.rank() != 1 || cuSeqlens.dim(0) < 1)
      throw Checks.error(op, "cuSeqlens must be I32 [B + 1] (rank 1, at least one element), got "
          + java.util.Arrays.toString(cuSeqlens.shape()));
    return cuSeqlens.dim(0) - 1;
  }

  @Override
  public void attentionForward(Tensor q, Tensor k, Tensor v, AttentionOptions options, Tensor out, Tensor lse) {
    String op = "attentionForward";
    on(op, "q", q);
    if (q.rank() != 4) throw Checks.error(op, "q must be [B, S, Hq, D], got " + java.util.Arrays.toString(q.shape()));
    long b = q.dim(0), s = q.dim(1), hq = q.dim(2), d = q.dim(3);
    on(op, "k", k);
    long hkv = heads(op, "k", k, b, s, d);
    forward(op, q, k, v, null, b, s, hq, hkv, d, options, out, lse);
  }

  @Override
  public void attentionForwardVarlen(
      Tensor q, Tensor k, Tensor v, Tensor cuSeqlens, AttentionOptions options, Tensor out, Tensor lse) {
    String op = "attentionForwardVarlen";
    on(op, "q", q);
    if (q.rank() != 3) throw Checks.error(op, "q must be [T, Hq, D], got " + java.util.Arrays.toString(q.shape()));
    long t = q.dim(0), hq = q.dim(1), d = q.dim(2);
    on(op, "k", k);
    long hkv = packedHeads(op, "k", k, t, d);
    forward(op, q, k, v, cuSeqlens, sequences(op, cuSeqlens), t, hq, hkv, d, options, out, lse);
  }

  /** The checks both layouts share once q and k gave the sizes (varlen: b sequences, s = T). */
  private void forward(
      String op, Tensor q, Tensor k, Tensor v, Tensor cuSeqlens, long b, long s, long hq, long hkv, long d,
      AttentionOptions options, Tensor out, Tensor lse) {
    on(op, "v", v);
    shape(op, "v", v, k.shape());
    on(op, "out", out);
    shape(op, "out", out, q.shape());
    for (Tensor t : new Tensor[] {k, v, out}) sameDtype(op, "k, v and out", t, "q", q);
    vector(op, "lse", lse, DType.F32, (cuSeqlens == null ? b : 1) * hq * s);
    kernels.attentionForward(q.dtype().code(), q.address(), k.address(), v.address(), out.address(), lse.address(),
        addr(cuSeqlens), b, s, hq, hkv, d, options);
  }

  @Override
  public void attentionBackward(
      Tensor q, Tensor k, Tensor v, Tensor out, Tensor dOut, Tensor lse, AttentionOptions options, Tensor dq, Tensor dk,
      Tensor dv) {
    String op = "attentionBackward";
    on(op, "q", q);
    if (q.rank() != 4) throw Checks.error(op, "q must be [B, S, Hq, D], got " + java.util.Arrays.toString(q.shape()));
    long b = q.dim(0), s = q.dim(1), hq = q.dim(2), d = q.dim(3);
    on(op, "k", k);
    long hkv = heads(op, "k", k, b, s, d);
    backward(op, q, k, v, out, dOut, lse, null, b, s, hq, hkv, d, options, dq, dk, dv);
  }

  @Override
  public void attentionBackwardVarlen(
      Tensor q, Tensor k, Tensor v, Tensor out, Tensor dOut, Tensor lse, Tensor cuSeqlens, AttentionOptions options,
      Tensor dq, Tensor dk, Tensor dv) {
    String op = "attentionBackwardVarlen";
    on(op, "q", q);
    if (q.rank() != 3) throw Checks.error(op, "q must be [T, Hq, D], got " + java.util.Arrays.toString(q.shape()));
    long t = q.dim(0), hq = q.dim(1), d = q.dim(2);
    on(op, "k", k);
    long hkv = packedHeads(op, "k", k, t, d);
    backward(op, q, k, v, out, dOut, lse, cuSeqlens, sequences(op, cuSeqlens), t, hq, hkv, d, options, dq, dk, dv);
  }

  private void backward(
      String op, Tensor q, Tensor k, Tensor v, Tensor out, Tensor dOut, Tensor lse, Tensor cuSeqlens, long b, long s,
      long hq, long hkv, long d, AttentionOptions options, Tensor dq, Tensor dk, Tensor dv) {
    like(op, "out", out, "q", q);
    like(op, "dOut", dOut, "q", q);
    like(op, "dq", dq, "q", q);
    sameDtype(op, "k", k, "q", q);
    like(op, "v", v, "k", k);
    like(op, "dk", dk, "k", k);
    like(op, "dv", dv, "k", k);
    vector(op, "lse", lse, DType.F32, (cuSeqlens == null ? b : 1) * hq * s);
    // a varlen batch needs the row sums of its T tokens only: ask for one sequence of T
    long bytes = kernels.attentionBackwardWorkspaceBytes(cuSeqlens == null ? b : 1, s, hq, d);
    try (Tensor workspace = empty(DType.U8, bytes)) {
      // workspace returns to the cache while the GPU may still use it: safe, later users are on the same stream
      kernels.attentionBackward(q.dtype().code(), q.address(), k.address(), v.address(), out.address(),
          dOut.address(), lse.address(), dq.address(), dk.address(), dv.address(), addr(cuSeqlens), b, s, hq, hkv, d,
          options, bytes == 0 ? 0 : workspace.address(), bytes);
    }
  }

  @Override
  public void attentionNaiveForward(Tensor q, Tensor k, Tensor v, AttentionOptions options, Tensor out, Tensor lse) {
    String op = "attentionNaiveForward";
    on(op, "q", q);
    if (q.rank() != 4) throw Checks.error(op, "q must be [B, S, Hq, D], got " + java.util.Arrays.toString(q.shape()));
    long b = q.dim(0), s = q.dim(1), hq = q.dim(2), d = q.dim(3);
    on(op, "k", k);
    long hkv = heads(op, "k", k, b, s, d);
    like(op, "v", v, "k", k);
    sameDtype(op, "k", k, "q", q);
    like(op, "out", out, "q", q);
    vector(op, "lse", lse, DType.F32, b * hq * s);
    kernels.attentionNaiveForward(q.dtype().code(), q.address(), k.address(), v.address(), out.address(), lse.address(),
        b, s, hq, hkv, d, options);
  }

  @Override
  public void attentionDecode(
      Tensor q, Tensor kNew, Tensor vNew, Tensor kCache, Tensor vCache, Tensor lengths, AttentionOptions options,
      int splitK, Tensor out) {
    String op = "attentionDecode";
    on(op, "q", q);
    if (q.rank() != 4) throw Checks.error(op, "q must be [B, N, Hq, D], got " + java.util.Arrays.toString(q.shape()));
    long b = q.dim(0), n = q.dim(1), hq = q.dim(2), d = q.dim(3);
    on(op, "kNew", kNew);
    long hkv = heads(op, "kNew", kNew, b, n, d);
    on(op, "vNew", vNew);
    shape(op, "vNew", vNew, kNew.shape());
    on(op, "kCache", kCache);
    if (kCache.rank() != 4) throw Checks.error(op, "kCache must be [B, maxSeq, Hkv, D], got " + java.util.Arrays.toString(kCache.shape()));
    long maxSeq = kCache.dim(1);
    shape(op, "kCache", kCache, b, maxSeq, hkv, d);
    on(op, "vCache", vCache);
    shape(op, "vCache", vCache, kCache.shape());
    on(op, "out", out);
    shape(op, "out", out, q.shape());
    for (Tensor t : new Tensor[] {kNew, vNew, kCache, vCache, out}) sameDtype(op, "k, v, caches and out", t, "q", q);
    vector(op, "lengths", lengths, DType.I32, b);
    long bytes = kernels.attentionDecodeWorkspaceBytes(b, n, hq, d, splitK);
    try (Tensor workspace = empty(DType.U8, bytes)) {
      // workspace returns to the cache while the GPU may still use it: safe, later users are on the same stream
      kernels.attentionDecode(q.dtype().code(), q.address(), kNew.address(), vNew.address(), kCache.address(),
          vCache.address(), lengths.address(), out.address(), b, n, maxSeq, hq, hkv, d, options.window(), options.scale(),
          splitK, bytes == 0 ? 0 : workspace.address(), bytes);
    }
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
