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

  /** y [T, out] = x [T, in] · Wᵀ. */
  void forward(Tensor x, Tensor y) {
    backend.gemm(x, weight.value(), y, false);
  }

  /** dW += dyᵀ · x; dx (=|+=) dy · W (dx may be null when not needed). */
  void backward(Tensor dy, Tensor x, Tensor dx, boolean accumulateDx) {
    backend.groupedGemmWgrad(dy, x, null, weight.grad(), true);
    if (dx != null) backend.groupedGemmDgrad(dy, weight.value(), null, dx, accumulateDx);
  }
}
