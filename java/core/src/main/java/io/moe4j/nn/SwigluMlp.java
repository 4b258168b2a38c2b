package io.moe4j.nn;

import io.moe4j.ops.Backend;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Scope;
import io.moe4j.tensor.Tensor;
import java.util.List;

/** Dense SwiGLU feed-forward: down(silu(gate(x)) · up(x)); HF names {prefix}{gate,up,down}_proj.weight. */
public final class SwigluMlp {

  private final Backend backend;
  private final Linear gate;
  private final Linear up;
  private final Linear down;
  private Tensor savedX;
  private Tensor g;
  private Tensor u;
  private Tensor h;

  public SwigluMlp(Backend backend, String prefix, long hidden, long width, ParameterSource params) {
    this.backend = backend;
    gate = new Linear(backend, params.create(prefix + "gate_proj.weight", ParameterSource.Kind.MATRIX, width, hidden));
    up = new Linear(backend, params.create(prefix + "up_proj.weight", ParameterSource.Kind.MATRIX, width, hidden));
    down = new Linear(backend, params.create(prefix + "down_proj.weight", ParameterSource.Kind.MATRIX, hidden, width));
  }

  public List<Parameter> parameters() {
    return List.of(gate.weight(), up.weight(), down.weight());
  }

  /** y [T, hidden] (=|+=, into {@code y}) from x [T, hidden]. */
  public void forward(Tensor x, Tensor y, boolean accumulate, Scope saved) {
    long tokens = x.dim(0);
    long width = gate.outFeatures();
    savedX = x;
    g = saved.add(backend.empty(DType.F32, tokens, width));
    u = saved.add(backend.empty(DType.F32, tokens, width));
    h = saved.add(backend.empty(DType.F32, tokens, width));
    gate.forward(x, g);
    up.forward(x, u);
    backend.swigluForward(g, u, h);
    Linear.gemm(backend, h, down.weight().computeValue(), y, accumulate);
  }

  /** dx (=|+=) from dy; gradients accumulated. */
  public void backward(Tensor dy, Tensor dx, boolean accumulateDx) {
    try (Scope tmp = new Scope()) {
      Tensor dh = tmp.add(backend.empty(DType.F32, h.shape()));
      down.backward(dy, h, dh, false);
      Tensor dg = tmp.add(backend.empty(DType.F32, g.shape()));
      Tensor du = tmp.add(backend.empty(DType.F32, u.shape()));
      backend.swigluBackward(g, u, dh, dg, du);
      gate.backward(dg, savedX, dx, accumulateDx);
      up.backward(du, savedX, dx, true);
    }
  }
}
