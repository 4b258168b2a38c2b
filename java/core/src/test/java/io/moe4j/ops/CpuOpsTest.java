package io.moe4j.ops;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.tensor.DType;
import io.moe4j.tensor.HalfFloats;
import io.moe4j.tensor.Scope;
import io.moe4j.tensor.Tensor;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Every op through the Java API on the CPU backend against fp64 references written here (the C++
 * tests cover the numerics in depth; these check the bridge, shapes and dtypes end to end).
 * Tolerances: fp32 kernels accumulate in f32 over at most a few thousand terms → 1e-5 relative.
 */
class CpuOpsTest {

  static Backend cpu;
  Scope scope;

  @BeforeAll
  static void open() {
    cpu = Backends.cpu();
  }

  @AfterAll
  static void close() {
    assertEquals(0, cpu.memoryStats().liveBytes(), "all tensors returned");
    cpu.close();
  }

  @org.junit.jupiter.api.BeforeEach
  void newScope() {
    scope = new Scope();
  }

  @AfterEach
  void closeScope() {
    scope.close();
  }

  static float[] randn(int n, long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    float[] v = new float[n];
    for (int i = 0; i < n; i++) {
      double u1 = r.nextDouble(1e-12, 1), u2 = r.nextDouble();
      v[i] = (float) (Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2));
    }
    return v;
  }

  Tensor t(float[] values, long... shape) {
    return scope.add(cpu.fromFloats(values, DType.F32, shape));
  }

  Tensor zeros(DType dt, long... shape) {
    return scope.add(cpu.zeros(dt, shape));
  }

  static void assertClose(double[] expected, float[] actual, double rel, String what) {
    assertEquals(expected.length, actual.length, what + ": length");
    for (int i = 0; i < expected.length; i++) {
      double tol = rel * Math.max(1.0, Math.abs(expected[i]));
      assertTrue(Math.abs(expected[i] - actual[i]) <= tol,
          what + "[" + i + "] = " + actual[i] + ", expected " + expected[i] + " (tol " + tol + ")");
    }
  }

  @Test
  void elementwiseAndCasts() {
    float[] a = randn(1001, 1), b = randn(1001, 2);
    Tensor ta = t(a, 7, 143), tb = t(b, 7, 143), out = zeros(DType.F32, 7, 143);
    cpu.add(ta, tb, out);
    double[] sum = new double[a.length];
    for (int i = 0; i < a.length; i++) sum[i] = (double) a[i] + b[i];
    assertClose(sum, cpu.toFloats(out), 1e-7, "add");
    cpu.scale(out, 0.5f, out);
    for (int i = 0; i < a.length; i++) sum[i] *= 0.5;
    assertClose(sum, cpu.toFloats(out), 1e-7, "scale in place");
    Tensor bf = zeros(DType.BF16, 7, 143);
    cpu.cast(ta, bf);
    float[] back = cpu.toFloats(bf);
    for (int i = 0; i < a.length; i++) assertEquals(HalfFloats.roundToBf16(a[i]), back[i], 0f);
    Tensor copy = zeros(DType.F32, 1001);
    cpu.copy(ta, copy);
    assertArrayEquals(a, cpu.toFloats(copy));
  }

  @Test
  void rmsNormForwardBackwardMatchFp64() {
    int rows = 5, cols = 257;
    float eps = 1e-5f;
    float[] x = randn(rows * cols, 3), w = randn(cols, 4), dy = randn(rows * cols, 5);
    Tensor tx = t(x, rows, cols), tw = t(w, cols), ty = zeros(DType.F32, rows, cols), rstd = zeros(DType.F32, rows);
    cpu.rmsNormForward(tx, tw, eps, ty, rstd);
    double[] y = new double[rows * cols], dx = new double[rows * cols], dw = new double[cols];
    for (int r = 0; r < rows; r++) {
      double ms = 0;
      for (int c = 0; c < cols; c++) ms += (double) x[r * cols + c] * x[r * cols + c];
      double s = 1 / Math.sqrt(ms / cols + eps);
      double dot = 0;
      for (int c = 0; c < cols; c++) {
        y[r * cols + c] = x[r * cols + c] * s * w[c];
        dot += (double) dy[r * cols + c] * w[c] * x[r * cols + c];
        dw[c] += dy[r * cols + c] * x[r * cols + c] * s;
      }
      for (int c = 0; c < cols; c++)
        dx[r * cols + c] = s * (dy[r * cols + c] * w[c] - x[r * cols + c] * s * s * dot / cols);
    }
    assertClose(y, cpu.toFloats(ty), 1e-5, "rmsnorm y");
    Tensor tdx = zeros(DType.F32, rows, cols), tdw = zeros(DType.F32, cols);
    cpu.rmsNormBackward(t(dy, rows, cols), tx, tw, rstd, tdx, tdw, false);
    assertClose(dx, cpu.toFloats(tdx), 1e-5, "rmsnorm dx");
    assertClose(dw, cpu.toFloats(tdw), 1e-5, "rmsnorm dw");
    cpu.rmsNormBackward(t(dy, rows, cols), tx, tw, rstd, tdx, tdw, true);
    for (int c = 0; c < cols; c++) dw[c] *= 2;
    assertClose(dw, cpu.toFloats(tdw), 1e-5, "rmsnorm dw accumulated");
  }

  @Test
  void swigluSeparateAndCombinedLayouts() {
    int rows = 3, cols = 101;
    float[] g = randn(rows * cols, 6), u = randn(rows * cols, 7), dOut = randn(rows * cols, 8);
    double[] h = new double[rows * cols], dg = new double[rows * cols], du = new double[rows * cols];
    float[] combined = new float[rows * 2 * cols];
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++) {
        int i = r * cols + c;
        double sig = 1 / (1 + Math.exp(-g[i]));
        h[i] = g[i] * sig * u[i];
        du[i] = dOut[i] * g[i] * sig;
        dg[i] = dOut[i] * u[i] * sig * (1 + g[i] * (1 - sig));
        combined[r * 2 * cols + c] = g[i];
        combined[r * 2 * cols + cols + c] = u[i];
      }
    Tensor tg = t(g, rows, cols), tu = t(u, rows, cols), out = zeros(DType.F32, rows, cols);
    cpu.swigluForward(tg, tu, out);
    assertClose(h, cpu.toFloats(out), 1e-5, "swiglu");
    Tensor tdg = zeros(DType.F32, rows, cols), tdu = zeros(DType.F32, rows, cols);
    cpu.swigluBackward(tg, tu, t(dOut, rows, cols), tdg, tdu);
    assertClose(dg, cpu.toFloats(tdg), 1e-5, "swiglu dgate");
    assertClose(du, cpu.toFloats(tdu), 1e-5, "swiglu dup");
    Tensor gu = t(combined, rows, 2 * cols), out2 = zeros(DType.F32, rows, cols), dgu = zeros(DType.F32, rows, 2 * cols);
    cpu.swigluForwardCombined(gu, out2);
    assertArrayEquals(cpu.toFloats(out), cpu.toFloats(out2));
    cpu.swigluBackwardCombined(gu, t(dOut, rows, cols), dgu);
    float[] d = cpu.toFloats(dgu);
    float[] sepG = cpu.toFloats(tdg), sepU = cpu.toFloats(tdu);
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++) {
        assertEquals(sepG[r * cols + c], d[r * 2 * cols + c], 0f);
        assertEquals(sepU[r * cols + c], d[r * 2 * cols + cols + c], 0f);
      }
  }

  @Test
  void embeddingGathersAndScatterAddsDeterministically() {
    int vocab = 11, dim = 5;
    float[] table = randn(vocab * dim, 9);
    int[] ids = {3, 0, 3, 10, 3};
    Tensor tt = t(table, vocab, dim), ti = scope.add(cpu.fromInts(ids, ids.length)), out = zeros(DType.F32, ids.length, dim);
    cpu.embeddingForward(tt, ti, out);
    float[] o = cpu.toFloats(out);
    for (int i = 0; i < ids.length; i++)
      for (int c = 0; c < dim; c++) assertEquals(table[ids[i] * dim + c], o[i * dim + c], 0f);
    float[] dOut = randn(ids.length * dim, 10);
    Tensor dTable = zeros(DType.F32, vocab, dim);
    cpu.embeddingBackward(t(dOut, ids.length, dim), ti, dTable, false);
    double[] expected = new double[vocab * dim];
    for (int i = 0; i < ids.length; i++)
      for (int c = 0; c < dim; c++) expected[ids[i] * dim + c] += dOut[i * dim + c];
    assertClose(expected, cpu.toFloats(dTable), 1e-6, "embedding dtable");
  }

  @Test
  void crossEntropyWithIgnoreIndexAndInPlaceBackward() {
    int rows = 4, vocab = 1031, ignore = -100;
    float[] logits = randn(rows * vocab, 11);
    int[] targets = {5, ignore, 1030, 0};
    Tensor tl = t(logits, rows, vocab), tt = scope.add(cpu.fromInts(targets, rows));
    Tensor losses = zeros(DType.F32, rows), lse = zeros(DType.F32, rows);
    cpu.crossEntropyForward(tl, tt, ignore, losses, lse);
    double[] expLoss = new double[rows], expGrad = new double[rows * vocab];
    float scale = 1f / 3;
    for (int r = 0; r < rows; r++) {
      double max = Double.NEGATIVE_INFINITY, sum = 0;
      for (int v = 0; v < vocab; v++) max = Math.max(max, logits[r * vocab + v]);
      for (int v = 0; v < vocab; v++) sum += Math.exp(logits[r * vocab + v] - max);
      double l = max + Math.log(sum);
      if (targets[r] != ignore) {
        expLoss[r] = l - logits[r * vocab + targets[r]];
        for (int v = 0; v < vocab; v++)
          expGrad[r * vocab + v] = (Math.exp(logits[r * vocab + v] - l) - (v == targets[r] ? 1 : 0)) * scale;
      }
    }
    assertClose(expLoss, cpu.toFloats(losses), 1e-5, "losses");
    cpu.crossEntropyBackward(tl, tt, lse, ignore, scale, tl); // in place over the logits
    assertClose(expGrad, cpu.toFloats(tl), 1e-6, "dlogits");
  }

  @Test
  void adamwMatchesReferenceOverSteps() {
    int n = 1003;
    float[] p0 = randn(n, 12);
    AdamWConfig cfg = new AdamWConfig(1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f);
    Tensor param = t(p0, n), m = zeros(DType.F32, n), v = zeros(DType.F32, n), copy = zeros(DType.BF16, n);
    double[] p = new double[n], mm = new double[n], vv = new double[n];
    for (int i = 0; i < n; i++) p[i] = p0[i];
    for (int step = 1; step <= 3; step++) {
      float[] g = randn(n, 100 + step);
      cpu.adamwStep(param, t(g, n), m, v, copy, cfg, step, null);
      double b1 = 1 - Math.pow(cfg.beta1(), step), b2 = 1 - Math.pow(cfg.beta2(), step);
      for (int i = 0; i < n; i++) {
        mm[i] = cfg.beta1() * mm[i] + (1 - cfg.beta1()) * g[i];
        vv[i] = cfg.beta2() * vv[i] + (1 - cfg.beta2()) * (double) g[i] * g[i];
        p[i] -= cfg.lr() * (cfg.weightDecay() * p[i] + (mm[i] / b1) / (Math.sqrt(vv[i] / b2) + cfg.eps()));
      }
    }
    float[] got = cpu.toFloats(param);
    assertClose(p, got, 1e-5, "adamw param");
    float[] c = cpu.toFloats(copy);
    for (int i = 0; i < n; i++) assertEquals(HalfFloats.roundToBf16(got[i]), c[i], 0f, "bf16 copy " + i);
  }

  @Test
  void gradNormAndClipCoefficient() {
    float[] g1 = randn(1000, 13), g2 = randn(17, 14);
    double ss = 0;
    for (float x : g1) ss += x * (double) x;
    for (float x : g2) ss += x * (double) x;
    double norm = Math.sqrt(ss);
    try (Tensor r = cpu.gradNormAndClipCoefficient(List.of(t(g1, 1000), t(g2, 17)), 1.0f)) {
      float[] out = cpu.toFloats(r);
      assertEquals(norm, out[0], 1e-5 * norm);
      assertEquals(1.0 / (norm + 1e-6), out[1], 1e-5);
    }
    try (Tensor r = cpu.gradNormAndClipCoefficient(List.of(t(g2, 17)), 1e6f)) {
      assertEquals(1.0f, cpu.toFloats(r)[1], 0f);
    }
    assertThrows(IllegalArgumentException.class, () -> cpu.gradNormAndClipCoefficient(List.of(), 1f));
  }
}
