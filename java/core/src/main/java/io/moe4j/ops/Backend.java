package io.moe4j.ops;

import io.moe4j.tensor.DType;
import io.moe4j.tensor.Device;
import io.moe4j.tensor.MemoryStats;
import io.moe4j.tensor.Tensor;
import java.util.List;

/**
 * The operations every backend (cpu, cuda) provides, with the same signatures and semantics. Shapes
 * are checked here in Java (an {@link IllegalArgumentException} naming the argument); what only the
 * native side can check (dtype support, index ranges, alignment) surfaces as a
 * {@link io.moe4j.runtime.Moe4jException} carrying the native message.
 *
 * <p>Tensors passed to a backend must live on its device. Outputs are written in place.
 */
public interface Backend extends AutoCloseable {

  /** "cpu" or "cuda:N". */
  String name();

  Device device();

  // ---- memory -------------------------------------------------------------------------------

  /** Uninitialized tensor from this backend's caching allocator. Close it (or its scope). */
  Tensor empty(DType dtype, long... shape);

  /** Zero-filled tensor. */
  Tensor zeros(DType dtype, long... shape);

  /** New tensor holding {@code values} converted to {@code dtype} (F32, BF16 or F16). */
  Tensor fromFloats(float[] values, DType dtype, long... shape);

  /** New I32 tensor holding {@code values}. */
  Tensor fromInts(int[] values, long... shape);

  /** Contents as floats (converted from F32, BF16 or F16). */
  float[] toFloats(Tensor tensor);

  /** Contents of an I32 tensor. */
  int[] toInts(Tensor tensor);

  /** Copies host floats into an existing tensor (converted to its dtype). */
  void copyFromFloats(float[] values, Tensor destination);

  /** Live and peak bytes of this backend's allocator. */
  MemoryStats memoryStats();

  /** Waits until all queued work is done (no-op on the CPU). */
  void synchronize();

  // ---- element-wise -------------------------------------------------------------------------

  /** out = a + b (F32 or BF16, same shape). */
  void add(Tensor a, Tensor b, Tensor out);

  /** out = alpha * x (may be the same tensor). */
  void scale(Tensor x, float alpha, Tensor out);

  /** destination = source (same dtype and element count). */
  void copy(Tensor source, Tensor destination);

  /** destination = source converted between F32, BF16 and F16 (same element count). */
  void cast(Tensor source, Tensor destination);

  // ---- RMSNorm ------------------------------------------------------------------------------

  /**
   * y = x * rstd * weight over the last dim. x, y [rows, cols], weight [cols] (same dtype);
   * rstd F32 [rows] saved for backward (may be null).
   */
  void rmsNormForward(Tensor x, Tensor weight, float eps, Tensor y, Tensor rstd);

  /** dx [rows, cols] (dtype of x); dWeight F32 [cols], overwritten or accumulated. */
  void rmsNormBackward(
      Tensor dy, Tensor x, Tensor weight, Tensor rstd, Tensor dx, Tensor dWeight, boolean accumulate);

  // ---- SwiGLU -------------------------------------------------------------------------------

  /** out = silu(gate) * up; gate, up, out [rows, cols]. */
  void swigluForward(Tensor gate, Tensor up, Tensor out);

  /** dGate, dUp [rows, cols]. */
  void swigluBackward(Tensor gate, Tensor up, Tensor dOut, Tensor dGate, Tensor dUp);

  /**
   * SwiGLU over a combined gate|up buffer [rows, 2*cols] (gate in the first half of each row), as a
   * fused gate/up projection produces it; out [rows, cols].
   */
  void swigluForwardCombined(Tensor gateUp, Tensor out);

  /** dGateUp [rows, 2*cols] in the combined layout. */
  void swigluBackwardCombined(Tensor gateUp, Tensor dOut, Tensor dGateUp);

  // ---- embedding ----------------------------------------------------------------------------

  /** out[i] = table[ids[i]]; table [vocab, dim], ids I32 [n] (any shape), out [n, dim]. */
  void embeddingForward(Tensor table, Tensor ids, Tensor out);

  /** dTable F32 [vocab, dim] += dOut rows by id, deterministic; zeroed first unless accumulate. */
  void embeddingBackward(Tensor dOut, Tensor ids, Tensor dTable, boolean accumulate);

  // ---- cross-entropy ------------------------------------------------------------------------

  /**
   * Per-row softmax cross-entropy. logits [rows, vocab] (F32|BF16); targets I32 [rows]; losses and
   * lse F32 [rows]. Rows whose target is {@code ignoreIndex} get loss 0.
   */
  void crossEntropyForward(
      Tensor logits, Tensor targets, int ignoreIndex, Tensor losses, Tensor logSumExp);

  /**
   * dLogits = (softmax - onehot) * gradScale; ignored rows 0. dLogits may be the logits tensor
   * itself (in place).
   */
  void crossEntropyBackward(
      Tensor logits,
      Tensor targets,
      Tensor logSumExp,
      int ignoreIndex,
      float gradScale,
      Tensor dLogits);

  // ---- optimizer ----------------------------------------------------------------------------

  /**
   * One fused AdamW step. param, m, v: F32; grad F32|BF16; paramCopy (nullable) receives the new
   * param in its own dtype (BF16 for mixed precision). gradScale (nullable) is a one-element F32
   * tensor on this device multiplying the gradient (the clip coefficient).
   */
  void adamwStep(
      Tensor param,
      Tensor grad,
      Tensor m,
      Tensor v,
      Tensor paramCopy,
      AdamWConfig config,
      long step,
      Tensor gradScale);

  /**
   * Global L2 norm of the gradients and the clip coefficient min(1, maxNorm / (norm + 1e-6)),
   * computed without a host round trip; returns F32 [2] = {norm, coefficient} on this device.
   */
  Tensor gradNormAndClipCoefficient(List<Tensor> grads, float maxNorm);

  @Override
  void close();
}
