package io.moe4j.nn;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Scope;
import io.moe4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.Function;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Every module's backward against central finite differences on tiny shapes. The kernels compute in
 * f32, so the objective L = Σ r ⊙ y (r fixed random) is summed in fp64 on the host and the step is
 * sized for f32 (h = 1e-2 on O(1) inputs): the difference quotient then has ~1e-4 absolute noise,
 * and the tolerance is 2% relative + 5e-4 absolute. Routing is piecewise constant in the inputs;
 * the seeds are fixed, so a selection flip under ±h would show up as a deterministic failure.
 */
class GradientCheckTest {

  private static Backend backend;

  @BeforeAll
  static void open() {
    backend = Backends.open("cpu");
  }

  @AfterAll
  static void close() {
    assertEquals(0, backend.memoryStats().liveBytes(), "device memory returned");
    backend.close();
  }

  private static ModelConfig tiny(ModelConfig.Architecture arch, ModelConfig.QkNorm qkNorm, ModelConfig.Routing routing,
      float capacity, int shared, boolean tied) {
    // 2 layers: layer 0 dense, layer 1 MoE (decoderSparseStep 2); 4 experts top-2; GQA 4 q heads on 2 kv heads
    return new ModelConfig(arch, 13, 8, 2, 4, 2, 4, 12, 6, 4, 2, true, 2, List.of(), qkNorm, 1e-5f, 10000f, 64, tied,
        0.05f, 0.01f, routing, capacity, shared, 5, 1, 2, 0.4f);
  }

  /** Central difference of f at the elements picked from t, against the analytic gradient g. */
  private static void check(String what, Tensor t, float[] analytic, Function<Void, Double> objective, int samples,
      long seed) {
    float[] values = backend.toFloats(t);
    Random random = new Random(seed);
    double h = 1e-2;
    for (int s = 0; s < samples; s++) {
      int i = random.nextInt(values.length);
      float original = values[i];
      values[i] = (float) (original + h);
      backend.copyFromFloats(values, t);
      double plus = objective.apply(null);
      values[i] = (float) (original - h);
      backend.copyFromFloats(values, t);
      double minus = objective.apply(null);
      values[i] = original;
      backend.copyFromFloats(values, t);
      double numeric = (plus - minus) / (2 * h);
      double tolerance = 0.02 * Math.abs(numeric) + 5e-4;
      assertTrue(Math.abs(numeric - analytic[i]) <= tolerance,
          what + "[" + i + "]: finite difference " + numeric + " vs backward " + analytic[i]);
    }
  }

  private static double dot(float[] a, float[] b) {
    double s = 0;
    for (int i = 0; i < a.length; i++) s += (double) a[i] * b[i];
    return s;
  }

  private static float[] randomFloats(long n, long seed) {
    Random random = new Random(seed);
    float[] v = new float[(int) n];
    for (int i = 0; i < v.length; i++) v[i] = (float) random.nextGaussian();
    return v;
  }

  /** A module seen as y = f(x): forward into a host array, backward from dy into dx. */
  private interface Module {
    float[] forward(Tensor x, Scope saved);

    void backward(Tensor dy, Tensor dx);

    List<Parameter> parameters();
  }

  private static void checkModule(String name, Module module, long rows, long width, long outWidth) {
    float[] r = randomFloats(rows * outWidth, 7);
    try (Tensor x = backend.fromFloats(randomFloats(rows * width, 3), DType.F32, rows, width);
        Tensor dx = backend.empty(DType.F32, rows, width);
        Tensor dy = backend.fromFloats(r, DType.F32, rows, outWidth)) {
      for (Parameter p : module.parameters()) backend.copyFromFloats(new float[(int) p.numel()], p.grad());
      try (Scope saved = new Scope()) {
        module.forward(x, saved);
        module.backward(dy, dx);
      }
      Function<Void, Double> objective = unused -> {
        try (Scope saved = new Scope()) {
          return dot(module.forward(x, saved), r);
        }
      };
      check(name + " dx", x, backend.toFloats(dx), objective, 12, 11);
      int seed = 20;
      for (Parameter p : module.parameters())
        check(name + " " + p.name(), p.value(), backend.toFloats(p.grad()), objective, 6, seed++);
    }
  }

  @Test
  void rmsNormLinearAndDenseMlp() {
    ModelConfig c = tiny(ModelConfig.Architecture.MIXTRAL, ModelConfig.QkNorm.NONE, ModelConfig.Routing.TOKEN_CHOICE, 0, 0, false);
    try (Parameter w = new RandomInit(backend, 1, 0.5f).create("norm", ParameterSource.Kind.MATRIX, 8)) {
      RmsNorm norm = new RmsNorm(backend, w, 1e-5f);
      checkModule("rmsnorm", new Module() {
        public float[] forward(Tensor x, Scope saved) {
          return backend.toFloats(norm.forward(x, saved));
        }

        public void backward(Tensor dy, Tensor dx) {
          norm.backward(dy, dx);
        }

        public List<Parameter> parameters() {
          return List.of(w);
        }
      }, 5, 8, 8);
    }
    SwigluMlp mlp = new SwigluMlp(backend, "mlp.", 8, 12, new RandomInit(backend, 5, 0.4f));
    try {
      checkModule("mlp", new Module() {
        public float[] forward(Tensor x, Scope saved) {
          Tensor y = saved.add(backend.empty(DType.F32, x.dim(0), 8));
          mlp.forward(x, y, false, saved);
          return backend.toFloats(y);
        }

        public void backward(Tensor dy, Tensor dx) {
          mlp.backward(dy, dx, false);
        }

        public List<Parameter> parameters() {
          return mlp.parameters();
        }
      }, 7, 8, 8);
    } finally {
      mlp.parameters().forEach(Parameter::close);
    }
    assertTrue(c.isMoeLayer(1) && !c.isMoeLayer(0));
  }

  private static void checkAttention(ModelConfig c) {
    OpTimer timer = new OpTimer(backend);
    Attention attention = new Attention(backend, c, "attn.", new RandomInit(backend, 9, c.initializerRange()), timer);
    int batch = 2;
    int seq = 5;
    int[] pos = new int[batch * seq];
    for (int i = 0; i < pos.length; i++) pos[i] = i % seq;
    try (Tensor positions = backend.fromInts(pos, pos.length)) {
      checkModule("attention " + c.qkNorm(), new Module() {
        public float[] forward(Tensor x, Scope saved) {
          return backend.toFloats(attention.forward(x, batch, seq, positions, saved));
        }

        public void backward(Tensor dy, Tensor dx) {
          attention.backward(dy, dx);
        }

        public List<Parameter> parameters() {
          return attention.parameters();
        }
      }, batch * seq, 8, 8);
    } finally {
      attention.parameters().forEach(Parameter::close);
    }
  }

  @Test
  void attentionWithoutAndWithQkNorm() {
    for (ModelConfig.QkNorm n : ModelConfig.QkNorm.values())
      checkAttention(tiny(ModelConfig.Architecture.QWEN3_MOE, n, ModelConfig.Routing.TOKEN_CHOICE, 0, 0, false));
  }

  private static void checkMoe(ModelConfig c) {
    OpTimer timer = new OpTimer(backend);
    MoeFfn moe = new MoeFfn(backend, c, "moe.", new RandomInit(backend, 13, c.initializerRange()), timer);
    int batch = 2;
    int seq = 6;
    try {
      checkModule("moe " + c.routing() + " cf=" + c.capacityFactor() + " shared=" + c.numSharedExperts(), new Module() {
        public float[] forward(Tensor x, Scope saved) {
          float[] losses = new float[2];
          float[] y = backend.toFloats(moe.forward(x, batch, seq, 0, saved, losses, new ArrayList<>(), false));
          return y;
        }

        public void backward(Tensor dy, Tensor dx) {
          moe.backward(dy, dx, 0f); // router losses are checked in the whole-model test
        }

        public List<Parameter> parameters() {
          return moe.parameters();
        }
      }, batch * seq, 8, 8);
    } finally {
      moe.parameters().forEach(Parameter::close);
    }
  }

  @Test
  void moeTokenChoiceDroplessWithCapacityAndExpertChoice() {
    checkMoe(tiny(ModelConfig.Architecture.MIXTRAL, ModelConfig.QkNorm.NONE, ModelConfig.Routing.TOKEN_CHOICE, 0, 0, false));
    checkMoe(tiny(ModelConfig.Architecture.MIXTRAL, ModelConfig.QkNorm.NONE, ModelConfig.Routing.TOKEN_CHOICE, 1f, 1, false));
    checkMoe(tiny(ModelConfig.Architecture.MIXTRAL, ModelConfig.QkNorm.NONE, ModelConfig.Routing.EXPERT_CHOICE, 2f, 0, false));
  }

  private static void checkModel(ModelConfig c) {
    int batch = 2;
    int seq = 6;
    Random random = new Random(5);
    int[] tokens = new int[batch * seq];
    int[] targets = new int[batch * seq];
    for (int i = 0; i < tokens.length; i++) {
      tokens[i] = random.nextInt(c.vocabSize());
      targets[i] = i % 4 == 0 ? MoeTransformer.IGNORE_INDEX : random.nextInt(c.vocabSize());
    }
    try (MoeTransformer model = new MoeTransformer(backend, c, 17)) {
      model.zeroGrad();
      ForwardResult result = model.forward(tokens, targets, batch, seq);
      assertTrue(Float.isFinite(result.loss()) && result.loss() > 0, "loss " + result.loss());
      model.backward(1f);
      Function<Void, Double> objective = unused -> {
        ForwardResult r = model.forward(tokens, targets, batch, seq);
        model.discardActivations();
        return (double) r.totalLoss();
      };
      int seed = 100;
      for (Parameter p : model.parameters())
        check(c.routing() + " model " + p.name(), p.value(), backend.toFloats(p.grad()), objective, 3, seed++);
    }
  }

  @Test
  void wholeModelTokenChoiceTiedAndUntied() {
    checkModel(tiny(ModelConfig.Architecture.QWEN3_MOE, ModelConfig.QkNorm.PER_HEAD, ModelConfig.Routing.TOKEN_CHOICE, 0, 1, true));
    checkModel(tiny(ModelConfig.Architecture.OLMOE, ModelConfig.QkNorm.WHOLE, ModelConfig.Routing.TOKEN_CHOICE, 0, 0, false));
  }

  @Test
  void wholeModelExpertChoice() {
    checkModel(tiny(ModelConfig.Architecture.MIXTRAL, ModelConfig.QkNorm.NONE, ModelConfig.Routing.EXPERT_CHOICE, 2f, 0, false));
  }
}
