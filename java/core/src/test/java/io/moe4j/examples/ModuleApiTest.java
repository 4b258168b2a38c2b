package io.moe4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.nn.Parameter;
import io.moe4j.nn.ParameterSource;
import io.moe4j.nn.RandomInit;
import io.moe4j.nn.RmsNorm;
import io.moe4j.nn.SwigluMlp;
import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Scope;
import io.moe4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The modules are public API: code outside io.moe4j.nn composes RmsNorm → SwigluMlp on its own,
 * runs forward and backward, and gets the gradients a central finite difference gives.
 */
class ModuleApiTest {

  private static final int T = 5, HIDDEN = 12, WIDTH = 20;

  @Test
  void userCodeComposesModulesAndGetsFiniteDifferenceGradients() {
    try (Backend backend = Backends.open("cpu")) {
      List<Parameter> params = new ArrayList<>();
      ParameterSource init = new RandomInit(backend, 7, 0.2f);
      ParameterSource tracked = (name, kind, shape) -> {
        Parameter p = init.create(name, kind, shape);
        params.add(p);
        return p;
      };
      RmsNorm norm = new RmsNorm(backend, tracked.create("norm.weight", ParameterSource.Kind.NORM, HIDDEN), 1e-5f);
      SwigluMlp mlp = new SwigluMlp(backend, "mlp.", HIDDEN, WIDTH, tracked);
      assertEquals(3, mlp.parameters().size());
      Random r = new Random(3);
      float[] x = new float[T * HIDDEN], probe = new float[T * HIDDEN];
      for (int i = 0; i < x.length; i++) {
        x[i] = (float) r.nextGaussian();
        probe[i] = (float) r.nextGaussian();
      }
      // loss = Σ probe ∘ mlp(norm(x)), so dloss/dy = probe
      float[] dx;
      try (Tensor xt = backend.fromFloats(x, DType.F32, T, HIDDEN); Tensor dy = backend.fromFloats(probe, DType.F32, T, HIDDEN);
          Scope saved = new Scope(); Scope tmp = new Scope()) {
        Tensor y = tmp.add(backend.empty(DType.F32, T, HIDDEN));
        mlp.forward(norm.forward(xt, saved), y, false, saved);
        Tensor dNorm = tmp.add(backend.empty(DType.F32, T, HIDDEN));
        Tensor dxt = tmp.add(backend.empty(DType.F32, T, HIDDEN));
        // RandomInit's gradients start at zero; backward accumulates into them
        mlp.backward(dy, dNorm, false);
        norm.backward(dNorm, dxt);
        dx = backend.toFloats(dxt);
      }
      Parameter up = params.get(2); // mlp.up_proj.weight
      assertEquals("mlp.up_proj.weight", up.name());
      float[] dUp = backend.toFloats(up.grad());
      for (int i : new int[] {0, 7, 31}) {
        double fd = finiteDifference(backend, norm, mlp, x, probe, i);
        assertEquals(fd, dx[i], 2e-2 * Math.abs(fd) + 2e-3, "dx[" + i + "]");
      }
      float[] w = backend.toFloats(up.value());
      for (int j : new int[] {3, 50, 200}) {
        float saved = w[j];
        double[] lossAt = new double[2];
        for (int side = 0; side < 2; side++) {
          w[j] = saved + (side == 0 ? 1e-2f : -1e-2f);
          backend.copyFromFloats(w, up.value());
          lossAt[side] = loss(backend, norm, mlp, x, probe);
        }
        w[j] = saved;
        backend.copyFromFloats(w, up.value());
        double fd = (lossAt[0] - lossAt[1]) / 2e-2;
        assertEquals(fd, dUp[j], 2e-2 * Math.abs(fd) + 2e-3, "dW_up[" + j + "]");
      }
      boolean nonZero = false;
      for (float g : dUp) nonZero |= g != 0;
      assertTrue(nonZero, "up_proj gradient is not all zero");
      params.forEach(Parameter::close);
      assertEquals(0, backend.memoryStats().liveBytes(), "memory returned");
    }
  }

  private static double finiteDifference(Backend backend, RmsNorm norm, SwigluMlp mlp, float[] x, float[] probe, int i) {
    float saved = x[i];
    x[i] = saved + 1e-2f;
    double plus = loss(backend, norm, mlp, x, probe);
    x[i] = saved - 1e-2f;
    double minus = loss(backend, norm, mlp, x, probe);
    x[i] = saved;
    return (plus - minus) / 2e-2;
  }

  private static double loss(Backend backend, RmsNorm norm, SwigluMlp mlp, float[] x, float[] probe) {
    try (Tensor xt = backend.fromFloats(x, DType.F32, T, HIDDEN); Scope saved = new Scope(); Scope tmp = new Scope()) {
      Tensor y = tmp.add(backend.empty(DType.F32, T, HIDDEN));
      mlp.forward(norm.forward(xt, saved), y, false, saved);
      float[] out = backend.toFloats(y);
      double sum = 0;
      for (int k = 0; k < out.length; k++) sum += (double) out[k] * probe[k];
      return sum;
    }
  }
}
