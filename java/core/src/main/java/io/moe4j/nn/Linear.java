package io.moe4j.nn;

import io.moe4j.ops.Backend;
import io.moe4j.tensor.Scope;
import io.moe4j.tensor.Tensor;

/** y = x · Wᵀ with W [out, in] (HF layout, no bias), over the dense GEMM. */
public final class Linear {

  private final Backend backend;
  private Parameter weight;

  public Linear(Backend backend, Parameter weight) {
    this.backend = backend;
    this.weight = weight;
  }

  public Parameter weight() {
    return weight;
  }

  void replaceWeight(Parameter grown) {
    weight = grown;
  }

  public long outFeatures() {
    return weight.value().dim(0);
  }

  /** y [T, out] = x [T, in] · Wᵀ (x cast to the weight's dtype first when they differ). */
  public void forward(Tensor x, Tensor y) {
    gemm(backend, x, weight.computeValue(), y, false);
  }

  /**
   * c (=|+=) a · bᵀ where b may be BF16 (inference weights) while a is an F32 activation: a is then
   * rounded to BF16 for the GEMM, which accumulates in f32 and writes c in its own dtype.
   */
  static void gemm(Backend backend, Tensor a, Tensor b, Tensor c, boolean accumulate) {
    try (Scope casts = new Scope()) {
      backend.gemm(castTo(backend, a, b.dtype(), casts), b, c, accumulate);
    }
  }

  /** dW += dyᵀ · x (x: the forward's input); dx (=|+=) dy · W (dx may be null when not needed). */
  public void backward(Tensor dy, Tensor x, Tensor dx, boolean accumulateDx) {
    weightGradients(backend, weight, null, dy, x, dx, accumulateDx);
  }

  /**
   * dW += dyᵀ·x (F32 gradient) and dx (=|+=) dy·W per group (offsets null: dense) for a weight that
   * may have a BF16 compute copy: in mixed precision dy and x are rounded to BF16 for both GEMMs,
   * which accumulate in f32 (the usual bf16 autocast recipe), else everything is F32.
   */
  static void weightGradients(Backend backend, Parameter weight, Tensor offsets, Tensor dy, Tensor x, Tensor dx,
      boolean accumulateDx) {
    Tensor w = weight.computeValue();
    try (Scope casts = new Scope()) {
      Tensor dyIn = castTo(backend, dy, w.dtype(), casts);
      backend.groupedGemmWgrad(dyIn, castTo(backend, x, w.dtype(), casts), offsets, weight.grad(), true);
      if (dx != null) backend.groupedGemmDgrad(dyIn, w, offsets, dx, accumulateDx);
    }
  }

  /** t itself when it already has {@code dtype}, else a cast copy owned by {@code scope}. */
  static Tensor castTo(Backend backend, Tensor t, io.moe4j.tensor.DType dtype, Scope scope) {
    if (t.dtype() == dtype) return t;
    Tensor cast = scope.add(backend.empty(dtype, t.shape()));
    backend.cast(t, cast);
    return cast;
  }
}
