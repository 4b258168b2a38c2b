package io.moe4j.nn;

import io.moe4j.ops.Backend;
import io.moe4j.tensor.Tensor;

/** y = x · Wᵀ with W [out, in] (HF layout, no bias), over the dense GEMM. */
final class Linear {

  private final Backend backend;
  private Parameter weight;

  Linear(Backend backend, Parameter weight) {
    this.backend = backend;
    this.weight = weight;
  }

  Parameter weight() {
    return weight;
  }

  void replaceWeight(Parameter grown) {
    weight = grown;
  }

  long outFeatures() {
    return weight.value().dim(0);
  }

  /** y [T, out] = x [T, in] · Wᵀ (x cast to the weight's dtype first when they differ). */
  void forward(Tensor x, Tensor y) {
    gemm(backend, x, weight.value(), y, false);
  }

  /**
   * c (=|+=) a · bᵀ where b may be BF16 (inference weights) while a is an F32 activation: a is then
   * rounded to BF16 for the GEMM, which accumulates in f32 and writes c in its own dtype.
   */
  static void gemm(Backend backend, Tensor a, Tensor b, Tensor c, boolean accumulate) {
    if (a.dtype() == b.dtype()) {
      backend.gemm(a, b, c, accumulate);
      return;
    }
    try (Tensor cast = backend.empty(b.dtype(), a.shape())) {
      backend.cast(a, cast);
      backend.gemm(cast, b, c, accumulate);
    }
  }

  /** dW += dyᵀ · x; dx (=|+=) dy · W (dx may be null when not needed). */
  void backward(Tensor dy, Tensor x, Tensor dx, boolean accumulateDx) {
    backend.groupedGemmWgrad(dy, x, null, weight.grad(), true);
    if (dx != null) backend.groupedGemmDgrad(dy, weight.value(), null, dx, accumulateDx);
  }
}
