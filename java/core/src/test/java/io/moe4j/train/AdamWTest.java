package io.moe4j.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.nn.Parameter;
import io.moe4j.ops.AdamWConfig;
import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import io.moe4j.tensor.DType;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** AdamW over Parameters on the CPU backend against a scalar fp64 reference written here. */
class AdamWTest {

  static Backend cpu;

  @BeforeAll
  static void open() {
    cpu = Backends.cpu();
  }

  @AfterAll
  static void close() {
    assertEquals(0, cpu.memoryStats().liveBytes());
    cpu.close();
  }

  static float[] randn(int n, long seed) {
    Random r = new Random(seed);
    float[] x = new float[n];
    for (int i = 0; i < n; i++) x[i] = (float) r.nextGaussian();
    return x;
  }

  static Parameter param(String name, float[] value, float[] grad, boolean decay) {
    return new Parameter(name, cpu.fromFloats(value, DType.F32, value.length), cpu.fromFloats(grad, DType.F32, grad.length), decay);
  }

  /** Reference state of one parameter: value, m, v in double. */
  static final class Ref {
    final double[] p, m, v;

    Ref(float[] value) {
      p = new double[value.length];
      for (int i = 0; i < p.length; i++) p[i] = value[i];
      m = new double[p.length];
      v = new double[p.length];
    }

    void step(float[] g, double coef, AdamWConfig c, double lr, boolean decay, long t, int from) {
      double b1 = 1 - Math.pow(c.beta1(), t), b2 = 1 - Math.pow(c.beta2(), t);
      for (int i = from; i < p.length; i++) {
        double gi = g[i] * coef;
        m[i] = c.beta1() * m[i] + (1 - c.beta1()) * gi;
        v[i] = c.beta2() * v[i] + (1 - c.beta2()) * gi * gi;
        p[i] -= lr * ((decay ? c.weightDecay() : 0) * p[i] + (m[i] / b1) / (Math.sqrt(v[i] / b2) + c.eps()));
      }
    }
  }

  @Test
  void matchesReferenceWithClippingDecayFlagsAndFrozenPrefix() {
    AdamWConfig config = new AdamWConfig(0f, 0.9f, 0.95f, 1e-8f, 0.1f);
    float maxNorm = 1.5f;
    float[] a0 = randn(37, 1), b0 = randn(12, 2);
    List<Parameter> params = List.of(param("a", a0, new float[37], true), param("b", b0, new float[12], false));
    params.get(0).setTrainableFrom(10); // a[0..10) frozen: values and moments stay put
    Ref ra = new Ref(a0), rb = new Ref(b0);
    try (AdamW opt = new AdamW(cpu, params, config, maxNorm)) {
      for (int t = 1; t <= 5; t++) {
        float[] ga = randn(37, 10 + t), gb = randn(12, 20 + t);
        cpu.copyFromFloats(ga, params.get(0).grad());
        cpu.copyFromFloats(gb, params.get(1).grad());
        double sq = 0;
        for (int i = 10; i < 37; i++) sq += (double) ga[i] * ga[i];
        for (float g : gb) sq += (double) g * g;
        double norm = Math.sqrt(sq), coef = Math.min(1, maxNorm / (norm + 1e-6));
        float lr = 0.01f * t;
        AdamW.StepResult r = opt.step(lr);
        assertFalse(r.skipped());
        assertEquals(norm, r.gradNorm(), 1e-5 * norm);
        assertTrue(coef < 1, "the test exercises clipping");
        ra.step(ga, coef, config, lr, true, t, 10);
        rb.step(gb, coef, config, lr, false, t, 0);
      }
      assertEquals(5, opt.stepCount());
      float[] a = cpu.toFloats(params.get(0).value()), b = cpu.toFloats(params.get(1).value());
      for (int i = 0; i < 10; i++) assertEquals(a0[i], a[i], 0f, "frozen a[" + i + "]");
      for (int i = 10; i < 37; i++) assertEquals(ra.p[i], a[i], 1e-5, "a[" + i + "]");
      for (int i = 0; i < 12; i++) assertEquals(rb.p[i], b[i], 1e-5, "b[" + i + "] (no decay)");
      float[] ma = cpu.toFloats(opt.stateTensors().get("a.exp_avg"));
      for (int i = 0; i < 10; i++) assertEquals(0f, ma[i], 0f, "frozen moments stay zero");
    } finally {
      params.forEach(Parameter::close);
    }
  }

  @Test
  void nonFiniteGradientSkipsTheStep() {
    float[] a0 = randn(8, 3);
    float[] g = randn(8, 4);
    g[5] = Float.NaN;
    Parameter p = param("a", a0, g, true);
    try (AdamW opt = new AdamW(cpu, List.of(p), AdamWConfig.defaults(0.1f), 1f)) {
      AdamW.StepResult r = opt.step(0.1f);
      assertTrue(r.skipped());
      assertTrue(Float.isNaN(r.gradNorm()));
      assertEquals(0, opt.stepCount(), "bias correction does not advance");
      assertArrayEquals(a0, cpu.toFloats(p.value()), 0f);
      cpu.copyFromFloats(new float[] {1, 0, 0, 0, 0, Float.POSITIVE_INFINITY, 0, 0}, p.grad());
      assertTrue(opt.step(0.1f).skipped());
      cpu.copyFromFloats(new float[8], p.grad());
      assertFalse(opt.step(0.1f).skipped());
      assertEquals(1, opt.stepCount());
    } finally {
      p.close();
    }
  }

  @Test
  void growKeepsOldMomentsInThePrefixAndZeroesTheRest() {
    Parameter small = param("w.{j}", randn(6, 5), randn(6, 6), true);
    Parameter other = param("n", randn(3, 7), randn(3, 8), false);
    Parameter big = param("w.{j}", randn(10, 9), new float[10], true);
    Parameter fresh = param("router.bias", randn(2, 11), new float[2], false);
    try (AdamW opt = new AdamW(cpu, List.of(small, other), AdamWConfig.defaults(0.01f), 100f)) {
      opt.step(0.01f);
      float[] m0 = cpu.toFloats(opt.stateTensors().get("w.{j}.exp_avg"));
      float[] v0 = cpu.toFloats(opt.stateTensors().get("w.{j}.exp_avg_sq"));
      float[] mn = cpu.toFloats(opt.stateTensors().get("n.exp_avg"));
      opt.grow(List.of(big, other, fresh));
      float[] m1 = cpu.toFloats(opt.stateTensors().get("w.{j}.exp_avg"));
      float[] v1 = cpu.toFloats(opt.stateTensors().get("w.{j}.exp_avg_sq"));
      assertEquals(10, m1.length);
      for (int i = 0; i < 6; i++) {
        assertEquals(m0[i], m1[i], 0f);
        assertEquals(v0[i], v1[i], 0f);
      }
      for (int i = 6; i < 10; i++) assertEquals(0f, m1[i] + v1[i], 0f);
      assertArrayEquals(mn, cpu.toFloats(opt.stateTensors().get("n.exp_avg")), 0f);
      assertArrayEquals(new float[2], cpu.toFloats(opt.stateTensors().get("router.bias.exp_avg")), 0f);
      assertEquals(1, opt.stepCount(), "growing keeps the step count");
      assertThrows(IllegalArgumentException.class, () -> opt.grow(List.of(small)), "shrinking is refused");
    } finally {
      for (Parameter p : List.of(small, other, big, fresh)) p.close();
    }
  }

  @Test
  void stateRoundTripContinuesIdentically() {
    float[] a0 = randn(20, 12);
    Parameter p1 = param("a", a0, new float[20], true), p2 = param("a", a0, new float[20], true);
    try (AdamW first = new AdamW(cpu, List.of(p1), AdamWConfig.defaults(0.05f), 1f);
        AdamW second = new AdamW(cpu, List.of(p2), AdamWConfig.defaults(0.05f), 1f)) {
      for (int t = 0; t < 3; t++) {
        cpu.copyFromFloats(randn(20, 30 + t), p1.grad());
        first.step(0.05f);
      }
      Map<String, float[]> saved = new HashMap<>();
      first.stateTensors().forEach((k, t) -> saved.put(k, cpu.toFloats(t)));
      second.loadState(saved);
      second.setStepCount(first.stepCount());
      cpu.copyFromFloats(cpu.toFloats(p1.value()), p2.value());
      List<float[]> grads = new ArrayList<>();
      for (int t = 0; t < 3; t++) grads.add(randn(20, 40 + t));
      for (float[] g : grads) {
        cpu.copyFromFloats(g, p1.grad());
        cpu.copyFromFloats(g, p2.grad());
        first.step(0.05f);
        second.step(0.05f);
      }
      assertArrayEquals(cpu.toFloats(p1.value()), cpu.toFloats(p2.value()), 0f, "bitwise equal after restore");
      saved.remove("a.exp_avg");
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> second.loadState(saved));
      assertTrue(e.getMessage().contains("a.exp_avg"), e.getMessage());
    } finally {
      p1.close();
      p2.close();
    }
  }

  @Test
  void badArguments() {
    Parameter p = param("a", new float[2], new float[2], true);
    try {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> new AdamW(cpu, List.of(p), AdamWConfig.defaults(0.1f), 0f));
      assertTrue(e.getMessage().contains("maxGradNorm"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> new AdamW(cpu, List.of(p, p), AdamWConfig.defaults(0.1f), 1f));
      assertTrue(e.getMessage().contains("twice"), e.getMessage());
      try (AdamW opt = new AdamW(cpu, List.of(p), AdamWConfig.defaults(0.1f), 1f)) {
        e = assertThrows(IllegalArgumentException.class, () -> opt.step(Float.NaN));
        assertTrue(e.getMessage().contains("lr"), e.getMessage());
        p.setTrainableFrom(2);
        assertThrows(IllegalStateException.class, () -> opt.step(0.1f), "all frozen");
      }
    } finally {
      p.close();
    }
  }
}
