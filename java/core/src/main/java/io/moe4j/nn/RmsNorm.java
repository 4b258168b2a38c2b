package io.moe4j.nn;

import io.moe4j.ops.Backend;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Scope;
import io.moe4j.tensor.Tensor;

/**
 * y = x · rsqrt(mean(x²) + eps) · w over rows of the weight's width (fp32 statistics). Like every
 * module: {@code forward} keeps what {@code backward} needs in the caller's {@link Scope} (closed by
 * the caller after backward), {@code backward} accumulates the parameter gradients.
 */
public final class RmsNorm {

  private final Backend backend;
  private final Parameter weight;
  private final float eps;
  private Tensor savedX;
  private Tensor savedRstd;

  public RmsNorm(Backend backend, Parameter weight, float eps) {
    this.backend = backend;
    this.weight = weight;
    this.eps = eps;
  }

  public Parameter weight() {
    return weight;
  }

  /** y = norm(x); x viewed as [rows, width]; x and rstd are kept (in {@code saved}) for backward. */
  public Tensor forward(Tensor x, Scope saved) {
    long width = weight.numel();
    Tensor rows = x.reshape(x.numel() / width, width);
    Tensor y = saved.add(backend.empty(DType.F32, x.shape()));
    savedRstd = saved.add(backend.empty(DType.F32, rows.dim(0)));
    savedX = x;
    backend.rmsNormForward(rows, weight.value(), eps, y.reshape(rows.shape()), savedRstd);
    return y;
  }

  /** dx = dnorm/dx · dy (overwritten), dW += its gradient. */
  public void backward(Tensor dy, Tensor dx) {
    long width = weight.numel();
    long rows = dy.numel() / width;
    backend.rmsNormBackward(
        dy.reshape(rows, width), savedX.reshape(rows, width), weight.value(), savedRstd, dx.reshape(rows, width),
        weight.grad(), true);
  }
}
